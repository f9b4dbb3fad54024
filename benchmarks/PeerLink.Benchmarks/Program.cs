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

BenchmarkSwitcher.FromAssembly(typeof(BenchmarkConfig).Assembly).Run(args, new BenchmarkConfig());
