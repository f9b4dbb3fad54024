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

// --session-load [COUNT] [SECONDS]: COUNT sessions on one node, each exchanging a message a second (issue 15 §4).
int load = Array.IndexOf(args, "--session-load");
if (load >= 0)
{
    int Arg(int at, int fallback) => at < args.Length ? int.Parse(args[at], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    await SessionLoad.RunAsync(Arg(load + 1, 10_000), Arg(load + 2, 60));
    return;
}

// --handshake-flood [FLOOD_ADDRESSES] [CONNECTS]: legitimate connect times with and without a handshake flood (issue 15 §4).
int flood = Array.IndexOf(args, "--handshake-flood");
if (flood >= 0)
{
    int Arg(int at, int fallback) => at < args.Length ? int.Parse(args[at], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    await HandshakeFlood.RunAsync(Arg(flood + 1, 4), Arg(flood + 2, 200));
    return;
}

// --stun-flood [SENDERS] [SECONDS]: Binding round trips with and without a datagram flood on the STUN server (issue 15 §4).
int stunFlood = Array.IndexOf(args, "--stun-flood");
if (stunFlood >= 0)
{
    int Arg(int at, int fallback) => at < args.Length ? int.Parse(args[at], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    await StunFlood.RunAsync(Arg(stunFlood + 1, 2), Arg(stunFlood + 2, 10));
    return;
}

// --mdns-flood [SECONDS]: an mDNS responder's legacy answers with and without a multicast flood on loopback (issue 15 §4).
int mdnsFlood = Array.IndexOf(args, "--mdns-flood");
if (mdnsFlood >= 0)
{
    await MdnsFlood.RunAsync(mdnsFlood + 1 < args.Length ? int.Parse(args[mdnsFlood + 1], System.Globalization.CultureInfo.InvariantCulture) : 10);
    return;
}

// --bulk-loop tcp|tls|chacha|aesgcm [SECONDS]: one 16 KiB case of SessionThroughputBenchmarks in a plain loop; prints
// the wall time and the process's CPU time per message (docs/benchmarks.md).
int bulkLoop = Array.IndexOf(args, "--bulk-loop");
if (bulkLoop >= 0)
{
    await BulkLoop.RunAsync(args[bulkLoop + 1], bulkLoop + 2 < args.Length ? int.Parse(args[bulkLoop + 2], System.Globalization.CultureInfo.InvariantCulture) : 20);
    return;
}

// --relay-loop direct|relayed|upgraded|forwarded|spliced [SECONDS]: one of RelayThroughputBenchmarks' sessions in a
// plain loop, for perf stat / strace (docs/benchmarks.md): prints the time, thread-pool work items and messages per second.
int relayLoop = Array.IndexOf(args, "--relay-loop");
if (relayLoop >= 0)
{
    await RelayThroughputBenchmarks.LoopAsync(args[relayLoop + 1], relayLoop + 2 < args.Length ? int.Parse(args[relayLoop + 2], System.Globalization.CultureInfo.InvariantCulture) : 20);
    return;
}

if (args.Length == 5 && args[0] == "--load-clients")
{
    await SessionLoad.ClientsAsync(System.Net.IPEndPoint.Parse(args[1]), PeerLink.PeerId.Parse(args[2]), int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture), int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture));
    return;
}

if (args.Length == 4 && args[0] == "--attach-clients")
{
    await AttachMemory.ClientsAsync(System.Net.IPEndPoint.Parse(args[1]), PeerLink.PeerId.Parse(args[2]), int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture));
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(BenchmarkConfig).Assembly).Run(args, new BenchmarkConfig());
