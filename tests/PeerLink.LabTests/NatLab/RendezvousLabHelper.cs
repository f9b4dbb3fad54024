using System;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// The laboratory's rendezvous processes, run inside the lab's namespaces by <see cref="LabHelper"/>:
/// <c>rendezvous LISTEN STUN_PORT</c> runs a node until standard input closes;
/// <c>device-listen RDV RDV_ID</c> attaches, prints its PeerId, and echoes every message of every session;
/// <c>device-connect RDV RDV_ID TARGET COUNT WAIT_MS</c> reaches TARGET by PeerId, exchanges COUNT numbered messages
/// while the session looks for a direct path (waiting up to WAIT_MS for it), and prints one JSON line.
/// PEERLINK_LAB_PUNCH chooses what the devices punch: "udp", "tcp", or both (unset).
/// </summary>
internal static class RendezvousLabHelper
{
    public const string Usage = "rendezvous LISTEN STUN_PORT [IDENTITY] | device-listen RDV RDV_ID | device-connect RDV RDV_ID TARGET COUNT WAIT_MS [SIZE] | device-session RDV RDV_ID TARGET";

    public static async Task<int> RunAsync(string[] args)
    {
        switch (args[0])
        {
            case "rendezvous":
            {
                using PeerIdentity identity = args.Length > 3 ? PeerIdentity.LoadOrCreate(args[3]) : PeerIdentity.Generate();
                await using RendezvousServer server = await RendezvousServer.StartAsync(identity, new RendezvousServerOptions
                {
                    ListenEndPoint = IPEndPoint.Parse(args[1]),
                    StunPort = int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture),
                }, Logging);
                Console.WriteLine($"ready {server.PeerId} {server.EndPoint}");
                while (await Console.In.ReadLineAsync() is not null)
                {
                }

                return 0;
            }

            case "device-listen":
            {
                using PeerIdentity identity = PeerIdentity.Generate();
                await using PeerNode node = await Device(identity, args).StartAsync();
                await node.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync().WaitAsync(TimeSpan.FromSeconds(30));
                Console.WriteLine($"ready {node.PeerId}");
                _ = Task.Run(async () =>
                {
                    await foreach (SecureSession session in node.AcceptAllAsync())
                    {
                        _ = Task.Run(() => EchoAsync(session));
                    }
                });
                while (await Console.In.ReadLineAsync() is not null)
                {
                }

                return 0;
            }

            case "device-connect":
                return await ConnectAsync(args);

            case "device-session":
                return await SessionAsync(args);

            default:
                return 2;
        }
    }

    private static PeerNodeBuilder Device(PeerIdentity identity, string[] args) =>
        new PeerNodeBuilder(identity, Logging).UseRendezvous(IPEndPoint.Parse(args[1]), PeerId.Parse(args[2]), o =>
        {
            o.PunchTimeout = TimeSpan.FromSeconds(3);
            o.PathKeepAlive = TimeSpan.FromSeconds(1);
            string? punch = Environment.GetEnvironmentVariable("PEERLINK_LAB_PUNCH");
            o.PunchUdp = punch != "tcp";
            o.PunchTcp = punch != "udp";
        });

    /// <summary>PEERLINK_LAB_LOG=1 (or =debug): the node's and the devices' logs on stderr, Information (or Debug) and up, to see why a run failed.</summary>
    private static readonly ILoggerFactory? Logging = Environment.GetEnvironmentVariable("PEERLINK_LAB_LOG") is "1" or "debug"
        ? LoggerFactory.Create(b => b.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
            .SetMinimumLevel(Environment.GetEnvironmentVariable("PEERLINK_LAB_LOG") == "debug" ? LogLevel.Debug : LogLevel.Information))
        : null;

    private static bool IsDirect(SessionPathKind kind) => kind is SessionPathKind.DirectTcp or SessionPathKind.DirectUdp;

    private static async Task EchoAsync(SecureSession session)
    {
        try
        {
            while (await session.ReceiveAsync() is { } message)
            {
                await session.SendAsync(message.Payload);
            }
        }
        catch (PeerLinkException e)
        {
            Console.Error.WriteLine($"echo ended: {e.Error}: {e.Message}");
        }
    }

    /// <summary>
    /// A session driven from standard input, one command per line, one answer line each: wait-direct, wait-relayed,
    /// send N (numbered messages, echoed back), send-pause N (the same, but prints "half" midway and waits for a "go" line), watch-detach,
    /// wait-reattach, wait-end.
    /// </summary>
    private static async Task<int> SessionAsync(string[] args)
    {
        PeerId target = PeerId.Parse(args[3]);
        using PeerIdentity identity = PeerIdentity.Generate();
        await using PeerNode node = await Device(identity, args).StartAsync();
        RendezvousClient client = node.GetComponent<RendezvousClient>()!;
        await client.WaitForAttachmentAsync().WaitAsync(TimeSpan.FromSeconds(30));
        SecureSession session = await node.ConnectAsync(target);
        var paths = System.Threading.Channels.Channel.CreateUnbounded<SessionPath>();
        session.PathChanged += (_, path) => paths.Writer.TryWrite(path);
        Console.WriteLine($"ready {session.Path.Kind}");
        int next = 0;
        Task detached = Task.CompletedTask;
        while (await Console.In.ReadLineAsync() is { } command)
        {
            string[] words = command.Split(' ');
            switch (words[0])
            {
                case "wait-direct":
                case "wait-relayed":
                    bool direct = words[0] == "wait-direct";
                    SessionPath now = session.Path;
                    while (IsDirect(now.Kind) != direct)
                    {
                        now = await paths.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(60));
                    }

                    Console.WriteLine($"{now.Kind} {now.Description}");
                    break;
                case "send":
                case "send-pause":
                    bool pause = words[0] == "send-pause";
                    int count = int.Parse(words[1], System.Globalization.CultureInfo.InvariantCulture);
                    int first = next;
                    next += count;
                    Task sending = Task.Run(async () =>
                    {
                        for (int i = first; i < first + count; i++)
                        {
                            if (pause && i == first + (count / 2))
                            {
                                Console.WriteLine("half");
                                _ = await Console.In.ReadLineAsync();   // "go"
                            }

                            await session.SendAsync(BitConverter.GetBytes(i));
                        }
                    });
                    int echoed = 0;
                    string outcome = "ok";
                    try
                    {
                        for (int i = first; i < first + count; i++)
                        {
                            PeerMessage? message = await session.ReceiveAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(60));
                            if (message is null || BitConverter.ToInt32(message.Value.Payload.Span) != i)
                            {
                                outcome = $"out-of-order-at-{i}";
                                break;
                            }

                            echoed++;
                        }

                        await sending;
                    }
                    catch (Exception e) when (e is PeerLinkException or TimeoutException)
                    {
                        outcome = e.Message.Replace(' ', '_');
                    }

                    Console.WriteLine($"echoed {echoed} {outcome} {session.Path.Kind}");
                    break;
                case "watch-detach":
                    detached = client.WhenDetachedAsync();
                    Console.WriteLine("watching");
                    break;
                case "wait-reattach":
                    await detached.WaitAsync(TimeSpan.FromSeconds(60));
                    await client.WaitForAttachmentAsync().WaitAsync(TimeSpan.FromSeconds(60));
                    Console.WriteLine($"attached {client.Epoch}");
                    break;
                case "wait-end":
                    var clock = Stopwatch.StartNew();
                    try
                    {
                        await session.Completion.WaitAsync(TimeSpan.FromSeconds(90));
                        Console.WriteLine($"ended None {clock.ElapsedMilliseconds}");
                    }
                    catch (PeerLinkException e)
                    {
                        Console.WriteLine($"ended {e.Error} {clock.ElapsedMilliseconds} {e.Message}");
                    }

                    break;
            }
        }

        return 0;
    }

    private static async Task<int> ConnectAsync(string[] args)
    {
        PeerId target = PeerId.Parse(args[3]);
        int count = int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture);
        var wait = TimeSpan.FromMilliseconds(int.Parse(args[5], System.Globalization.CultureInfo.InvariantCulture));
        int size = args.Length > 6 ? int.Parse(args[6], System.Globalization.CultureInfo.InvariantCulture) : 4;   // bytes per message, at least 4
        using PeerIdentity identity = PeerIdentity.Generate();
        await using PeerNode node = await Device(identity, args).StartAsync();
        await node.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync().WaitAsync(TimeSpan.FromSeconds(30));

        var clock = Stopwatch.StartNew();
        SecureSession session = await node.ConnectAsync(target);
        var settled = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
        session.PathChanged += (_, path) =>
        {
            if (IsDirect(path.Kind) || path.Description.Contains("3 punch attempt", StringComparison.Ordinal))
            {
                settled.TrySetResult(clock.Elapsed.TotalMilliseconds);
            }
        };
        if (IsDirect(session.Path.Kind))
        {
            settled.TrySetResult(clock.Elapsed.TotalMilliseconds);
        }

        await session.SendAsync(BitConverter.GetBytes(0));
        PeerMessage? first = await session.ReceiveAsync();
        double firstMessageMs = clock.Elapsed.TotalMilliseconds;
        int echoed = first is { } f && BitConverter.ToInt32(f.Payload.Span) == 0 ? 1 : 0;

        // The rest flow while the session looks for a direct path, and after it found one (or gave up).
        Task sending = Task.Run(async () =>
        {
            for (int i = 1; i < count; i++)
            {
                if (i == count / 2)
                {
                    try
                    {
                        await settled.Task.WaitAsync(wait);
                    }
                    catch (TimeoutException)
                    {
                    }
                }

                byte[] message = new byte[size];
                BitConverter.TryWriteBytes(message, i);
                await session.SendAsync(message);
            }
        });
        for (int i = 1; i < count; i++)
        {
            PeerMessage? message = await session.ReceiveAsync().AsTask().WaitAsync(wait + TimeSpan.FromSeconds(30));
            if (message is null || BitConverter.ToInt32(message.Value.Payload.Span) != i)
            {
                break;
            }

            echoed++;
        }

        await sending;
        double? settledMs = settled.Task.IsCompletedSuccessfully ? settled.Task.Result : null;
        SessionPath path = session.Path;
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            echoed,
            firstMessageMs,
            settledMs,
            kind = path.Kind.ToString(),
            description = path.Description,
            attempts = path.Attempts.Count,
            outcomes = string.Join(",", path.Attempts.Select(a => a.Outcome.ToString())),
        }));
        await session.CloseAsync();
        return 0;
    }
}
