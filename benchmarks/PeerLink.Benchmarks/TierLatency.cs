using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;
using PeerLink.Testing;
using PeerLink.Transport;

namespace PeerLink.Benchmarks;

/// <summary>
/// The rendezvous tier's signalling, in one run on loopback: three nodes on a three-server NATS cluster (nats-server
/// must be installed), a caller attached to node 0, one callee on node 0 and one on node 1. Measures each connect
/// request's round trip (request → the node's reply, which for the cross-node callee includes the NATS request to node
/// 1 and its answer), interleaving same-node and cross-node requests, and then the connect requests per second one node
/// answers for concurrent callers. Not a BenchmarkDotNet benchmark (it needs per-request percentiles): run with
/// <c>-- --tier-latency [REQUESTS]</c>.
/// </summary>
internal static class TierLatency
{
    public static async Task RunAsync(int requests)
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync("nats", o =>
        {
            o.StunPort = null;
            o.MaxRelays = int.MaxValue;
            o.MaxRelaysPerDevice = int.MaxValue;
            o.MaxConnectRequestsPerSecond = 1_000_000;
            // Nobody joins these circuits: they wait out the run (ended circuits would send each device a notice).
            o.RelayJoinTimeout = TimeSpan.FromMinutes(10);
        });
        IReadOnlyList<RendezvousServer> nodes = tier.Nodes;
        var identities = new List<PeerIdentity>();
        var sessions = new List<SecureSession>();
        try
        {
            PeerIdentity callerId = PeerIdentity.Generate(), sameId = PeerIdentity.Generate(), crossId = PeerIdentity.Generate();
            identities.AddRange([callerId, sameId, crossId]);
            SecureSession caller = await AttachAsync(callerId, nodes[0], sessions);
            await AttachAsync(sameId, nodes[0], sessions);
            await AttachAsync(crossId, nodes[1], sessions);

            // Warm up both paths, then interleave, so that both see the same machine.
            for (int i = 0; i < 200; i++)
            {
                await ConnectAsync(caller, sameId.PeerId);
                await ConnectAsync(caller, crossId.PeerId);
            }

            var same = new List<double>(requests);
            var cross = new List<double>(requests);
            for (int i = 0; i < requests; i++)
            {
                same.Add(await ConnectAsync(caller, sameId.PeerId));
                cross.Add(await ConnectAsync(caller, crossId.PeerId));
            }

            Console.WriteLine($"connect signalling round trip, {requests} requests each, interleaved (µs):");
            Console.WriteLine($"  same node:  median {Percentile(same, 0.5):F0}, p99 {Percentile(same, 0.99):F0}");
            Console.WriteLine($"  cross-node: median {Percentile(cross, 0.5):F0}, p99 {Percentile(cross, 0.99):F0}");

            // Throughput: 32 callers on node 0, each with its own attach session, requesting the cross-node callee.
            var callers = new List<SecureSession>();
            for (int i = 0; i < 32; i++)
            {
                PeerIdentity id = PeerIdentity.Generate();
                identities.Add(id);
                callers.Add(await AttachAsync(id, nodes[0], sessions));
            }

            foreach ((string name, PeerId target) in new[] { ("same node", sameId.PeerId), ("cross-node", crossId.PeerId) })
            {
                using var done = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                long count = 0;
                var clock = Stopwatch.StartNew();
                await Task.WhenAll(callers.Select(async c =>
                {
                    while (!done.IsCancellationRequested)
                    {
                        await ConnectAsync(c, target);
                        Interlocked.Increment(ref count);
                    }
                }));
                Console.WriteLine($"connect requests per second answered by node 0, 32 callers, {name}: {count / clock.Elapsed.TotalSeconds:F0}");
            }
        }
        finally
        {
            foreach (SecureSession session in sessions)
            {
                await session.DisposeAsync();
            }

            foreach (PeerIdentity identity in identities)
            {
                identity.Dispose();
            }
        }
    }

    /// <summary>An attach session by hand; its incoming messages (relay offers nobody takes) are read and dropped.</summary>
    private static async Task<SecureSession> AttachAsync(PeerIdentity device, RendezvousServer node, List<SecureSession> sessions)
    {
        PeerConnection connection = await new TcpPeerConnector().ConnectAsync(node.EndPoint);
        var options = new SecureSessionOptions { Identity = device, ApplicationId = "peerlink-rendezvous", MaxMessageSize = 4096 };
        SecureSession session = await SecureSession.ConnectAsync(connection, options, node.PeerId);
        sessions.Add(session);
        await session.ReceiveAsync();   // the welcome
        _ = Task.Run(async () =>
        {
            try
            {
                while (await session.ReceiveAsync() is not null)
                {
                }
            }
            catch (PeerLinkException)
            {
            }
        });
        return session;
    }

    /// <summary>One connect request's round trip in microseconds; a refusal is an error here.</summary>
    private static async Task<double> ConnectAsync(SecureSession caller, PeerId target)
    {
        long start = Stopwatch.GetTimestamp();
        byte[] reply = await caller.RequestAsync(RendezvousWire.Serialize(new ConnectRequest(target.ToArray())));
        double micros = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        if (RendezvousWire.Deserialize(reply) is not ConnectReply { Error: 0 } answer)
        {
            throw new InvalidOperationException("A connect request was refused: " + (RendezvousWire.Deserialize(reply) as ConnectReply)?.Reason);
        }

        _ = answer;
        return micros;
    }

    private static double Percentile(List<double> values, double p)
    {
        double[] sorted = [.. values.Order()];
        return sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];
    }
}
