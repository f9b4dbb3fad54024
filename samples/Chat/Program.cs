// A two-peer chat over an encrypted, mutually authenticated PeerLink session.
//
//   dotnet run --project samples/Chat -- listen [--port N]              prints its PeerId and port, waits for peers
//   dotnet run --project samples/Chat -- connect 127.0.0.1:PORT --peer ID   opens a one-round-trip Noise IK session
//   dotnet run --project samples/Chat -- demo                           both in one process, over loopback TCP
//
// Lines typed go to the other side. Ctrl+C (or end of input when connecting) closes the sessions cleanly.
// Each role keeps its identity in a file (--identity PATH; default under the user's local application data).
using System;
using System.IO;
using System.Net;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink;
using PeerLink.Samples.Chat;
using PeerLink.Sessions;

if (args.Length == 0 || args[0] is not ("listen" or "connect" or "demo"))
{
    return Usage();
}

string mode = args[0];
string? endpointText = null;
string? peerText = null;
string? identityPath = null;
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

try
{
    switch (mode)
    {
        case "listen":
            return await ListenAsync(LoadIdentity(identityPath, "listen"), port, loggerFactory, stop.Token);
        case "connect":
            if (endpointText is null || peerText is null || !IPEndPoint.TryParse(endpointText, out IPEndPoint? endpoint) || !PeerId.TryParse(peerText, out PeerId peer, out string? why))
            {
                Console.Error.WriteLine(peerText is not null && !PeerId.TryParse(peerText, out _, out string? reason) ? $"--peer: {reason}" : "connect needs ADDRESS:PORT and --peer ID");
                return 2;
            }

            return await ConnectAsync(LoadIdentity(identityPath, "connect"), endpoint, peer, loggerFactory, stop.Token);
        default:
            return await DemoAsync(loggerFactory);
    }
}
catch (PeerLinkException e)
{
    Console.Error.WriteLine($"error ({e.Error}): {e.Message}");
    return 1;
}

static async Task<int> ListenAsync(PeerIdentity identity, int port, ILoggerFactory loggerFactory, CancellationToken stop)
{
    using (identity)
    {
        await using PeerNode node = await new PeerNodeBuilder(identity, loggerFactory).ListenOn(new IPEndPoint(IPAddress.Any, port)).StartAsync(stop);
        var local = (IPEndPoint)node.LocalEndPoints[0];
        Console.WriteLine($"PeerId {node.PeerId}");
        Console.WriteLine($"listening on port {local.Port}");
        Console.WriteLine($"from another terminal: dotnet run --project samples/Chat -- connect 127.0.0.1:{local.Port} --peer {node.PeerId}");

        // Console input blocks a thread; keep it off the accept loop.
        Task typing = Task.Run(() => TypeLinesAsync(node, stop), CancellationToken.None);
        try
        {
            await foreach (SecureSession session in node.AcceptAllAsync(stop))
            {
                Console.WriteLine($"* {Name(session)} joined ({session.Protocol.Name})");
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

static async Task<int> ConnectAsync(PeerIdentity identity, IPEndPoint endpoint, PeerId peer, ILoggerFactory loggerFactory, CancellationToken stop)
{
    using (identity)
    {
        await using PeerNode node = await new PeerNodeBuilder(identity, loggerFactory).StartAsync(stop);
        SecureSession session = await node.ConnectAsync(endpoint, peer, stop);
        Console.WriteLine($"* connected to {Name(session)} over {session.Protocol.Name}; type lines, Ctrl+C to leave");
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

// The whole chat in one process: a listener and a connector on loopback, three lines each way, then a clean close.
static async Task<int> DemoAsync(ILoggerFactory loggerFactory)
{
    using PeerIdentity lightIdentity = PeerIdentity.Generate();
    using PeerIdentity sensorIdentity = PeerIdentity.Generate();
    await using PeerNode light = await new PeerNodeBuilder(lightIdentity, loggerFactory).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
    await using PeerNode sensor = await new PeerNodeBuilder(sensorIdentity, loggerFactory).StartAsync();
    Console.WriteLine($"light  {light.PeerId} on {light.LocalEndPoints[0]}");
    Console.WriteLine($"sensor {sensor.PeerId}");

    SecureSession toLight = await sensor.ConnectAsync(light.LocalEndPoints[0], light.PeerId);
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

static PeerIdentity LoadIdentity(string? path, string role)
{
    path ??= Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "peerlink", $"chat-{role}.key");
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    return PeerIdentity.LoadOrCreate(path);
}

static int Usage()
{
    Console.Error.WriteLine("usage: Chat listen [--port N] [--identity PATH]");
    Console.Error.WriteLine("       Chat connect ADDRESS:PORT --peer PEERID [--identity PATH]");
    Console.Error.WriteLine("       Chat demo");
    return 2;
}
