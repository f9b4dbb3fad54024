using System.Buffers;
using PeerLink.Sessions;
using Xunit;

namespace PeerLink.Tests.Sessions;

/// <summary>The per-session recycling of delivered-message buffers.</summary>
public sealed class DeliveryBuffersTests
{
    [Fact]
    public void AReleasedBufferIsReusedForAMessageOfTheSameSize()
    {
        var buffers = new DeliveryBuffers(1 << 20);
        byte[] first = buffers.Rent(16384);
        buffers.Return(first);

        byte[] second = buffers.Rent(16000);

        Assert.Same(first, second);
        Assert.Equal(0, buffers.SpareCount);
    }

    [Fact]
    public void ASpareTooSmallOrFarTooLargeIsNotUsed()
    {
        var buffers = new DeliveryBuffers(1 << 20);
        byte[] large = buffers.Rent(65536);
        buffers.Return(large);

        byte[] small = buffers.Rent(100);      // a 64 KiB spare for 100 bytes would waste it
        Assert.NotSame(large, small);
        Assert.True(small.Length >= 100);
        Assert.Equal(1, buffers.SpareCount);

        buffers.Return(small);
        byte[] bigger = buffers.Rent(200);     // the 128-byte spare on top is too small
        Assert.True(bigger.Length >= 200);
        Assert.NotSame(small, bigger);
        ArrayPool<byte>.Shared.Return(bigger);
    }

    [Fact]
    public void SparesAreBoundedByBytesAndCount()
    {
        var byBytes = new DeliveryBuffers(3 * 4096);
        for (int i = 0; i < 5; i++)
        {
            byBytes.Return(new byte[4096]);
        }

        Assert.Equal(3, byBytes.SpareCount);

        var byCount = new DeliveryBuffers(1 << 30);
        for (int i = 0; i < 70_000; i++)
        {
            byCount.Return(new byte[16]);
        }

        Assert.Equal(65_536, byCount.SpareCount);
    }

    [Fact]
    public void AFullInboxOfSmallMessagesIsRecycledWhole()
    {
        // A pipelined sender keeps thousands of 64-byte messages waiting (1 MiB of inbox): every one comes back as a spare
        // and is handed out again, so the next burst allocates nothing.
        var buffers = new DeliveryBuffers(1 << 20);
        var burst = new byte[10_000][];
        for (int i = 0; i < burst.Length; i++)
        {
            burst[i] = new byte[64];
            buffers.Return(burst[i]);
        }

        Assert.Equal(10_000, buffers.SpareCount);
        var seen = new System.Collections.Generic.HashSet<byte[]>(burst, System.Collections.Generic.ReferenceEqualityComparer.Instance);
        for (int i = 0; i < burst.Length; i++)
        {
            Assert.Contains(buffers.Rent(64), seen);
        }

        Assert.Equal(0, buffers.SpareCount);
    }

    [Fact]
    public void TrimGivesEverySpareBack()
    {
        var buffers = new DeliveryBuffers(1 << 20);
        for (int i = 0; i < 10; i++)
        {
            buffers.Return(new byte[1024]);
        }

        buffers.Trim();

        Assert.Equal(0, buffers.SpareCount);
    }
}
