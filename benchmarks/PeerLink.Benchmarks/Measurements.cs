using System;
using System.Collections.Generic;
using System.Linq;

namespace PeerLink.Benchmarks;

/// <summary>What the load and flood programs share: the managed heap after full collections, and a latency summary.</summary>
internal static class Measurements
{
    /// <summary>The managed heap after three full, compacting collections.</summary>
    public static long ManagedHeap()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }

        return GC.GetTotalMemory(forceFullCollection: true);
    }

    /// <summary>"LABEL: N WHAT, median …, p99 …; K FAILED" from unsorted times in milliseconds.</summary>
    public static string Latencies(string label, IEnumerable<double> milliseconds, int failed, string what, string failedWhat)
    {
        double[] times = [.. milliseconds.Order()];
        return times.Length == 0
            ? $"{label}: none of the {what} succeeded ({failed} {failedWhat})"
            : $"{label}: {times.Length} {what}, median {times[times.Length / 2]:N2} ms, p99 {times[Math.Min(times.Length - 1, (int)(times.Length * 0.99))]:N2} ms, max {times[^1]:N2} ms; {failed} {failedWhat}";
    }
}
