using System;
using BenchmarkDotNet.Running;
using PeerLink.Benchmarks;

// Non-interactive: pass --filter '*' (or a narrower filter) on the command line; see docs/benchmarks.md.
// --idle-memory measures the managed memory of 1000 idle connections of each kind instead.
if (Array.IndexOf(args, "--idle-memory") >= 0)
{
    await IdleMemory.RunAsync();
    return;
}

// --attach-memory [COUNT] measures a rendezvous node's memory per attached device and the attach rate (10,000 by default).
int attach = Array.IndexOf(args, "--attach-memory");
if (attach >= 0)
{
    await AttachMemory.RunAsync(attach + 1 < args.Length ? int.Parse(args[attach + 1], System.Globalization.CultureInfo.InvariantCulture) : 10_000);
    return;
}

// --tier-latency [REQUESTS]: the rendezvous tier's connect signalling, same node against cross-node (needs nats-server).
int tier = Array.IndexOf(args, "--tier-latency");
if (tier >= 0)
{
    await TierLatency.RunAsync(tier + 1 < args.Length ? int.Parse(args[tier + 1], System.Globalization.CultureInfo.InvariantCulture) : 5000);
    return;
}

// --tier-attach [COUNT] [FAILOVER_DEVICES]: a tier's memory and CPU per attached device, and failover (needs nats-server).
int tierAttach = Array.IndexOf(args, "--tier-attach");
if (tierAttach >= 0)
{
    int Arg(int at, int fallback) => at < args.Length ? int.Parse(args[at], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    await TierAttach.RunAsync(Arg(tierAttach + 1, 10_000), Arg(tierAttach + 2, 300));
    return;
}

if (args.Length == 4 && args[0] == "--attach-clients")
{
    await AttachMemory.ClientsAsync(System.Net.IPEndPoint.Parse(args[1]), PeerLink.PeerId.Parse(args[2]), int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture));
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(BenchmarkConfig).Assembly).Run(args, new BenchmarkConfig());
