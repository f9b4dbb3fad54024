// A two-peer chat over an encrypted, mutually authenticated PeerLink session.
//
//   dotnet run --project samples/Chat -- listen [--port N] [--lan]      prints its PeerId and port, waits for peers;
//                                                                       --lan also advertises it over mDNS
//   dotnet run --project samples/Chat -- connect 127.0.0.1:PORT --peer ID   opens a one-round-trip Noise IK session
//   dotnet run --project samples/Chat -- find [--name NAME]             finds a peer over mDNS (no address needed) and
//                                                                       connects to it by its PeerId
//   dotnet run --project samples/Chat -- demo                           both in one process: the sensor discovers the
//                                                                       light over mDNS on the loopback interface
//
// Over the internet, through a rendezvous node (samples/Rendezvous): add --rendezvous ADDRESS:PORT --rendezvous-peer ID
// to listen (it attaches and prints its PeerId), and connect by PeerId alone with
//   dotnet run --project samples/Chat -- connect --peer ID --rendezvous ADDRESS:PORT --rendezvous-peer ID
// The session starts relayed and moves to a direct path when the NATs allow; each side prints the path when it changes.
// For the nodes of a tier (docs/deploy-rendezvous.md), give the pair once per node: the device attaches to the nearest
// live one and moves to the next when it dies.
//
// mDNS is opt-in (--lan, find) because it multicasts on the LAN; --interface IF limits it to one interface.
// Lines typed go to the other side. Ctrl+C (or end of input when connecting) closes the sessions cleanly.
// Each role keeps its identity in a file (--identity PATH; default under the user's local application data).
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink;
using PeerLink.Discovery;
using PeerLink.Nat.Rendezvous;
using PeerLink.Samples.Chat;
using PeerLink.Sessions;

if (args.Length == 0 || args[0] is not ("listen" or "connect" or "find" or "demo"))
{
    return Usage();
}

string mode = args[0];
string? endpointText = null;
string? peerText = null;
string? identityPath = null;
string? nameWanted = null;
string? interfaceName = null;
// --rendezvous ADDRESS:PORT --rendezvous-peer ID, once per node; several pairs name the nodes of a tier.
var rendezvousEndPoints = new List<IPEndPoint>();
var rendezvousPeers = new List<PeerId>();
bool lan = false;
int port = 0;
for (int i = 1; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--peer" when i + 1 < args.Length:
            peerText = args[++i];
            break;
        case "--identity" when i + 1 < args.Length:
            identityPath = args[++i];
            break;
        case "--name" when i + 1 < args.Length:
            nameWanted = args[++i];
            break;
        case "--interface" when i + 1 < args.Length:
            interfaceName = args[++i];
            break;
        case "--lan":
            lan = true;
            break;
        case "--rendezvous" when i + 1 < args.Length && IPEndPoint.TryParse(args[i + 1], out IPEndPoint? node):
            rendezvousEndPoints.Add(node);
            i++;
            break;
        case "--rendezvous-peer" when i + 1 < args.Length && PeerId.TryParse(args[i + 1], out PeerId nodeId):
            rendezvousPeers.Add(nodeId);
            i++;
            break;
        case "--port" when i + 1 < args.Length && int.TryParse(args[i + 1], out int p) && p is >= 0 and <= 65535:
            port = p;
            i++;
            break;
        default:
            if (mode == "connect" && endpointText is null && !args[i].StartsWith("--", StringComparison.Ordinal))
            {
                endpointText = args[i];
                break;
            }

            return Usage();
    }
}

using ILoggerFactory loggerFactory = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;   // close cleanly instead of dying
    stop.Cancel();
};

// A service manager (or a shell that started us in the background) stops us with SIGTERM: just as cleanly.
using PosixSignalRegistration terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    stop.Cancel();
});

if (rendezvousEndPoints.Count != rendezvousPeers.Count)
{
    Console.Error.WriteLine("--rendezvous ADDRESS:PORT and --rendezvous-peer ID go together, once per node");
    return 2;
}

RendezvousNode[] rendezvousNodes = [.. rendezvousEndPoints.Select((endPoint, k) => new RendezvousNode(endPoint, rendezvousPeers[k]))];
bool rendezvous = rendezvousNodes.Length > 0;
Action<PeerNodeBuilder> attach = builder =>
{
    if (rendezvous)
    {
        builder.UseRendezvous(rendezvousNodes);   // one node, or the nodes of a tier: the nearest live one is used
    }
};

try
{
    switch (mode)
    {
        case "listen":
            return await ListenAsync(LoadIdentity(identityPath, "listen"), port, lan ? Mdns(interfaceName) : null, attach, loggerFactory, stop.Token);
        case "connect" when endpointText is null && rendezvous:
            if (peerText is null)
            {
                Console.Error.WriteLine("connect through a rendezvous node needs --peer ID");
                return 2;
            }

            if (!PeerId.TryParse(peerText, out PeerId byId, out string? invalid))
            {
                Console.Error.WriteLine($"--peer: {invalid}");
                return 2;
            }

            return await ChatAsync(LoadIdentity(identityPath, "connect"), async node =>
            {
                Console.WriteLine(rendezvousNodes.Length == 1
                    ? $"* attaching to rendezvous node {rendezvousNodes[0]}…"
                    : $"* attaching to the nearest of {rendezvousNodes.Length} rendezvous nodes…");
                await node.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync(stop.Token);
                return await node.ConnectAsync(byId, stop.Token);
            }, null, loggerFactory, stop.Token, attach);
        case "find":
            return await FindAsync(LoadIdentity(identityPath, "find"), nameWanted, Mdns(interfaceName), loggerFactory, stop.Token);
        case "connect":
            if (endpointText is null || peerText is null || !IPEndPoint.TryParse(endpointText, out IPEndPoint? endpoint) || !PeerId.TryParse(peerText, out PeerId peer, out string? why))
            {
                Console.Error.WriteLine(peerText is not null && !PeerId.TryParse(peerText, out _, out string? reason) ? $"--peer: {reason}" : "connect needs ADDRESS:PORT and --peer ID");
                return 2;
            }

            return await ChatAsync(LoadIdentity(identityPath, "connect"), node => node.ConnectAsync(endpoint, peer, stop.Token), null, loggerFactory, stop.Token, attach);
        default:
            return await DemoAsync(loggerFactory);
    }
}
catch (PeerLinkException e)
{
    Console.Error.WriteLine($"error ({e.Error}): {e.Message}");
    return 1;
}

// mDNS options: every LAN interface, or the one named.
static Action<PeerDiscoveryOptions> Mdns(string? interfaceName) => o =>
{
    o.InstanceName = $"Chat on {Environment.MachineName}";
    if (interfaceName is not null)
    {
        o.Mdns.Interfaces.Add(interfaceName);
    }
};

static async Task<int> ListenAsync(PeerIdentity identity, int port, Action<PeerDiscoveryOptions>? mdns, Action<PeerNodeBuilder> attach, ILoggerFactory loggerFactory, CancellationToken stop)
{
    using (identity)
    {
        PeerNodeBuilder builder = new PeerNodeBuilder(identity, loggerFactory).ListenOn(new IPEndPoint(IPAddress.Any, port));
        if (mdns is not null)
        {
            builder.UseMdnsDiscovery(mdns);
        }

        attach(builder);
        await using PeerNode node = await builder.StartAsync(stop);
        var local = (IPEndPoint)node.LocalEndPoints[0];
        Console.WriteLine($"PeerId {node.PeerId}");
        Console.WriteLine($"listening on port {local.Port}");
        if (node.GetComponent<RendezvousClient>() is { } rendezvousClient)
        {
            try
            {
                await rendezvousClient.WaitForAttachmentAsync(stop);
            }
            catch (OperationCanceledException)
            {
                return 1;
            }

            Console.WriteLine($"attached to rendezvous node {rendezvousClient.RendezvousPeerId.ToFingerprint()} at {rendezvousClient.EndPoint} (seen as {rendezvousClient.ObservedEndPoint})");
            Console.WriteLine($"from anywhere: dotnet run --project samples/Chat -- connect --peer {node.PeerId} --rendezvous ADDRESS:{rendezvousClient.EndPoint.Port} --rendezvous-peer {rendezvousClient.RendezvousPeerId}");
        }
        else
        {
            Console.WriteLine($"from another terminal: dotnet run --project samples/Chat -- connect 127.0.0.1:{local.Port} --peer {node.PeerId}");
        }
        if (mdns is not null)
        {
            Console.WriteLine($"advertised over mDNS as \"{node.GetDiscovery().InstanceName}\": on the LAN, dotnet run --project samples/Chat -- find");
        }

        // Console input blocks a thread; keep it off the accept loop.
        Task typing = Task.Run(() => TypeLinesAsync(node, stop), CancellationToken.None);
        try
        {
            await foreach (SecureSession session in node.AcceptAllAsync(stop))
            {
                Console.WriteLine($"* {Name(session)} joined ({session.Protocol.Name})");
                ShowPath(session);
                _ = PrintLinesAsync(session, stop);
            }
        }
        catch (OperationCanceledException)
        {
        }

        Console.WriteLine("* closing");
    }

    return 0;
}

// Finds a peer over mDNS (the first, or the one with that instance name) and chats with it: no address needed.
static Task<int> FindAsync(PeerIdentity identity, string? name, Action<PeerDiscoveryOptions> mdns, ILoggerFactory loggerFactory, CancellationToken stop) =>
    ChatAsync(
        identity,
        async node =>
        {
            Console.WriteLine(name is null ? "* looking for a peer on the LAN…" : $"* looking for \"{name}\" on the LAN…");
            await foreach (PeerDiscoveryEvent e in node.GetDiscovery().WatchAsync(stop))
            {
                if (e.Kind == ServiceEventKind.Found && (name is null || e.Peer.Instance.InstanceName == name))
                {
                    Console.WriteLine($"* found {e.Peer}");
                    return await node.ConnectAsync(e.Peer.PeerId, stop);
                }
            }

            throw new OperationCanceledException(stop);
        },
        o =>
        {
            mdns(o);
            o.Advertise = false;
        },
        loggerFactory,
        stop);

static async Task<int> ChatAsync(PeerIdentity identity, Func<PeerNode, Task<SecureSession>> open, Action<PeerDiscoveryOptions>? mdns, ILoggerFactory loggerFactory, CancellationToken stop, Action<PeerNodeBuilder>? attach = null)
{
    using (identity)
    {
        PeerNodeBuilder builder = new PeerNodeBuilder(identity, loggerFactory);
        if (mdns is not null)
        {
            builder.UseMdnsDiscovery(mdns);
        }

        attach?.Invoke(builder);
        await using PeerNode node = await builder.StartAsync(stop);
        SecureSession session;
        try
        {
            session = await open(node);
        }
        catch (OperationCanceledException)
        {
            return 1;
        }

        Console.WriteLine($"* connected to {Name(session)} over {session.Protocol.Name}; type lines, Ctrl+C to leave");
        ShowPath(session);
        Task printing = PrintLinesAsync(session, stop);

        // Console input blocks a thread: read it on its own, and stop at Ctrl+C, end of input or the peer leaving.
        Task typing = Task.Run(async () =>
        {
            while (Console.ReadLine() is { } line && !stop.IsCancellationRequested)
            {
                await session.SendAsync(new ChatLine(line, DateTimeOffset.UtcNow), stop);
            }
        }, CancellationToken.None);
        await Task.WhenAny(typing, printing, Task.Delay(Timeout.Infinite, stop)).ContinueWith(_ => { }, TaskScheduler.Default);

        await session.CloseAsync();
        await printing;
        Console.WriteLine("* closed");
    }

    return 0;
}

// The whole chat in one process: the sensor finds the light over mDNS, restricted to the loopback interface so that
// nothing reaches the LAN, connects by PeerId alone (IK), three lines each way, then a clean close.
static async Task<int> DemoAsync(ILoggerFactory loggerFactory)
{
    using PeerIdentity lightIdentity = PeerIdentity.Generate();
    using PeerIdentity sensorIdentity = PeerIdentity.Generate();
    await using PeerNode light = await new PeerNodeBuilder(lightIdentity, loggerFactory)
        .ListenOn(new IPEndPoint(IPAddress.Loopback, 0))
        .UseMdnsDiscovery(o =>
        {
            o.InstanceName = "Hallway light";
            o.Mdns.Interfaces.Add(LoopbackInterface());
        })
        .StartAsync();
    await using PeerNode sensor = await new PeerNodeBuilder(sensorIdentity, loggerFactory)
        .UseMdnsDiscovery(o =>
        {
            o.Advertise = false;
            o.Mdns.Interfaces.Add(LoopbackInterface());
        })
        .StartAsync();
    Console.WriteLine($"light  {light.PeerId} on {light.LocalEndPoints[0]}, advertised as \"{light.GetDiscovery().InstanceName}\"");
    Console.WriteLine($"sensor {sensor.PeerId}");

    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
    var clock = System.Diagnostics.Stopwatch.StartNew();
    DiscoveredPeer found = await sensor.GetDiscovery().WaitForPeerAsync(light.PeerId, timeout.Token);
    Console.WriteLine($"sensor discovered \"{found.Instance.InstanceName}\" at {string.Join(", ", found.EndPoints)} in {clock.ElapsedMilliseconds} ms");

    SecureSession toLight = await sensor.ConnectAsync(light.PeerId, timeout.Token);
    SecureSession fromSensor = (await light.AcceptAsync())!;
    Console.WriteLine($"session: {toLight.Protocol.Name}, both sides authenticated: {toLight.RemotePeerId == light.PeerId && fromSensor.RemotePeerId == sensor.PeerId}");

    string[] said = ["motion in the hallway", "still there?", "all quiet now"];
    string[] answered = ["switching the light on", "yes, light at 80%", "light off in 5 minutes"];
    for (int i = 0; i < said.Length; i++)
    {
        await toLight.SendAsync(new ChatLine(said[i], DateTimeOffset.UtcNow));
        ChatLine heard = (await fromSensor.ReceiveAsync())!.Value.Deserialize<ChatLine>();
        Console.WriteLine($"light  <- {heard.Text}");
        await fromSensor.SendAsync(new ChatLine(answered[i], DateTimeOffset.UtcNow));
        ChatLine reply = (await toLight.ReceiveAsync())!.Value.Deserialize<ChatLine>();
        Console.WriteLine($"sensor <- {reply.Text}");
    }

    await toLight.CloseAsync();
    bool endSeen = await fromSensor.ReceiveAsync() is null;
    Console.WriteLine($"closed cleanly: {endSeen}");
    return endSeen ? 0 : 1;
}

static async Task TypeLinesAsync(PeerNode node, CancellationToken stop)
{
    try
    {
        while (Console.ReadLine() is { } line && !stop.IsCancellationRequested)
        {
            foreach (SecureSession session in node.Sessions)
            {
                try
                {
                    await session.SendAsync(new ChatLine(line, DateTimeOffset.UtcNow), stop);
                }
                catch (PeerLinkException)
                {
                    // That peer is leaving.
                }
            }
        }
    }
    catch (OperationCanceledException)
    {
    }
}

static async Task PrintLinesAsync(SecureSession session, CancellationToken stop)
{
    try
    {
        await foreach (PeerMessage message in session.ReadAllAsync(stop))
        {
            ChatLine line = message.Deserialize<ChatLine>();
            Console.WriteLine($"{Name(session)} [{line.Sent.ToLocalTime():HH:mm:ss}]: {line.Text}");
        }

        Console.WriteLine($"* {Name(session)} left");
    }
    catch (OperationCanceledException)
    {
    }
    catch (PeerLinkException e)
    {
        Console.WriteLine($"* {Name(session)} lost ({e.Error}): {e.Message}");
    }
}

static string Name(SecureSession session) => session.RemotePeerId.ToFingerprint();

// The path now, and again whenever it changes (relayed, then direct when the NATs allow, and back if it breaks).
static void ShowPath(SecureSession session)
{
    Console.WriteLine($"path: {session.Path.Description}");
    session.PathChanged += (_, path) => Console.WriteLine($"path: {path.Description}");
}

static string LoopbackInterface() =>
    System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
        .First(n => n.NetworkInterfaceType == System.Net.NetworkInformation.NetworkInterfaceType.Loopback).Name;

static PeerIdentity LoadIdentity(string? path, string role)
{
    path ??= Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "peerlink", $"chat-{role}.key");
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    return PeerIdentity.LoadOrCreate(path);
}

static int Usage()
{
    Console.Error.WriteLine("usage: Chat listen [--port N] [--identity PATH] [--lan [--interface IF]] [--rendezvous ADDRESS:PORT --rendezvous-peer ID]");
    Console.Error.WriteLine("       Chat connect ADDRESS:PORT --peer PEERID [--identity PATH]");
    Console.Error.WriteLine("       Chat connect --peer PEERID --rendezvous ADDRESS:PORT --rendezvous-peer ID [--identity PATH]");
    Console.Error.WriteLine("       Chat find [--name NAME] [--interface IF] [--identity PATH]");
    Console.Error.WriteLine("       Chat demo");
    return 2;
}
