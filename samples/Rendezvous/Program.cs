// A rendezvous node: devices attach to it and reach each other by PeerId, relayed end to end until they punch through.
//
//   dotnet run --project samples/Rendezvous -- --listen 0.0.0.0:7400 [--stun-port 3478|0|off] [--identity PATH]
//       [--keepalive SECONDS] [--max-relay-mb N] [--max-relay-minutes N] [--allow PEERID]... [--trace]
//       [--nats URL[,URL...] [--nats-user USER --nats-password PASSWORD] [--public ADDRESS:PORT] [--subject-prefix P]
//        [--presence-bucket NAME]]
//
// With --nats it is one node of a tier (docs/deploy-rendezvous.md): devices attached to any node of the tier reach each
// other by PeerId, through the NATS servers named (a cluster); --public is the address devices of other nodes use to
// open relay connections to this one (required when listening on 0.0.0.0).
//
// It prints its PeerId: devices pin it (Chat: --rendezvous ADDRESS:PORT --rendezvous-peer ID). The node's identity is
// kept in a file, so the PeerId stays the same across restarts. Ctrl+C or SIGTERM stops it cleanly.
using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink;
using NATS.Client.Core;
using PeerLink.Nat.Rendezvous;
using PeerLink.Rendezvous.Nats;

var options = new RendezvousServerOptions();
string? identityPath = null;
var allowed = new HashSet<PeerId>();
string? natsUrl = null, natsUser = null, natsPassword = null, subjectPrefix = null, presenceBucket = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--listen" when i + 1 < args.Length && IPEndPoint.TryParse(args[i + 1], out IPEndPoint? listen):
            options.ListenEndPoint = listen;
            i++;
            break;
        case "--stun-port" when i + 1 < args.Length:
            string stun = args[++i];
            if (stun == "off")
            {
                options.StunPort = null;
            }
            else if (int.TryParse(stun, out int port) && port is >= 0 and <= 65535)
            {
                options.StunPort = port;
            }
            else
            {
                return Usage();
            }

            break;
        case "--identity" when i + 1 < args.Length:
            identityPath = args[++i];
            break;
        case "--keepalive" when i + 1 < args.Length && int.TryParse(args[i + 1], out int seconds) && seconds > 0:
            options.KeepAliveInterval = TimeSpan.FromSeconds(seconds);
            i++;
            break;
        case "--max-relay-mb" when i + 1 < args.Length && long.TryParse(args[i + 1], out long mb) && mb >= 0:
            options.MaxRelayBytes = mb * 1024 * 1024;
            i++;
            break;
        case "--max-relay-minutes" when i + 1 < args.Length && int.TryParse(args[i + 1], out int minutes) && minutes >= 0:
            options.MaxRelayDuration = TimeSpan.FromMinutes(minutes);
            i++;
            break;
        case "--allow" when i + 1 < args.Length && PeerId.TryParse(args[i + 1], out PeerId device):
            allowed.Add(device);
            i++;
            break;
        case "--nats" when i + 1 < args.Length:
            natsUrl = args[++i];
            break;
        case "--nats-user" when i + 1 < args.Length:
            natsUser = args[++i];
            break;
        case "--nats-password" when i + 1 < args.Length:
            natsPassword = args[++i];
            break;
        case "--presence-bucket" when i + 1 < args.Length:
            presenceBucket = args[++i];
            break;
        case "--subject-prefix" when i + 1 < args.Length:
            subjectPrefix = args[++i];
            break;
        case "--public" when i + 1 < args.Length && IPEndPoint.TryParse(args[i + 1], out IPEndPoint? publicEndPoint):
            options.PublicEndPoint = publicEndPoint;
            i++;
            break;
        case "--trace":
            break;
        default:
            return Usage();
    }
}

if (options.ListenEndPoint is null)
{
    return Usage();
}

if (allowed.Count > 0)
{
    options.AllowedDevices = allowed;
}

using ILoggerFactory loggerFactory = LoggerFactory.Create(builder => builder
    .AddSimpleConsole(o => o.SingleLine = true)
    .SetMinimumLevel(Array.IndexOf(args, "--trace") >= 0 ? LogLevel.Debug : LogLevel.Information));

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};

// A service manager stops it with SIGTERM: stop just as cleanly.
using PosixSignalRegistration terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    stop.Cancel();
});

identityPath ??= Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "peerlink", "rendezvous.key");
Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(identityPath))!);
using PeerIdentity identity = PeerIdentity.LoadOrCreate(identityPath);

// A tier: the NATS connection and the backplane live as long as the node, and are disposed after it.
await using NatsConnection? nats = natsUrl is null ? null : new NatsConnection(new NatsOpts
{
    Url = natsUrl,
    Name = "peerlink-rendezvous " + identity.PeerId.ToFingerprint(),
    AuthOpts = natsUser is null ? NatsAuthOpts.Default : new NatsAuthOpts { Username = natsUser, Password = natsPassword },
    LoggerFactory = loggerFactory,
});
await using NatsRendezvousBackplane? backplane = nats is null ? null
    : new NatsRendezvousBackplane(nats, new NatsRendezvousBackplaneOptions { SubjectPrefix = subjectPrefix ?? "peerlink.rendezvous", PresenceBucket = presenceBucket }, loggerFactory);
options.Backplane = backplane;

RendezvousServer server;
try
{
    server = await RendezvousServer.StartAsync(identity, options, loggerFactory, stop.Token);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
catch (PeerLinkException e)
{
    Console.Error.WriteLine($"error ({e.Error}): {e.Message}");
    return 1;
}

await using (server)
{
    Console.WriteLine($"PeerId {server.PeerId}");
    Console.WriteLine($"rendezvous on {server.EndPoint}" + (server.StunEndPoint is { } s ? $", STUN on {s} (UDP and TCP)" : ""));
    if (nats is not null)
    {
        Console.WriteLine($"tier: NATS {natsUrl}, relay connections from other nodes' devices to {options.PublicEndPoint ?? server.EndPoint}");
    }

    Console.WriteLine($"devices: dotnet run --project samples/Chat -- listen --rendezvous ADDRESS:{server.EndPoint.Port} --rendezvous-peer {server.PeerId}");
    try
    {
        await Task.Delay(Timeout.Infinite, stop.Token);
    }
    catch (OperationCanceledException)
    {
    }

    Console.WriteLine($"stopping: {server.AttachedCount} device(s) attached, {server.RelayCount} relayed session(s)");
}

return 0;

static int Usage()
{
    Console.Error.WriteLine("usage: Rendezvous --listen ADDRESS:PORT [--stun-port PORT|0|off] [--identity PATH] [--keepalive SECONDS] [--max-relay-mb N] [--max-relay-minutes N] [--allow PEERID]... [--trace]");
    Console.Error.WriteLine("                  [--nats URL[,URL...] [--nats-user USER --nats-password PASSWORD] [--public ADDRESS:PORT] [--subject-prefix P] [--presence-bucket NAME]]");
    return 2;
}
