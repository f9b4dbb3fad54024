using System;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Benchmarks;

/// <summary>
/// One case of <see cref="SessionThroughputBenchmarks"/> (16 KiB messages) in a loop for a number of seconds, for
/// <c>perf stat</c>: the CPU time per message of each side, which a run's wall time alone does not show.
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
        await body();   // warm up
        using var self = Process.GetCurrentProcess();
        TimeSpan cpu = self.TotalProcessorTime;
        TimeSpan user = self.UserProcessorTime;
        var watch = Stopwatch.StartNew();
        long messages = 0;
        while (watch.Elapsed.TotalSeconds < seconds)
        {
            await body();
            messages += 1000;
        }

        watch.Stop();
        self.Refresh();
        double perMessage(TimeSpan t) => t.TotalMilliseconds * 1000 / messages;
        Console.WriteLine($"{which}: {messages} messages, {watch.Elapsed.TotalMilliseconds * 1000 / messages:F2} us per message; " +
            $"CPU {perMessage(self.TotalProcessorTime - cpu):F2} us per message (user {perMessage(self.UserProcessorTime - user):F2})");
        await b.CleanupAsync();
    }
}
