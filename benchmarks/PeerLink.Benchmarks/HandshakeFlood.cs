using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Sessions;
using PeerLink.Testing;

namespace PeerLink.Benchmarks;

/// <summary>
/// Legitimate connects to a node while it is flooded (issue 15 §4), against the same connects without the flood.
/// The flood: from each of several loopback addresses, connections that replay one valid IK first message (the node
/// does the Noise work, answers, and then waits for an ACCEPT that never comes, holding a pending-handshake slot until
/// its handshake timeout), reconnecting as soon as they are closed; and a slow-loris of silent connections from one
/// more address. The node runs with its default limits. <c>-- --handshake-flood [FLOOD_ADDRESSES] [CONNECTS]</c>.
/// </summary>
internal static class HandshakeFlood
{
    public static async Task RunAsync(int floodAddresses, int connects)
    {
        using PeerIdentity nodeIdentity = PeerIdentity.Generate();
        await using PeerNode node = await new PeerNodeBuilder(nodeIdentity).ListenOn(new IPEndPoint(IPAddress.Any, 0)).StartAsync();
        int port = ((IPEndPoint)node.LocalEndPoints[0]).Port;
        _ = Task.Run(async () =>
        {
            await foreach (SecureSession session in node.AcceptAllAsync())
            {
                await session.CloseAsync();
            }
        });

        using PeerIdentity attacker = PeerIdentity.Generate();
        byte[] replay = await HandshakeReplay.CaptureFirstMessageAsync(attacker, nodeIdentity.PeerId);
        using PeerIdentity legit = PeerIdentity.Generate();
        await using PeerNode client = await new PeerNodeBuilder(legit).StartAsync();
        var target = new IPEndPoint(IPAddress.Loopback, port);

        (double[] quiet, int quietFailed) = await ConnectManyAsync(client, target, nodeIdentity.PeerId, connects);
        Report("without the flood", quiet, quietFailed);

        using var stop = new CancellationTokenSource();
        long floodConnections = 0;
        var attackers = new List<Task>();
        for (int a = 0; a < floodAddresses; a++)
        {
            var from = IPAddress.Parse($"127.0.1.{a + 1}");
            for (int c = 0; c < 32; c++)
            {
                attackers.Add(Task.Run(() => HandshakeReplay.ReplayLoopAsync(from, target, replay, () => Interlocked.Increment(ref floodConnections), stop.Token)));
            }
        }

        var loris = IPAddress.Parse("127.0.2.1");
        for (int c = 0; c < 64; c++)
        {
            attackers.Add(Task.Run(() => HandshakeReplay.ReplayLoopAsync(loris, target, [], () => Interlocked.Increment(ref floodConnections), stop.Token)));
        }

        long shedBefore = node.ShedConnections;
        var clock = Stopwatch.StartNew();
        (double[] flooded, int floodFailed) = await ConnectManyAsync(client, target, nodeIdentity.PeerId, connects);
        double seconds = clock.Elapsed.TotalSeconds;
        Report($"during the flood ({floodAddresses} replaying addresses × 32 connections, 64 silent from one more)", flooded, floodFailed);
        Console.WriteLine($"flood: {Interlocked.Read(ref floodConnections) / seconds:N0} attacking connections/s; the node shed {node.ShedConnections - shedBefore} connections at its limits");
        await stop.CancelAsync();
        await Task.WhenAll(attackers.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
    }

    private static async Task<(double[] Milliseconds, int Failed)> ConnectManyAsync(PeerNode client, IPEndPoint target, PeerId peer, int count)
    {
        var times = new List<double>();
        int failed = 0;
        for (int i = 0; i < count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            try
            {
                SecureSession session = await client.ConnectAsync(target, peer);
                times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                session.Abort();
                await session.DisposeAsync();
            }
            catch (PeerLinkException)
            {
                failed++;
            }
        }

        return ([.. times.Order()], failed);
    }

    private static void Report(string label, double[] times, int failed) =>
        Console.WriteLine(Measurements.Latencies(label, times, failed, "connects", "failed"));
}
