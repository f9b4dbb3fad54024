using BenchmarkDotNet.Running;
using PeerLink.Benchmarks;

// Non-interactive: pass --filter '*' (or a narrower filter) on the command line; see docs/benchmarks.md.
BenchmarkSwitcher.FromAssembly(typeof(BenchmarkConfig).Assembly).Run(args, new BenchmarkConfig());
