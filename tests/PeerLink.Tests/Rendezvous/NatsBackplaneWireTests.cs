using System;
using PeerLink.Nat.Rendezvous;
using PeerLink.Rendezvous.Nats;
using Xunit;

namespace PeerLink.Tests.Rendezvous;

/// <summary>The NATS backplane's reply to a routed connect request (docs/rendezvous-tier.md), and hostile input.</summary>
public sealed class NatsBackplaneWireTests
{
    private static readonly byte[] Token = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

    [Fact]
    public void AReadyReplyRoundTripsWithItsTokenAndRelayEndPoint()
    {
        byte[] bytes = NatsRendezvousBackplane.WriteReply(new RoutedConnectReply(null, null, 0x0102030405060708, Token, "203.0.113.12:7400", 1_796_289_213_028_000));

        Assert.True(NatsRendezvousBackplane.TryReadReply(bytes, out RoutedConnectReply? reply));
        Assert.Null(reply!.Error);
        Assert.Equal(0x0102030405060708, reply.Circuit);
        Assert.Equal(Token, reply.Token.ToArray());
        Assert.Equal("203.0.113.12:7400", reply.RelayEndPoint);
        Assert.Equal(1_796_289_213_028_000, reply.TargetEpoch);
        // version 1, error 0, circuit and epoch big-endian, token length 16
        Assert.Equal("01000000000102030405060708" + "000661B72C74D6A0" + "10", Convert.ToHexString(bytes, 0, 22));
    }

    [Fact]
    public void ARefusalKeepsItsCodeAndReason()
    {
        byte[] bytes = NatsRendezvousBackplane.WriteReply(RoutedConnectReply.Refused(PeerLinkError.RelayLimitExceeded, "a device may take part in 8 relayed sessions at once"));

        Assert.True(NatsRendezvousBackplane.TryReadReply(bytes, out RoutedConnectReply? reply));
        Assert.Equal(PeerLinkError.RelayLimitExceeded, reply!.Error);
        Assert.Equal("a device may take part in 8 relayed sessions at once", reply.Reason);
    }

    [Fact]
    public void EveryTruncationAnExtraByteAndAnotherVersionAreRefused()
    {
        byte[] bytes = NatsRendezvousBackplane.WriteReply(new RoutedConnectReply(null, null, 12, Token, "203.0.113.12:7400"));
        for (int length = 0; length < bytes.Length; length++)
        {
            Assert.False(NatsRendezvousBackplane.TryReadReply(bytes.AsSpan(0, length), out _));
        }

        Assert.False(NatsRendezvousBackplane.TryReadReply([.. bytes, 0], out _));
        byte[] other = (byte[])bytes.Clone();
        other[0] = 2;
        Assert.False(NatsRendezvousBackplane.TryReadReply(other, out _));
    }

    [Fact]
    public void LengthsThatPointPastTheEndAreRefusedWithoutReadingThere()
    {
        byte[] bytes = NatsRendezvousBackplane.WriteReply(new RoutedConnectReply(null, null, 12, Token, "x"));
        bytes[21] = 0xFF;   // a token longer than the message

        Assert.False(NatsRendezvousBackplane.TryReadReply(bytes, out _));
    }
}

/// <summary>The NATS backplane's options refuse what NATS would refuse later, naming the argument.</summary>
public sealed class NatsBackplaneOptionsTests
{
    [Theory]
    [InlineData("peerlink.rendezvous.", null)]
    [InlineData("peerlink.*", null)]
    [InlineData("peer link", null)]
    [InlineData("peerlink", "bucket.with.dots")]
    [InlineData("peerlink", "")]
    public async System.Threading.Tasks.Task BadSubjectsAndBucketsAreRefusedAtOnce(string prefix, string? bucket)
    {
        var options = new NatsRendezvousBackplaneOptions { SubjectPrefix = prefix, PresenceBucket = bucket };
        await using var nats = new NATS.Client.Core.NatsConnection();   // never connects: the constructor refuses first

        var error = Assert.Throws<ArgumentException>(() => new NatsRendezvousBackplane(nats, options));

        Assert.Equal("options", error.ParamName);
    }
}
