// The rendezvous protocol (docs/nat-traversal.md): typed messages on the attach session between a device and its
// rendezvous node, and the preamble of a relay connection. Every message is a MessagePack [tag, map] union.
using System;
using System.Buffers;
using System.Security.Cryptography;
using PeerLink.Internal;
using PeerLink.Messaging;
using PolyType;

namespace PeerLink.Nat.Rendezvous;

/// <summary>Constants of the rendezvous protocol.</summary>
internal static class RendezvousWire
{
    /// <summary>The application id of attach sessions (both ends use it, whatever application the device runs).</summary>
    public const string ApplicationId = "peerlink-rendezvous";

    /// <summary>The version in <see cref="Welcome"/>.</summary>
    public const int Version = 1;

    /// <summary>Attach sessions carry small control messages only.</summary>
    public const int MaxMessageSize = 4096;

    /// <summary>A relay connection starts with "PLRY", the version, and the 16-byte token of its circuit.</summary>
    public const int RelayPreambleLength = 4 + 1 + TokenLength;

    public const int TokenLength = 16;

    public static ReadOnlySpan<byte> RelayMagic => "PLRY"u8;

    public static ReadOnlySpan<byte> SessionMagic => "PLNK"u8;

    public static byte[] NewToken() => RandomNumberGenerator.GetBytes(TokenLength);

    public static void WriteRelayPreamble(IBufferWriter<byte> output, ReadOnlySpan<byte> token)
    {
        Span<byte> preamble = output.GetSpan(RelayPreambleLength)[..RelayPreambleLength];
        RelayMagic.CopyTo(preamble);
        preamble[4] = Version;
        token.CopyTo(preamble[5..]);
        output.Advance(RelayPreambleLength);
    }

    public static byte[] Serialize(RendezvousMessage message) => ToBytes(message, RendezvousMessage.Shape);

    /// <summary>Reads one message; anything malformed is <see cref="PeerLinkError.InvalidMessagePack"/>.</summary>
    public static RendezvousMessage Deserialize(ReadOnlyMemory<byte> payload) => FromBytes(payload, RendezvousMessage.Shape);

    /// <summary>One control message as bytes (these are rare: the copy to an array is fine).</summary>
    public static byte[] ToBytes<T>(T message, ITypeShape<T> shape)
    {
        PooledBufferWriter buffer = PooledBufferWriter.Rent();
        try
        {
            TypedMessages.Serialize(TypedMessages.DefaultSerializer, buffer, message, shape);
            return buffer.WrittenMemory.ToArray();
        }
        finally
        {
            PooledBufferWriter.Return(buffer);
        }
    }

    /// <summary>One control message from bytes; anything malformed, or nil, is <see cref="PeerLinkError.InvalidMessagePack"/>.</summary>
    public static T FromBytes<T>(ReadOnlyMemory<byte> payload, ITypeShape<T> shape)
        where T : class =>
        TypedMessages.Deserialize(TypedMessages.DefaultSerializer, payload, shape)
        ?? throw new PeerLinkException(PeerLinkError.InvalidMessagePack, $"A {typeof(T).Name} was nil.");

    public static ITypeShape<T> ShapeOf<T>()
        where T : IShapeable<T> => T.GetTypeShape();
}

/// <summary>A message on the attach session.</summary>
[GenerateShape]
[DerivedTypeShape(typeof(Welcome), Tag = 1)]
[DerivedTypeShape(typeof(ConnectRequest), Tag = 2)]
[DerivedTypeShape(typeof(ConnectReply), Tag = 3)]
[DerivedTypeShape(typeof(IncomingRelay), Tag = 4)]
[DerivedTypeShape(typeof(RelayEnded), Tag = 5)]
[DerivedTypeShape(typeof(RelayEndedAck), Tag = 6)]
internal abstract partial record RendezvousMessage
{
    public static ITypeShape<RendezvousMessage> Shape { get; } = RendezvousWire.ShapeOf<RendezvousMessage>();
}

/// <summary>Node → device, first message after the handshake: the attachment is live.</summary>
/// <param name="Version">The node's rendezvous protocol version.</param>
/// <param name="Epoch">This attachment's number; a newer attachment of the same PeerId replaces an older one.</param>
/// <param name="KeepAliveMs">How often the device sends keepalives on this session when idle.</param>
/// <param name="ObservedEndPoint">The device's address and port as the node sees them (server-reflexive over TCP).</param>
/// <param name="StunPort">The port of the node's STUN server (UDP and TCP) on the node's address; 0 when it has none.</param>
internal sealed record Welcome(int Version, long Epoch, int KeepAliveMs, string? ObservedEndPoint, int StunPort) : RendezvousMessage;

/// <summary>Device → node, as a session request: relay me to <paramref name="Target"/>.</summary>
/// <param name="Target">The 32-byte PeerId of the peer to reach.</param>
internal sealed record ConnectRequest(byte[] Target) : RendezvousMessage;

/// <summary>Node → device, the response to <see cref="ConnectRequest"/>.</summary>
/// <param name="Error">0, or the <see cref="PeerLinkError"/> that explains the refusal.</param>
/// <param name="Circuit">The relay circuit's number.</param>
/// <param name="Token">The 16-byte token to present on the relay connection.</param>
/// <param name="Reason">Why it was refused, for people.</param>
/// <param name="RelayEndPoint">
/// Where to open the relay connection when the callee is attached to another node of the tier ("address:port" of that
/// node); null for this node.
/// </param>
internal sealed record ConnectReply(int Error, long Circuit, byte[]? Token, string? Reason, string? RelayEndPoint = null) : RendezvousMessage;

/// <summary>Node → callee: a peer wants a relayed session; connect to the node with this token.</summary>
/// <param name="Circuit">The relay circuit's number.</param>
/// <param name="From">The caller's 32-byte PeerId, as the node authenticated it.</param>
/// <param name="Token">The callee's token for the relay connection.</param>
internal sealed record IncomingRelay(long Circuit, byte[] From, byte[] Token) : RendezvousMessage;

/// <summary>Node → both ends of a circuit, as a session request: the relay is ending, and why.</summary>
/// <param name="Circuit">The relay circuit's number.</param>
/// <param name="Error">The <see cref="PeerLinkError"/> the devices report to their sessions.</param>
/// <param name="Reason">For people.</param>
internal sealed record RelayEnded(long Circuit, int Error, string Reason) : RendezvousMessage;

/// <summary>Device → node, the response to <see cref="RelayEnded"/>: the device has ended its side.</summary>
/// <param name="Circuit">The relay circuit's number.</param>
internal sealed record RelayEndedAck(long Circuit) : RendezvousMessage;

/// <summary>A PATH record inside the devices' own end-to-end session (the rendezvous node cannot read or forge it).</summary>
[GenerateShape]
[DerivedTypeShape(typeof(PathCandidates), Tag = 1)]
[DerivedTypeShape(typeof(PathSync), Tag = 2)]
internal abstract partial record PathMessage
{
    public static ITypeShape<PathMessage> Shape { get; } = RendezvousWire.ShapeOf<PathMessage>();

    public static byte[] Serialize(PathMessage message) => RendezvousWire.ToBytes(message, Shape);

    public static PathMessage Deserialize(ReadOnlyMemory<byte> payload) => RendezvousWire.FromBytes(payload, Shape);
}

/// <summary>Where this side can be reached for one punch attempt, and the token that proves a punched connection is this session's.</summary>
/// <param name="Attempt">The attempt's number.</param>
/// <param name="Token">16 random bytes; the peer presents them on the punched connection.</param>
/// <param name="Addresses">TCP candidates "address:port": host addresses, then the server-reflexive one.</param>
/// <param name="Observed">This side's server-reflexive address over TCP, when STUN answered.</param>
/// <param name="UdpCandidates">UDP candidates "kind address:port priority" (kind host or srflx), when this side punches UDP.</param>
/// <param name="UdpIndex">The receiver index this side reserved for the UDP punch.</param>
/// <param name="UdpSecret">32 random bytes, this side's half of the UDP punch keys.</param>
/// <param name="UdpObserved">This side's server-reflexive address over UDP, when STUN answered.</param>
internal sealed record PathCandidates(int Attempt, byte[] Token, string[] Addresses, string? Observed, string[]? UdpCandidates = null, uint UdpIndex = 0, byte[]? UdpSecret = null, string? UdpObserved = null) : PathMessage;

/// <summary>The driving side measured the round trip: punch now (the driver punches half a round trip later).</summary>
/// <param name="Attempt">The attempt's number.</param>
/// <param name="Birthday">UDP by birthday probing this time (exactly one side's NAT picks a new port per destination).</param>
internal sealed record PathSync(int Attempt, bool Birthday = false) : PathMessage;
