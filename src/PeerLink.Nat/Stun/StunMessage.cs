// STUN message parsing (RFC 8489 §5, §6, §14). A datagram from the network is untrusted: every length is checked,
// nothing is read past the message, and malformed input yields false with a reason, never an exception.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace PeerLink.Nat.Stun;

/// <summary>One attribute as it was on the wire: type, value, and the padding bytes that followed it.</summary>
internal readonly record struct StunAttribute(ushort Type, int ValueOffset, int Length, int PaddingLength);

/// <summary>A parsed STUN message. It keeps its own copy of the bytes, so attribute values stay valid.</summary>
internal sealed class StunMessage
{
    private readonly byte[] _data;
    private readonly StunAttribute[] _attributes;

    private StunMessage(byte[] data, StunAttribute[] attributes, ushort[] unknownRequired)
    {
        IsClassic = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(4)) != StunConstants.MagicCookie;
        _data = data;
        _attributes = attributes;
        UnknownComprehensionRequired = unknownRequired;
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(data);
        Class = (StunClass)(((type >> 7) & 0x2) | ((type >> 4) & 0x1));
        Method = (ushort)((type & 0x000F) | ((type >> 1) & 0x0070) | ((type >> 2) & 0x0F80));
    }

    public StunClass Class { get; }

    public ushort Method { get; }

    public ReadOnlySpan<byte> TransactionId => _data.AsSpan(8, StunConstants.TransactionIdSize);

    /// <summary>
    /// An RFC 3489 ("classic STUN") message: no magic cookie, a 16-byte transaction id in bytes 4–19. Only
    /// <see cref="TryParse"/> with allowClassic gives one (RFC 8489 §12: a server answers such requests as RFC 3489 did).
    /// </summary>
    public bool IsClassic { get; }

    /// <summary>The RFC 3489 transaction id: bytes 4–19, which a response copies back whole.</summary>
    public ReadOnlySpan<byte> ClassicTransactionId => _data.AsSpan(4, 16);

    public ReadOnlySpan<byte> Bytes => _data;

    public IReadOnlyList<StunAttribute> Attributes => _attributes;

    /// <summary>Comprehension-required attributes (type &lt; 0x8000) this implementation does not know: a request with any gets a 420 (§6.3.1).</summary>
    public IReadOnlyList<ushort> UnknownComprehensionRequired { get; }

    /// <summary>A cheap test, for demultiplexing STUN from other protocols on one socket (RFC 8489 §6.3, RFC 7983).</summary>
    public static bool LooksLikeStun(ReadOnlySpan<byte> datagram) =>
        datagram.Length >= StunConstants.HeaderSize
        && (datagram[0] & 0xC0) == 0
        && BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]) == StunConstants.MagicCookie
        && BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]) is var length
        && (length & 3) == 0
        && StunConstants.HeaderSize + length == datagram.Length;

    /// <summary>Parses one whole STUN message. Returns false, with the reason, for anything that is not a well-formed one.</summary>
    /// <param name="datagram">The message.</param>
    /// <param name="message">The parsed message.</param>
    /// <param name="error">Why it is not one.</param>
    /// <param name="allowClassic">Also accept an RFC 3489 message, without the magic cookie (a server's requests).</param>
    public static bool TryParse(ReadOnlySpan<byte> datagram, out StunMessage? message, out string? error, bool allowClassic = false)
    {
        message = null;
        if (datagram.Length < StunConstants.HeaderSize)
        {
            error = $"{datagram.Length} bytes is shorter than a STUN header (20).";
            return false;
        }

        if ((datagram[0] & 0xC0) != 0)
        {
            error = "The two leading bits of a STUN message are not zero.";
            return false;
        }

        if (BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]) != StunConstants.MagicCookie && !allowClassic)
        {
            error = "The magic cookie is wrong (not an RFC 5389/8489 STUN message).";
            return false;
        }

        int length = BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]);
        if ((length & 3) != 0)
        {
            error = $"The message length {length} is not a multiple of 4.";
            return false;
        }

        if (StunConstants.HeaderSize + length != datagram.Length)
        {
            error = $"The header says {length} bytes of attributes but {datagram.Length - StunConstants.HeaderSize} follow.";
            return false;
        }

        var attributes = new List<StunAttribute>();
        var unknown = new List<ushort>();
        bool sawIntegrity = false;
        bool sawIntegritySha256 = false;
        int offset = StunConstants.HeaderSize;
        while (offset < datagram.Length)
        {
            if (datagram.Length - offset < StunConstants.AttributeHeaderSize)
            {
                error = $"An attribute header at offset {offset} is cut short.";
                return false;
            }

            ushort type = BinaryPrimitives.ReadUInt16BigEndian(datagram[offset..]);
            int valueLength = BinaryPrimitives.ReadUInt16BigEndian(datagram[(offset + 2)..]);
            int valueOffset = offset + StunConstants.AttributeHeaderSize;
            int padding = (4 - (valueLength & 3)) & 3;
            if (valueLength + padding > datagram.Length - valueOffset)
            {
                error = $"Attribute 0x{type:x4} at offset {offset} claims {valueLength} bytes (+{padding} padding) but {datagram.Length - valueOffset} remain.";
                return false;
            }

            if (attributes.Count > 0 && attributes[^1].Type == StunAttributeType.Fingerprint)
            {
                error = "An attribute follows FINGERPRINT, which must be last.";
                return false;
            }

            // §14.5/§14.6: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count; others are ignored.
            bool ignored = (sawIntegrity || sawIntegritySha256)
                && type is not (StunAttributeType.MessageIntegritySha256 or StunAttributeType.Fingerprint);
            if (!ignored)
            {
                attributes.Add(new StunAttribute(type, valueOffset, valueLength, padding));
                if (StunAttributeType.IsComprehensionRequired(type) && !StunAttributeType.IsKnown(type) && !unknown.Contains(type))
                {
                    unknown.Add(type);
                }
            }

            sawIntegrity |= type == StunAttributeType.MessageIntegrity;
            sawIntegritySha256 |= type == StunAttributeType.MessageIntegritySha256;
            offset = valueOffset + valueLength + padding;
        }

        message = new StunMessage(datagram.ToArray(), [.. attributes], [.. unknown]);
        error = null;
        return true;
    }

    public bool Has(ushort type) => Find(type) is not null;

    /// <summary>The value of the first attribute of <paramref name="type"/>, or an empty span with false.</summary>
    public bool TryGetValue(ushort type, out ReadOnlySpan<byte> value)
    {
        if (Find(type) is { } attribute)
        {
            value = _data.AsSpan(attribute.ValueOffset, attribute.Length);
            return true;
        }

        value = default;
        return false;
    }

    public ReadOnlySpan<byte> PaddingOf(StunAttribute attribute) => _data.AsSpan(attribute.ValueOffset + attribute.Length, attribute.PaddingLength);

    public ReadOnlySpan<byte> ValueOf(StunAttribute attribute) => _data.AsSpan(attribute.ValueOffset, attribute.Length);

    public IPEndPoint? GetXorMappedAddress() => GetAddress(StunAttributeType.XorMappedAddress, xor: true);

    public IPEndPoint? GetMappedAddress() => GetAddress(StunAttributeType.MappedAddress, xor: false);

    public IPEndPoint? GetResponseOrigin() => GetAddress(StunAttributeType.ResponseOrigin, xor: false);

    public IPEndPoint? GetOtherAddress() => GetAddress(StunAttributeType.OtherAddress, xor: false);

    public IPEndPoint? GetAlternateServer() => GetAddress(StunAttributeType.AlternateServer, xor: false);

    public string? GetUsername() => GetString(StunAttributeType.Username, 513);

    public string? GetRealm() => GetString(StunAttributeType.Realm, 763);

    public string? GetNonce() => GetString(StunAttributeType.Nonce, 763);

    public string? GetSoftware() => GetString(StunAttributeType.Software, 763);

    /// <summary>ERROR-CODE (§14.8): class × 100 + number, and the reason phrase; null when absent or malformed.</summary>
    public (int Code, string Reason)? GetErrorCode()
    {
        if (!TryGetValue(StunAttributeType.ErrorCode, out ReadOnlySpan<byte> value) || value.Length < 4)
        {
            return null;
        }

        int errorClass = value[2] & 0x07;
        int number = value[3];
        if (errorClass is < 3 or > 6 || number > 99)
        {
            return null;
        }

        return (errorClass * 100 + number, DecodeUtf8(value[4..]) ?? string.Empty);
    }

    /// <summary>UNKNOWN-ATTRIBUTES (§14.9).</summary>
    public IReadOnlyList<ushort> GetUnknownAttributes()
    {
        if (!TryGetValue(StunAttributeType.UnknownAttributes, out ReadOnlySpan<byte> value))
        {
            return [];
        }

        var types = new ushort[value.Length / 2];
        for (int i = 0; i < types.Length; i++)
        {
            types[i] = BinaryPrimitives.ReadUInt16BigEndian(value[(2 * i)..]);
        }

        return types;
    }

    /// <summary>CHANGE-REQUEST flags (RFC 5780 §7.2), or null when absent or malformed.</summary>
    public uint? GetChangeRequest() =>
        TryGetValue(StunAttributeType.ChangeRequest, out ReadOnlySpan<byte> value) && value.Length == 4 ? BinaryPrimitives.ReadUInt32BigEndian(value) : null;

    /// <summary>RESPONSE-PORT (RFC 5780 §7.5), or null when absent or malformed.</summary>
    public ushort? GetResponsePort() =>
        TryGetValue(StunAttributeType.ResponsePort, out ReadOnlySpan<byte> value) && value.Length == 4 ? BinaryPrimitives.ReadUInt16BigEndian(value) : null;

    /// <summary>PASSWORD-ALGORITHM (§14.12): the algorithm number, or null.</summary>
    public ushort? GetPasswordAlgorithm() =>
        TryGetValue(StunAttributeType.PasswordAlgorithm, out ReadOnlySpan<byte> value) && value.Length >= 4
            && BinaryPrimitives.ReadUInt16BigEndian(value[2..]) is var parameterLength && 4 + parameterLength <= value.Length
            ? BinaryPrimitives.ReadUInt16BigEndian(value)
            : null;

    /// <summary>PASSWORD-ALGORITHMS (§14.11): the algorithm numbers offered, in order; empty when absent or malformed.</summary>
    public IReadOnlyList<ushort> GetPasswordAlgorithms()
    {
        if (!TryGetValue(StunAttributeType.PasswordAlgorithms, out ReadOnlySpan<byte> value))
        {
            return [];
        }

        var algorithms = new List<ushort>();
        while (value.Length >= 4)
        {
            int parameterLength = BinaryPrimitives.ReadUInt16BigEndian(value[2..]);
            int padded = (parameterLength + 3) & ~3;
            if (4 + padded > value.Length)
            {
                return [];
            }

            algorithms.Add(BinaryPrimitives.ReadUInt16BigEndian(value));
            value = value[(4 + padded)..];
        }

        return value.IsEmpty ? algorithms : [];
    }

    /// <summary>FINGERPRINT is present and matches (§14.7).</summary>
    public bool HasValidFingerprint()
    {
        if (_attributes.Length == 0 || _attributes[^1].Type != StunAttributeType.Fingerprint || _attributes[^1].Length != 4)
        {
            return false;
        }

        StunAttribute fingerprint = _attributes[^1];
        uint expected = Crc32.Compute(_data.AsSpan(0, fingerprint.ValueOffset - StunConstants.AttributeHeaderSize)) ^ StunConstants.FingerprintXor;
        return BinaryPrimitives.ReadUInt32BigEndian(_data.AsSpan(fingerprint.ValueOffset)) == expected;
    }

    /// <summary>MESSAGE-INTEGRITY (HMAC-SHA1, §14.5) is present and verifies with <paramref name="key"/>.</summary>
    public bool VerifyMessageIntegrity(ReadOnlySpan<byte> key) => VerifyIntegrity(StunAttributeType.MessageIntegrity, HashAlgorithmName.SHA1, key);

    /// <summary>MESSAGE-INTEGRITY-SHA256 (§14.6) is present and verifies with <paramref name="key"/>; a value truncated to 16..32 bytes is allowed.</summary>
    public bool VerifyMessageIntegritySha256(ReadOnlySpan<byte> key) => VerifyIntegrity(StunAttributeType.MessageIntegritySha256, HashAlgorithmName.SHA256, key);

    /// <summary>
    /// HMAC over the message up to the integrity attribute, with the header's length field set as if that attribute
    /// were the last one (§14.5).
    /// </summary>
    internal static void ComputeIntegrity(ReadOnlySpan<byte> messageUpToAttribute, int attributeLength, HashAlgorithmName algorithm, ReadOnlySpan<byte> key, Span<byte> mac)
    {
        Span<byte> header = stackalloc byte[StunConstants.HeaderSize];
        messageUpToAttribute[..StunConstants.HeaderSize].CopyTo(header);
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)(messageUpToAttribute.Length + StunConstants.AttributeHeaderSize + attributeLength - StunConstants.HeaderSize));
        using IncrementalHash hmac = IncrementalHash.CreateHMAC(algorithm, key);
        hmac.AppendData(header);
        hmac.AppendData(messageUpToAttribute[StunConstants.HeaderSize..]);
        hmac.GetHashAndReset(mac);
    }

    private bool VerifyIntegrity(ushort type, HashAlgorithmName algorithm, ReadOnlySpan<byte> key)
    {
        if (Find(type) is not { } attribute)
        {
            return false;
        }

        int macLength = algorithm == HashAlgorithmName.SHA1 ? 20 : 32;
        bool validLength = algorithm == HashAlgorithmName.SHA1
            ? attribute.Length == 20
            : attribute.Length is >= 16 and <= 32 && (attribute.Length & 3) == 0;
        if (!validLength)
        {
            return false;
        }

        Span<byte> mac = stackalloc byte[32];
        ComputeIntegrity(_data.AsSpan(0, attribute.ValueOffset - StunConstants.AttributeHeaderSize), attribute.Length, algorithm, key, mac[..macLength]);
        return CryptographicOperations.FixedTimeEquals(mac[..attribute.Length], _data.AsSpan(attribute.ValueOffset, attribute.Length));
    }

    private StunAttribute? Find(ushort type)
    {
        foreach (StunAttribute attribute in _attributes)
        {
            if (attribute.Type == type)
            {
                return attribute;
            }
        }

        return null;
    }

    private IPEndPoint? GetAddress(ushort type, bool xor) =>
        TryGetValue(type, out ReadOnlySpan<byte> value) && StunAddress.TryDecode(value, xor, TransactionId, out IPEndPoint? endPoint) ? endPoint : null;

    private string? GetString(ushort type, int maxBytes) =>
        TryGetValue(type, out ReadOnlySpan<byte> value) && value.Length <= maxBytes ? DecodeUtf8(value) : null;

    private static string? DecodeUtf8(ReadOnlySpan<byte> value)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(value);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }
}
