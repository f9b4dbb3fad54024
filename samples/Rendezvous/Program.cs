// A rendezvous node: devices attach to it and reach each other by PeerId, relayed end to end until they punch through.
//
//   dotnet run --project samples/Rendezvous -- --listen 0.0.0.0:7400 [--stun-port 3478|0|off] [--identity PATH]
//       [--keepalive SECONDS] [--max-relay-mb N] [--max-relay-minutes N] [--allow PEERID]... [--trace]
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
using PeerLink.Nat.Rendezvous;

var options = new RendezvousServerOptions();
string? identityPath = null;
var allowed = new HashSet<PeerId>();
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
    return 2;
}
