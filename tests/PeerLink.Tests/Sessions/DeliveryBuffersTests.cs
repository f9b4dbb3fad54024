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
        for (int i = 0; i < 100; i++)
        {
            byCount.Return(new byte[16]);
        }

        Assert.Equal(64, byCount.SpareCount);
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
