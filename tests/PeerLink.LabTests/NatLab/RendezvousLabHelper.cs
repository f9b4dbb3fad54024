using System;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// The laboratory's rendezvous processes, run inside the lab's namespaces by <see cref="LabHelper"/>:
/// <c>rendezvous LISTEN STUN_PORT</c> runs a node until standard input closes;
/// <c>device-listen RDV RDV_ID</c> attaches, prints its PeerId, and echoes every message of every session;
/// <c>device-connect RDV RDV_ID TARGET COUNT WAIT_MS</c> reaches TARGET by PeerId, exchanges COUNT numbered messages
/// while the session looks for a direct path (waiting up to WAIT_MS for it), and prints one JSON line.
/// </summary>
internal static class RendezvousLabHelper
{
    public const string Usage = "rendezvous LISTEN STUN_PORT | device-listen RDV RDV_ID | device-connect RDV RDV_ID TARGET COUNT WAIT_MS";

    public static async Task<int> RunAsync(string[] args)
    {
        switch (args[0])
        {
            case "rendezvous":
            {
                using PeerIdentity identity = PeerIdentity.Generate();
                await using RendezvousServer server = await RendezvousServer.StartAsync(identity, new RendezvousServerOptions
                {
                    ListenEndPoint = IPEndPoint.Parse(args[1]),
                    StunPort = int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture),
                });
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

            default:
                return 2;
        }
    }

    private static PeerNodeBuilder Device(PeerIdentity identity, string[] args) =>
        new PeerNodeBuilder(identity).UseRendezvous(IPEndPoint.Parse(args[1]), PeerId.Parse(args[2]), o =>
        {
            o.PunchTimeout = TimeSpan.FromSeconds(3);
            o.PathKeepAlive = TimeSpan.FromSeconds(1);
        });

    private static async Task EchoAsync(SecureSession session)
    {
        try
        {
            while (await session.ReceiveAsync() is { } message)
            {
                await session.SendAsync(message.Payload);
            }
        }
        catch (PeerLinkException)
        {
        }
    }

    private static async Task<int> ConnectAsync(string[] args)
    {
        PeerId target = PeerId.Parse(args[3]);
        int count = int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture);
        var wait = TimeSpan.FromMilliseconds(int.Parse(args[5], System.Globalization.CultureInfo.InvariantCulture));
        using PeerIdentity identity = PeerIdentity.Generate();
        await using PeerNode node = await Device(identity, args).StartAsync();
        await node.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync().WaitAsync(TimeSpan.FromSeconds(30));

        var clock = Stopwatch.StartNew();
        SecureSession session = await node.ConnectAsync(target);
        var settled = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
        session.PathChanged += (_, path) =>
        {
            if (path.Kind == SessionPathKind.DirectTcp || path.Description.Contains("3 punch attempt", StringComparison.Ordinal))
            {
                settled.TrySetResult(clock.Elapsed.TotalMilliseconds);
            }
        };
        if (session.Path.Kind == SessionPathKind.DirectTcp)
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

                await session.SendAsync(BitConverter.GetBytes(i));
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
