using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Sessions;
using PeerLink.Transport;

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

        byte[] replay = await CaptureFirstMessageAsync(nodeIdentity.PeerId);
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
                attackers.Add(Task.Run(() => ReplayLoopAsync(from, target, replay, () => Interlocked.Increment(ref floodConnections), stop.Token)));
            }
        }

        var loris = IPAddress.Parse("127.0.2.1");
        for (int c = 0; c < 64; c++)
        {
            attackers.Add(Task.Run(() => ReplayLoopAsync(loris, target, [], () => Interlocked.Increment(ref floodConnections), stop.Token)));
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

    /// <summary>Connects from <paramref name="from"/>, sends <paramref name="bytes"/> (nothing: a silent connection), waits until the node closes it, again.</summary>
    private static async Task ReplayLoopAsync(IPAddress from, IPEndPoint target, byte[] bytes, Action connected, CancellationToken stop)
    {
        byte[] sink = new byte[1024];
        while (!stop.IsCancellationRequested)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.Bind(new IPEndPoint(from, 0));
                await socket.ConnectAsync(target, stop);
                connected();
                if (bytes.Length > 0)
                {
                    await socket.SendAsync(bytes, SocketFlags.None, stop);
                }

                while (await socket.ReceiveAsync(sink, SocketFlags.None, stop) > 0)
                {
                }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
            }
        }
    }

    /// <summary>The bytes an IK initiator writes first (preamble and message 1), taken from an in-memory connection.</summary>
    private static async Task<byte[]> CaptureFirstMessageAsync(PeerId responder)
    {
        using PeerIdentity someone = PeerIdentity.Generate();
        (PeerConnection initiator, PeerConnection wire) = PeerConnection.CreatePair();
        using var cancel = new CancellationTokenSource();
        Task<SecureSession> connecting = SecureSession.ConnectAsync(initiator, new SecureSessionOptions { Identity = someone }, responder, cancellationToken: cancel.Token);
        ReadResult read = await wire.Transport.Input.ReadAsync();
        byte[] bytes = read.Buffer.ToArray();
        wire.Transport.Input.AdvanceTo(read.Buffer.End);
        await cancel.CancelAsync();
        await connecting.ContinueWith(_ => { }, TaskScheduler.Default);
        await wire.DisposeAsync();
        return bytes;
    }
}
