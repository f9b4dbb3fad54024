using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat.Rendezvous;
using PeerLink.Rendezvous.Nats;
using PeerLink.Testing;

namespace PeerLink.Benchmarks;

/// <summary>
/// A tier of three rendezvous nodes in this process on a three-server NATS cluster, with COUNT devices attached across
/// them by child processes (raw attach sessions, two processes per node: a process holds a few thousand device keys at
/// most): the managed memory and CPU of the nodes per attached device, then how long the devices of a node that dies
/// take to be reachable again (real devices that know all three nodes). Not a BenchmarkDotNet benchmark (it measures
/// states and one event): run with <c>-- --tier-attach [COUNT] [FAILOVER_DEVICES]</c>; needs nats-server.
/// </summary>
internal static class TierAttach
{
    public static async Task RunAsync(int count, int failoverDevices)
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync("nats", o =>
        {
            o.StunPort = null;
            o.MaxAttachments = count + failoverDevices + 100;
            o.MaxPendingHandshakes = 256;
            o.MaxPendingHandshakesPerAddress = 256;   // every device comes from 127.0.0.1
        });
        IReadOnlyList<RendezvousServer> nodes = tier.Nodes;
        IReadOnlyList<NatsRendezvousBackplane> backplanes = tier.NatsBackplanes;
        var identities = new List<PeerIdentity>();
        var children = new List<Process>();
        var devices = new List<PeerNode>();
        try
        {
            long before = Measure();
            TimeSpan cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            const int PerNode = 2;
            for (int c = 0; c < 3 * PerNode; c++)
            {
                RendezvousServer node = nodes[c % 3];
                int share = (count / (3 * PerNode)) + (c < count % (3 * PerNode) ? 1 : 0);
                children.Add(StartClients(node, share));
            }

            foreach (Process child in children)
            {
                string? line = await child.StandardOutput.ReadLineAsync();
                if (line != "attached")
                {
                    throw new InvalidOperationException($"A client process said '{line}'.");
                }
            }

            double seconds = clock.Elapsed.TotalSeconds;
            TimeSpan attachCpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
            int attached = nodes.Sum(n => n.AttachedCount);
            int routed = backplanes.Sum(b => b.Subscriptions);
            long after = Measure();
            Console.WriteLine($"devices attached across 3 nodes: {attached} of {count} ({string.Join(" / ", nodes.Select(n => n.AttachedCount))}); NATS subscriptions held by the nodes: {routed}");
            Console.WriteLine($"attach: {seconds:N1} s ({count / seconds:N0}/s), nodes' CPU {attachCpu.TotalSeconds:N1} s ({attachCpu.TotalMilliseconds * 1000 / count:N0} µs per attach, handshake included)");
            Console.WriteLine($"nodes' managed heap growth just after: {(after - before) / 1024.0 / 1024.0:N1} MiB, {(after - before) / (double)count:N0} bytes per attached device");

            TimeSpan idleCpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            await Task.Delay(TimeSpan.FromSeconds(30));
            TimeSpan idleCpu = Process.GetCurrentProcess().TotalProcessorTime - idleCpuBefore;
            long idle = Measure();
            Console.WriteLine($"after 30 s idle: nodes' managed heap growth {(idle - before) / 1024.0 / 1024.0:N1} MiB, {(idle - before) / (double)count:N0} bytes per device; nodes' CPU {idleCpu.TotalMilliseconds / 30_000 * 100:N1} % of one core (keepalives every 25 s)");

            // Failover: devices that know all three nodes (they pick by round trip, nearly equal on loopback).
            RendezvousNode[] list = tier.DeviceList;
            for (int i = 0; i < failoverDevices; i++)
            {
                PeerIdentity identity = PeerIdentity.Generate();
                identities.Add(identity);
                devices.Add(await new PeerNodeBuilder(identity).UseRendezvous(list, o => o.UpgradeToDirect = false).StartAsync());
            }

            await Task.WhenAll(devices.Select(d => d.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync()));
            // The node most of them chose dies.
            RendezvousServer victim = nodes.MaxBy(n => devices.Count(d => d.GetComponent<RendezvousClient>()!.CurrentNode.PeerId == n.PeerId))!;
            PeerNode[] orphans = [.. devices.Where(d => d.GetComponent<RendezvousClient>()!.CurrentNode.PeerId == victim.PeerId)];
            Task[] lost = [.. orphans.Select(d => d.GetComponent<RendezvousClient>()!.WhenDetachedAsync())];
            var failover = Stopwatch.StartNew();
            await victim.DisposeAsync();   // a clean stop: SIGTERM to the node
            await Task.WhenAll(lost);
            var back = await Task.WhenAll(orphans.Select(async d =>
            {
                await d.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync();
                return failover.Elapsed;
            }));
            double[] times = [.. back.Select(t => t.TotalMilliseconds).Order()];
            Console.WriteLine($"a node stopped with {orphans.Length} of {failoverDevices} devices that know the tier: re-attached elsewhere after median {times[times.Length / 2]:N0} ms, last {times[^1]:N0} ms (MinReattachDelay 1 s, drawn between 0.5 and 1 s)");
        }
        finally
        {
            foreach (PeerNode device in devices)
            {
                await device.DisposeAsync();
            }

            foreach (Process child in children)
            {
                child.StandardInput.Close();
                await child.WaitForExitAsync();
                child.Dispose();
            }

            foreach (PeerIdentity identity in identities)
            {
                identity.Dispose();
            }
        }
    }

    private static Process StartClients(RendezvousServer node, int count)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (!Environment.ProcessPath!.EndsWith("PeerLink.Benchmarks", StringComparison.Ordinal))
        {
            start.ArgumentList.Add(typeof(TierAttach).Assembly.Location);   // run through the dotnet host
        }

        foreach (string arg in new[] { "--attach-clients", node.EndPoint.ToString(), node.PeerId.ToString(), count.ToString(System.Globalization.CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(arg);
        }

        return Process.Start(start)!;
    }

    private static long Measure()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }

        return GC.GetTotalMemory(forceFullCollection: true);
    }
}
