using System;
using PeerLink.Nat.Rendezvous;
using Xunit;

namespace PeerLink.Tests.Rendezvous;

/// <summary>The rendezvous and path messages byte for byte as docs/nat-traversal.md gives them, and hostile input.</summary>
public sealed class RendezvousWireTests
{
    // [1, {"Version": 1, "Epoch": 7, "KeepAliveMs": 25000, "ObservedEndPoint": "203.0.113.101:4000", "StunPort": 3478}]
    private const string WelcomeHex = "920185A756657273696F6E01A545706F636807AB4B656570416C6976654D73CD61A8B04F62736572766564456E64506F696E74B23230332E302E3131332E3130313A34303030A85374756E506F7274CD0D96";

    [Fact]
    public void AWelcomeIsATaggedUnionOfAMapByPropertyName()
    {
        byte[] bytes = RendezvousWire.Serialize(new Welcome(1, 7, 25000, "203.0.113.101:4000", 3478));

        Assert.Equal(WelcomeHex, Convert.ToHexString(bytes));
        Assert.Equal(new Welcome(1, 7, 25000, "203.0.113.101:4000", 3478), RendezvousWire.Deserialize(bytes));
    }

    [Fact]
    public void EveryMessageRoundTrips()
    {
        byte[] token = new byte[16];
        token[3] = 9;
        RendezvousMessage[] messages =
        [
            new ConnectRequest(new byte[32]),
            new ConnectReply(0, 12, token, null),
            new ConnectReply(0, 12, token, null, "203.0.113.12:7400"),
            new ConnectReply(27, 0, null, "a device may take part in 8 relayed sessions at once"),
            new IncomingRelay(12, new byte[32], token),
            new RelayEnded(12, 27, "the relayed session reached the node's limit of 268435456 bytes"),
            new RelayEndedAck(12),
        ];

        foreach (RendezvousMessage message in messages)
        {
            RendezvousMessage back = RendezvousWire.Deserialize(RendezvousWire.Serialize(message));
            Assert.Equal(message.GetType(), back.GetType());
            Assert.Equal(Convert.ToHexString(RendezvousWire.Serialize(message)), Convert.ToHexString(RendezvousWire.Serialize(back)));
        }

        var candidates = new PathCandidates(2, token, ["10.0.1.2:40000", "203.0.113.101:40000"], "203.0.113.101:40000");
        var parsed = (PathCandidates)PathMessage.Deserialize(PathMessage.Serialize(candidates));
        Assert.Equal(candidates.Addresses, parsed.Addresses);
        Assert.Equal(new PathSync(2), PathMessage.Deserialize(PathMessage.Serialize(new PathSync(2))));
    }

    [Fact]
    public void AConnectReplyFromANodeBeforeTiersHasNoRelayEndPoint()
    {
        // [3, {"Error": 0, "Circuit": 12, "Token": bin16, "Reason": nil}]: what a node of version 1 without a tier sent.
        byte[] token = new byte[16];
        byte[] bytes = Convert.FromHexString("920384A54572726F7200A7436972637569740CA5546F6B656EC410" + Convert.ToHexString(token) + "A6526561736F6EC0");

        var reply = Assert.IsType<ConnectReply>(RendezvousWire.Deserialize(bytes));

        Assert.Equal(12, reply.Circuit);
        Assert.Null(reply.RelayEndPoint);
        Assert.Equal("203.0.113.12:7400", ((ConnectReply)RendezvousWire.Deserialize(RendezvousWire.Serialize(reply with { RelayEndPoint = "203.0.113.12:7400" }))).RelayEndPoint);
    }

    [Fact]
    public void EveryTruncationAndAnUnknownTagAreCleanErrors()
    {
        byte[] welcome = Convert.FromHexString(WelcomeHex);
        for (int length = 0; length < welcome.Length; length++)
        {
            var error = Assert.Throws<PeerLinkException>(() => RendezvousWire.Deserialize(welcome.AsMemory(0, length)));
            Assert.Equal(PeerLinkError.InvalidMessagePack, error.Error);
        }

        byte[] unknownTag = (byte[])welcome.Clone();
        unknownTag[1] = 0x7f;
        Assert.Equal(PeerLinkError.InvalidMessagePack, Assert.Throws<PeerLinkException>(() => RendezvousWire.Deserialize(unknownTag)).Error);
        Assert.Equal(PeerLinkError.InvalidMessagePack, Assert.Throws<PeerLinkException>(() => RendezvousWire.Deserialize(new byte[] { 0xc0 })).Error);
        Assert.Equal(PeerLinkError.InvalidMessagePack, Assert.Throws<PeerLinkException>(() => RendezvousWire.Deserialize((byte[])[.. welcome, 0x00])).Error);
    }
}
