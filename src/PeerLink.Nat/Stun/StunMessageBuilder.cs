// STUN message encoding (RFC 8489 §5, §14): attributes in order, padded to 4 bytes, with MESSAGE-INTEGRITY,
// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT computed over what precedes them.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace PeerLink.Nat.Stun;

internal sealed class StunMessageBuilder
{
    private const int MaxLength = 65532;   // the largest multiple of 4 in the 16-bit length field
    private byte[] _buffer = new byte[256];
    private int _length;

    public StunMessageBuilder(StunClass messageClass, ushort method, ReadOnlySpan<byte> transactionId)
    {
        if (transactionId.Length != StunConstants.TransactionIdSize)
        {
            throw new ArgumentException("A STUN transaction id is 12 bytes.", nameof(transactionId));
        }

        ArgumentOutOfRangeException.ThrowIfGreaterThan(method, (ushort)0x0FFF);
        int c = (int)messageClass;
        ushort type = (ushort)((method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7));
        BinaryPrimitives.WriteUInt16BigEndian(_buffer, type);
        BinaryPrimitives.WriteUInt32BigEndian(_buffer.AsSpan(4), StunConstants.MagicCookie);
        transactionId.CopyTo(_buffer.AsSpan(8));
        _length = StunConstants.HeaderSize;
        UpdateLength();
    }

    /// <summary>A response to an RFC 3489 request: its 16-byte transaction id (bytes 4–19) copied back, no magic cookie.</summary>
    public static StunMessageBuilder ClassicResponse(StunClass messageClass, ushort method, ReadOnlySpan<byte> classicTransactionId)
    {
        if (classicTransactionId.Length != 16)
        {
            throw new ArgumentException("An RFC 3489 transaction id is 16 bytes.", nameof(classicTransactionId));
        }

        var builder = new StunMessageBuilder(messageClass, method, classicTransactionId[4..]);
        classicTransactionId[..4].CopyTo(builder._buffer.AsSpan(4));
        return builder;
    }

    public ReadOnlySpan<byte> TransactionId => _buffer.AsSpan(8, StunConstants.TransactionIdSize);

    public static byte[] NewTransactionId() => RandomNumberGenerator.GetBytes(StunConstants.TransactionIdSize);

    /// <summary>Adds an attribute; the padding is <paramref name="padding"/> when given (to reproduce a message), zeros otherwise.</summary>
    public StunMessageBuilder Add(ushort type, ReadOnlySpan<byte> value, ReadOnlySpan<byte> padding = default)
    {
        int paddingLength = (4 - (value.Length & 3)) & 3;
        if (!padding.IsEmpty && padding.Length != paddingLength)
        {
            throw new ArgumentException($"A {value.Length}-byte value takes {paddingLength} padding bytes.", nameof(padding));
        }

        Span<byte> destination = Reserve(StunConstants.AttributeHeaderSize + value.Length + paddingLength);
        BinaryPrimitives.WriteUInt16BigEndian(destination, type);
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], checked((ushort)value.Length));
        value.CopyTo(destination[4..]);
        Span<byte> pad = destination.Slice(4 + value.Length, paddingLength);
        if (padding.IsEmpty)
        {
            pad.Clear();
        }
        else
        {
            padding.CopyTo(pad);
        }

        UpdateLength();
        return this;
    }

    public StunMessageBuilder AddString(ushort type, string value) => Add(type, Encoding.UTF8.GetBytes(value));

    public StunMessageBuilder AddAddress(ushort type, IPEndPoint endPoint)
    {
        Span<byte> value = stackalloc byte[20];
        int length = StunAddress.Encode(endPoint, type == StunAttributeType.XorMappedAddress, TransactionId, value);
        return Add(type, value[..length]);
    }

    public StunMessageBuilder AddUInt32(ushort type, uint value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return Add(type, bytes);
    }

    /// <summary>RESPONSE-PORT (RFC 5780 §7.5): the port, then two reserved bytes.</summary>
    public StunMessageBuilder AddResponsePort(ushort port) => AddUInt32(StunAttributeType.ResponsePort, (uint)port << 16);

    /// <summary>ERROR-CODE (§14.8).</summary>
    public StunMessageBuilder AddErrorCode(int code, string reason)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(code, 300);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(code, 699);
        byte[] text = Encoding.UTF8.GetBytes(reason);
        byte[] value = new byte[4 + text.Length];
        value[2] = (byte)(code / 100);
        value[3] = (byte)(code % 100);
        text.CopyTo(value, 4);
        return Add(StunAttributeType.ErrorCode, value);
    }

    /// <summary>UNKNOWN-ATTRIBUTES (§14.9).</summary>
    public StunMessageBuilder AddUnknownAttributes(IReadOnlyList<ushort> types)
    {
        byte[] value = new byte[2 * types.Count];
        for (int i = 0; i < types.Count; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(value.AsSpan(2 * i), types[i]);
        }

        return Add(StunAttributeType.UnknownAttributes, value);
    }

    /// <summary>PASSWORD-ALGORITHM (§14.12) with no parameters.</summary>
    public StunMessageBuilder AddPasswordAlgorithm(ushort algorithm) => AddUInt32(StunAttributeType.PasswordAlgorithm, (uint)algorithm << 16);

    /// <summary>PASSWORD-ALGORITHMS (§14.11), none with parameters.</summary>
    public StunMessageBuilder AddPasswordAlgorithms(params ushort[] algorithms)
    {
        byte[] value = new byte[4 * algorithms.Length];
        for (int i = 0; i < algorithms.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(value.AsSpan(4 * i), algorithms[i]);
        }

        return Add(StunAttributeType.PasswordAlgorithms, value);
    }

    /// <summary>MESSAGE-INTEGRITY (§14.5): HMAC-SHA1 with <paramref name="key"/> over everything so far.</summary>
    public StunMessageBuilder AddMessageIntegrity(ReadOnlySpan<byte> key) => AddIntegrity(StunAttributeType.MessageIntegrity, HashAlgorithmName.SHA1, 20, key);

    /// <summary>MESSAGE-INTEGRITY-SHA256 (§14.6): HMAC-SHA256 with <paramref name="key"/> over everything so far.</summary>
    public StunMessageBuilder AddMessageIntegritySha256(ReadOnlySpan<byte> key) => AddIntegrity(StunAttributeType.MessageIntegritySha256, HashAlgorithmName.SHA256, 32, key);

    /// <summary>FINGERPRINT (§14.7): CRC-32 of everything so far, XOR 0x5354554E. Must be last.</summary>
    public StunMessageBuilder AddFingerprint()
    {
        Reserve(8);
        _length -= 8;
        BinaryPrimitives.WriteUInt16BigEndian(_buffer.AsSpan(2), (ushort)(_length + 8 - StunConstants.HeaderSize));
        uint crc = Crc32.Compute(_buffer.AsSpan(0, _length)) ^ StunConstants.FingerprintXor;
        Span<byte> value = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(value, crc);
        return Add(StunAttributeType.Fingerprint, value);
    }

    public byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

    public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, _length);

    private StunMessageBuilder AddIntegrity(ushort type, HashAlgorithmName algorithm, int macLength, ReadOnlySpan<byte> key)
    {
        Span<byte> mac = stackalloc byte[32];
        StunMessage.ComputeIntegrity(_buffer.AsSpan(0, _length), macLength, algorithm, key, mac[..macLength]);
        return Add(type, mac[..macLength]);
    }

    private Span<byte> Reserve(int count)
    {
        if (_length + count - StunConstants.HeaderSize > MaxLength)
        {
            throw new InvalidOperationException($"A STUN message holds at most {MaxLength} bytes of attributes.");
        }

        if (_length + count > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + count));
        }

        Span<byte> span = _buffer.AsSpan(_length, count);
        _length += count;
        return span;
    }

    private void UpdateLength() => BinaryPrimitives.WriteUInt16BigEndian(_buffer.AsSpan(2), (ushort)(_length - StunConstants.HeaderSize));
}
