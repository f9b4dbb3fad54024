// The address attributes of STUN: MAPPED-ADDRESS (RFC 8489 §14.1), XOR-MAPPED-ADDRESS (§14.2), ALTERNATE-SERVER (§14.15),
// and RESPONSE-ORIGIN / OTHER-ADDRESS (RFC 5780 §7.3, §7.4), which share MAPPED-ADDRESS's format.
using System;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace PeerLink.Nat.Stun;

internal static class StunAddress
{
    private const byte FamilyIPv4 = 0x01;
    private const byte FamilyIPv6 = 0x02;

    public static int EncodedLength(IPEndPoint endPoint) => endPoint.AddressFamily == AddressFamily.InterNetworkV6 ? 20 : 8;

    /// <summary>Decodes an address attribute; with <paramref name="transactionId"/> the XOR form. False when malformed.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> value, bool xor, ReadOnlySpan<byte> transactionId, out IPEndPoint? endPoint)
    {
        endPoint = null;
        if (value.Length < 4)
        {
            return false;
        }

        byte family = value[1];
        int addressLength = family switch
        {
            FamilyIPv4 => 4,
            FamilyIPv6 => 16,
            _ => -1,
        };
        if (addressLength < 0 || value.Length != 4 + addressLength)
        {
            return false;
        }

        ushort port = BinaryPrimitives.ReadUInt16BigEndian(value[2..]);
        Span<byte> address = stackalloc byte[16];
        address = address[..addressLength];
        value.Slice(4, addressLength).CopyTo(address);
        if (xor)
        {
            port ^= (ushort)(StunConstants.MagicCookie >> 16);
            XorAddress(address, transactionId);
        }

        endPoint = new IPEndPoint(new IPAddress(address), port);
        return true;
    }

    /// <summary>Encodes an address attribute value into <paramref name="destination"/>; returns its length.</summary>
    public static int Encode(IPEndPoint endPoint, bool xor, ReadOnlySpan<byte> transactionId, Span<byte> destination)
    {
        IPAddress ip = endPoint.Address.IsIPv4MappedToIPv6 ? endPoint.Address.MapToIPv4() : endPoint.Address;
        bool v6 = ip.AddressFamily == AddressFamily.InterNetworkV6;
        int addressLength = v6 ? 16 : 4;
        destination[0] = 0;
        destination[1] = v6 ? FamilyIPv6 : FamilyIPv4;
        ushort port = (ushort)endPoint.Port;
        Span<byte> address = destination.Slice(4, addressLength);
        if (!ip.TryWriteBytes(address, out _))
        {
            throw new ArgumentException("The address could not be encoded.", nameof(endPoint));
        }

        if (xor)
        {
            port ^= (ushort)(StunConstants.MagicCookie >> 16);
            XorAddress(address, transactionId);
        }

        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], port);
        return 4 + addressLength;
    }

    /// <summary>IPv4: XOR with the magic cookie; IPv6: XOR with the magic cookie followed by the transaction id.</summary>
    private static void XorAddress(Span<byte> address, ReadOnlySpan<byte> transactionId)
    {
        Span<byte> mask = stackalloc byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(mask, StunConstants.MagicCookie);
        transactionId.CopyTo(mask[4..]);
        for (int i = 0; i < address.Length; i++)
        {
            address[i] ^= mask[i];
        }
    }
}
