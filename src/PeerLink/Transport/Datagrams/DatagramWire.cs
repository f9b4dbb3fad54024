// The datagram wire format (docs/protocol.md §11), in the spirit of WireGuard: every PeerLink datagram starts with a
// type byte whose top bit is set (STUN's first two bits are zero, so one socket carries both), three bytes that depend on
// the type, and a 32-bit index chosen by the receiver. Transport datagrams add a 64-bit counter, which is the AEAD nonce.
using System;
using System.Buffers.Binary;

namespace PeerLink.Transport.Datagrams;

internal static class DatagramWire
{
    // Types.
    public const byte Initiation = 0x81;     // type version pattern 0 | sender:u32 | noise message 1 | mac1[16] | mac2[16]
    public const byte Response = 0x82;       // type 0 0 0 | sender:u32 | receiver:u32 | noise message 2 | mac1[16] | mac2[16]
    public const byte CookieReply = 0x83;    // type 0 0 0 | receiver:u32 | nonce[12] | sealed cookie[16+16]
    public const byte Finish = 0x84;         // type 0 0 0 | receiver:u32 | sender:u32 | noise message 3 (XX only)
    public const byte Transport = 0x85;      // type flags 0 0 | receiver:u32 | counter:u64be | ciphertext
    public const byte Probe = 0x86;          // type flags 0 0 | receiver:u32 | transaction:u64 | [response: seen-from address] | tag[16]

    /// <summary>Probe flags: an answer to a check (else a check), and the controlling side's choice of this path.</summary>
    public const byte ProbeResponseBit = 0x01;
    public const byte ProbeNominateBit = 0x02;

    /// <summary>Type, flags, receiver index and transaction number of a punch probe; the tag follows (and, in a response, the address).</summary>
    public const int ProbeHeaderSize = 16;

    /// <summary>Transport flags: the key phase (flips at every key update).</summary>
    public const byte KeyPhaseBit = 0x01;

    public const int TransportHeaderSize = 16;
    public const int TagSize = 16;
    public const int MacSize = 16;
    public const int CookieSize = 16;
    public const int CookieNonceSize = 12;
    public const int CookieReplySize = 8 + CookieNonceSize + CookieSize + TagSize;
    public const int InitiationHeaderSize = 8;
    public const int ResponseHeaderSize = 12;
    public const int FinishHeaderSize = 12;

    /// <summary>The largest UDP payload PeerLink sends before path MTU discovery: a 1,280-byte IPv6 packet less 40 + 8 bytes of headers.</summary>
    public const int BaseDatagramSize = 1232;

    /// <summary>The largest datagram PeerLink sends or reads: the top of path MTU discovery (anything longer is dropped).</summary>
    public const int MaxDatagramSize = 16384;

    /// <summary>Buffers start at this size and grow only when path MTU discovery finds a larger path.</summary>
    public const int InitialBufferSize = 1500;

    /// <summary>
    /// Datagram sizes that path MTU discovery tries in turn after the base (RFC 8899 search): Ethernet less IPv6 and UDP
    /// headers, a jumbo frame less the same, and the largest PeerLink uses (a loopback or a jumbo LAN).
    /// </summary>
    public static ReadOnlySpan<int> ProbeSizes => [1452, 8952, MaxDatagramSize];

    /// <summary>The largest plaintext of a transport datagram at the base size.</summary>
    public const int BasePayloadSize = BaseDatagramSize - TransportHeaderSize - TagSize;

    /// <summary>True when the datagram is STUN (RFC 8489 §5: two zero bits, then the magic cookie at offset 4).</summary>
    public static bool IsStun(ReadOnlySpan<byte> datagram) =>
        datagram.Length >= 20 && (datagram[0] & 0xC0) == 0 && BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]) == 0x2112A442;

    public static bool IsPeerLink(ReadOnlySpan<byte> datagram) => datagram.Length >= 8 && datagram[0] is >= Initiation and <= Probe;

    /// <summary>The receiver index of a response, cookie reply, finish, transport datagram or probe.</summary>
    public static uint ReceiverIndex(ReadOnlySpan<byte> datagram) => datagram[0] == Response
        ? BinaryPrimitives.ReadUInt32BigEndian(datagram[8..])
        : BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]);

    public static void WriteTransportHeader(Span<byte> destination, uint receiver, ulong counter, bool keyPhase)
    {
        destination[0] = Transport;
        destination[1] = keyPhase ? KeyPhaseBit : (byte)0;
        destination[2] = 0;
        destination[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], receiver);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], counter);
    }
}
