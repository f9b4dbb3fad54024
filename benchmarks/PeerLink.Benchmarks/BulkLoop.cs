using System;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Benchmarks;

/// <summary>What one benchmark body did in a plain loop: for <c>perf stat</c>, <c>strace</c> and CPU per message.</summary>
internal readonly record struct LoopResult(long Messages, TimeSpan Elapsed, long WorkItems, TimeSpan Cpu, TimeSpan UserCpu)
{
    /// <summary>Microseconds of <paramref name="time"/> per message.</summary>
    public double PerMessage(TimeSpan time) => time.TotalMilliseconds * 1000 / Messages;

    /// <summary>Runs <paramref name="body"/> (<paramref name="messagesPerCall"/> messages each) once to warm up, then until <paramref name="seconds"/> have passed.</summary>
    public static async Task<LoopResult> RunAsync(Func<Task> body, int messagesPerCall, int seconds)
    {
        await body();   // warm up
        using var self = Process.GetCurrentProcess();
        TimeSpan cpu = self.TotalProcessorTime;
        TimeSpan user = self.UserProcessorTime;
        long items = ThreadPool.CompletedWorkItemCount;
        var watch = Stopwatch.StartNew();
        long messages = 0;
        while (watch.Elapsed.TotalSeconds < seconds)
        {
            await body();
            messages += messagesPerCall;
        }

        watch.Stop();
        self.Refresh();
        return new LoopResult(messages, watch.Elapsed, ThreadPool.CompletedWorkItemCount - items, self.TotalProcessorTime - cpu, self.UserProcessorTime - user);
    }
}

/// <summary>
/// One case of <see cref="SessionThroughputBenchmarks"/> (16 KiB messages) in a loop for a number of seconds: the CPU
/// time per message of both sides together, which a run's wall time alone does not show.
/// </summary>
internal static class BulkLoop
{
    public static async Task RunAsync(string which, int seconds)
    {
        var b = new SessionThroughputBenchmarks { MessageSize = 16 * 1024 };
        await b.SetupAsync();
        Func<Task> body = which switch
        {
            "tls" => b.SslStreamTls13,
            "tcp" => b.PlainTcp,
            "chacha" => b.PeerLinkSession,
            "aesgcm" => b.PeerLinkSessionAesGcm,
            _ => throw new ArgumentException("tls, tcp, chacha or aesgcm", nameof(which)),
        };
        LoopResult r = await LoopResult.RunAsync(body, SessionThroughputBenchmarks.Messages, seconds);
        Console.WriteLine($"{which}: {r.Messages} messages, {r.PerMessage(r.Elapsed):F2} us per message; " +
            $"CPU {r.PerMessage(r.Cpu):F2} us per message (user {r.PerMessage(r.UserCpu):F2})");
        await b.CleanupAsync();
    }
}
