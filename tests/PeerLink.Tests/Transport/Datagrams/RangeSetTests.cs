using System;
using System.Collections.Generic;
using PeerLink.Transport.Datagrams;
using Xunit;

namespace PeerLink.Tests.Transport.Datagrams;

public sealed class RangeSetTests
{
    [Fact]
    public void RandomAddsAndRemovesMatchABitmap()
    {
        var random = new Random(9002);
        var set = new RangeSet();
        var model = new bool[500];
        for (int step = 0; step < 5000; step++)
        {
            int start = random.Next(0, 490);
            int end = start + random.Next(0, 10);
            bool add = random.Next(3) != 0;
            if (add)
            {
                set.Add(start, end);
            }
            else
            {
                set.Remove(start, end);
            }

            for (int i = start; i < end; i++)
            {
                model[i] = add;
            }

            if (step % 50 == 0)
            {
                for (int i = 0; i < model.Length; i++)
                {
                    Assert.Equal(model[i], set.Contains(i));
                }

                for (int r = 1; r < set.Count; r++)
                {
                    Assert.True(set[r - 1].End < set[r].Start, "ranges stay disjoint, sorted and not adjacent");
                }
            }
        }
    }

    [Fact]
    public void ContiguousFromAndRemoveBelow()
    {
        var set = new RangeSet();
        set.Add(0, 10);
        set.Add(12, 20);
        Assert.Equal(10, set.ContiguousFrom(0));
        Assert.Equal(10, set.ContiguousFrom(3));
        Assert.Equal(11, set.ContiguousFrom(11));
        set.Add(10, 12);
        Assert.Equal(20, set.ContiguousFrom(0));
        set.RemoveBelow(15);
        Assert.Equal((15L, 20L), set.First);
        set.Add(30, 31);
        set.Add(40, 41);
        set.KeepHighest(1);
        Assert.Equal(1, set.Count);
        Assert.Equal((40L, 41L), set.First);
    }
}
