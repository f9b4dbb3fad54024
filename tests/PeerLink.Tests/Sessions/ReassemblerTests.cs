using System;
using PeerLink.Sessions;
using Xunit;

namespace PeerLink.Tests.Sessions;

/// <summary>Fragments joined into messages, bounded by the receiver's limit.</summary>
public sealed class ReassemblerTests
{
    [Fact]
    public void AnUnfragmentedRecordIsTheMessageItselfWithoutACopy()
    {
        var reassembler = new Reassembler();
        byte[] body = [1, 2, 3];
        Assert.True(reassembler.Add(SessionWire.Request, body, 100, out ReadOnlySpan<byte> message, out byte flags));
        Assert.True(message == body.AsSpan());       // the same memory
        Assert.Equal(SessionWire.Request, flags);
        Assert.False(reassembler.InProgress);
    }

    [Fact]
    public void FragmentsAreJoinedWithTheFirstFragmentsFlags()
    {
        var reassembler = new Reassembler();
        byte[] whole = new byte[10_000];
        new Random(3).NextBytes(whole);
        byte first = (byte)(SessionWire.More | SessionWire.Response);
        Assert.False(reassembler.Add(first, whole.AsSpan(0, 10), 20_000, out _, out _));
        Assert.True(reassembler.InProgress);
        Assert.False(reassembler.Add(SessionWire.More, whole.AsSpan(10, 5000), 20_000, out _, out _));     // grows past 4 KiB
        Assert.True(reassembler.Add(0, whole.AsSpan(5010), 20_000, out ReadOnlySpan<byte> message, out byte flags));
        Assert.Equal(whole, message.ToArray());
        Assert.Equal(first, flags);
        reassembler.Release();
        Assert.False(reassembler.InProgress);
    }

    [Fact]
    public void AMessageOverTheLimitIsRefusedBeforeItIsBuffered()
    {
        var reassembler = new Reassembler();
        Assert.False(reassembler.Add(SessionWire.More, new byte[60], 100, out _, out _));
        var error = Assert.Throws<PeerLinkException>(() => reassembler.Add(SessionWire.More, new byte[45], 100, out _, out _));     // 105 > 100 + 4
        Assert.Equal(PeerLinkError.MessageTooLarge, error.Error);
        Assert.False(reassembler.InProgress);     // dropped, buffer returned

        // The id of a request may come on top of the limit.
        Assert.False(reassembler.Add(SessionWire.More, new byte[60], 100, out _, out _));
        Assert.True(reassembler.Add(0, new byte[44], 100, out ReadOnlySpan<byte> message, out _));
        Assert.Equal(104, message.Length);
    }
}
