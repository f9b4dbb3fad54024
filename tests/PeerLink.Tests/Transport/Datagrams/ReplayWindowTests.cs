using System;
using System.Collections.Generic;
using PeerLink.Transport.Datagrams;
using Xunit;

namespace PeerLink.Tests.Transport.Datagrams;

public sealed class ReplayWindowTests
{
    [Fact]
    public void EachCounterIsAcceptedOnce()
    {
        var window = new ReplayWindow();
        for (ulong i = 0; i < 10_000; i++)
        {
            Assert.True(window.TryRecord(i));
            Assert.False(window.TryRecord(i));
        }
    }

    [Fact]
    public void ReorderingWithinTheWindowIsAcceptedAndReplaysAreNot()
    {
        var window = new ReplayWindow();
        var random = new Random(6479);
        var counters = new List<ulong>();
        for (ulong i = 0; i < 20_000; i++)
        {
            counters.Add(i);
        }

        // Shuffle within blocks of 2,048: every counter arrives at most 2,047 places late.
        for (int start = 0; start < counters.Count; start += 2048)
        {
            for (int i = Math.Min(counters.Count, start + 2048) - 1; i > start; i--)
            {
                int j = random.Next(start, i + 1);
                (counters[i], counters[j]) = (counters[j], counters[i]);
            }
        }

        foreach (ulong counter in counters)
        {
            Assert.True(window.TryRecord(counter), $"counter {counter}");
        }

        foreach (ulong counter in counters)
        {
            Assert.False(window.TryRecord(counter));
        }
    }

    [Fact]
    public void CountersOlderThanTheWindowAreRejected()
    {
        var window = new ReplayWindow();
        Assert.True(window.TryRecord(100_000));
        Assert.False(window.IsFresh(100_000 - ReplayWindow.Size));
        Assert.True(window.IsFresh(100_000 - ReplayWindow.Size + 1));
        Assert.True(window.TryRecord(100_000 - ReplayWindow.Size + 1));
        Assert.False(window.TryRecord(0));
    }

    [Fact]
    public void AJumpFarAheadClearsTheOldBits()
    {
        var window = new ReplayWindow();
        Assert.True(window.TryRecord(5));
        Assert.True(window.TryRecord(5 + (64 * 64 * 3)));   // far beyond the ring: every block is cleared
        ulong again = 5 + (64 * 64 * 3) - 64;                 // same ring position as old bits, never seen
        Assert.True(window.TryRecord(again));
        Assert.False(window.TryRecord(again));
    }

    [Fact]
    public void IsFreshChangesNothing()
    {
        var window = new ReplayWindow();
        Assert.True(window.IsFresh(7));
        Assert.True(window.IsFresh(7));
        Assert.True(window.TryRecord(7));
        Assert.False(window.IsFresh(7));
    }
}
