using System;
using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace PeerLink;

/// <summary>
/// A peer's identity: its 32-byte X25519 static public key. Shown as 52 lowercase RFC 4648 base32 characters without
/// padding. Knowing a peer's <see cref="PeerId"/> is enough to authenticate it.
/// </summary>
/// <remarks>
/// Ordering compares the key bytes lexicographically; two peers use it to break ties (for example which of them
/// initiates). The default value (all zeros) is not a valid key.
/// </remarks>
public readonly struct PeerId : IEquatable<PeerId>, IComparable<PeerId>, ISpanParsable<PeerId>
{
    /// <summary>Bytes in a PeerId.</summary>
    public const int Size = 32;

    /// <summary>Characters in the text form.</summary>
    public const int EncodedLength = 52;

    // Four big-endian words: comparing them in order is comparing the bytes lexicographically.
    private readonly ulong _w0;
    private readonly ulong _w1;
    private readonly ulong _w2;
    private readonly ulong _w3;

    /// <summary>Creates a PeerId from a 32-byte X25519 public key.</summary>
    /// <param name="publicKey">The key.</param>
    /// <exception cref="ArgumentException"><paramref name="publicKey"/> is not 32 bytes.</exception>
    public PeerId(ReadOnlySpan<byte> publicKey)
    {
        if (publicKey.Length != Size)
        {
            throw new ArgumentException($"A PeerId is a {Size}-byte public key; got {publicKey.Length} bytes.", nameof(publicKey));
        }

        _w0 = BinaryPrimitives.ReadUInt64BigEndian(publicKey);
        _w1 = BinaryPrimitives.ReadUInt64BigEndian(publicKey[8..]);
        _w2 = BinaryPrimitives.ReadUInt64BigEndian(publicKey[16..]);
        _w3 = BinaryPrimitives.ReadUInt64BigEndian(publicKey[24..]);
    }

    /// <summary>Writes the 32 key bytes to <paramref name="destination"/>.</summary>
    /// <param name="destination">At least 32 bytes.</param>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than 32 bytes.</exception>
    public void CopyTo(Span<byte> destination)
    {
        if (destination.Length < Size)
        {
            throw new ArgumentException($"The destination must hold {Size} bytes.", nameof(destination));
        }

        BinaryPrimitives.WriteUInt64BigEndian(destination, _w0);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _w1);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], _w2);
        BinaryPrimitives.WriteUInt64BigEndian(destination[24..], _w3);
    }

    /// <summary>The 32 key bytes in a new array.</summary>
    public byte[] ToArray()
    {
        byte[] bytes = new byte[Size];
        CopyTo(bytes);
        return bytes;
    }

    /// <summary>The 52-character base32 form.</summary>
    public override string ToString()
    {
        Span<byte> bytes = stackalloc byte[Size];
        CopyTo(bytes);
        return Identity.Base32.Encode(bytes);
    }

    /// <summary>A short form for logs and user interfaces: the first 10 characters of the text form.</summary>
    /// <remarks>Not unique enough to identify a peer; never use it to authenticate one.</remarks>
    public string ToFingerprint() => ToString()[..10];

    /// <summary>Parses the 52-character base32 form (either case).</summary>
    /// <param name="s">The text.</param>
    /// <exception cref="ArgumentNullException"><paramref name="s"/> is null.</exception>
    /// <exception cref="FormatException"><paramref name="s"/> is not a PeerId; the message says why.</exception>
    public static PeerId Parse(string s)
    {
        ArgumentNullException.ThrowIfNull(s);
        return Parse(s.AsSpan());
    }

    /// <summary>Parses the 52-character base32 form (either case).</summary>
    /// <param name="s">The text.</param>
    /// <exception cref="FormatException"><paramref name="s"/> is not a PeerId; the message says why.</exception>
    public static PeerId Parse(ReadOnlySpan<char> s)
    {
        if (!TryParse(s, out PeerId id, out string? error))
        {
            throw new FormatException($"Not a PeerId: {error}.");
        }

        return id;
    }

    /// <summary>Tries to parse the 52-character base32 form.</summary>
    /// <param name="s">The text.</param>
    /// <param name="result">The PeerId, when the result is true.</param>
    public static bool TryParse([NotNullWhen(true)] string? s, out PeerId result) => TryParse(s.AsSpan(), out result, out _);

    /// <summary>Tries to parse the 52-character base32 form.</summary>
    /// <param name="s">The text.</param>
    /// <param name="result">The PeerId, when the result is true.</param>
    public static bool TryParse(ReadOnlySpan<char> s, out PeerId result) => TryParse(s, out result, out _);

    /// <summary>Tries to parse the 52-character base32 form, and says what is wrong when it cannot.</summary>
    /// <param name="s">The text.</param>
    /// <param name="result">The PeerId, when the result is true.</param>
    /// <param name="error">Why the text is not a PeerId, when the result is false.</param>
    public static bool TryParse(ReadOnlySpan<char> s, out PeerId result, [NotNullWhen(false)] out string? error)
    {
        Span<byte> bytes = stackalloc byte[Size];
        error = Identity.Base32.TryDecode(s.Trim(), bytes);
        result = error is null ? new PeerId(bytes) : default;
        return error is null;
    }

    static PeerId IParsable<PeerId>.Parse(string s, IFormatProvider? provider) => Parse(s);

    static bool IParsable<PeerId>.TryParse([NotNullWhen(true)] string? s, IFormatProvider? provider, out PeerId result) => TryParse(s, out result);

    static PeerId ISpanParsable<PeerId>.Parse(ReadOnlySpan<char> s, IFormatProvider? provider) => Parse(s);

    static bool ISpanParsable<PeerId>.TryParse(ReadOnlySpan<char> s, IFormatProvider? provider, out PeerId result) => TryParse(s, out result);

    /// <inheritdoc />
    public bool Equals(PeerId other) => _w0 == other._w0 && _w1 == other._w1 && _w2 == other._w2 && _w3 == other._w3;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is PeerId other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(_w0, _w1, _w2, _w3);

    /// <summary>Compares the key bytes lexicographically.</summary>
    /// <param name="other">The other PeerId.</param>
    public int CompareTo(PeerId other)
    {
        int c = _w0.CompareTo(other._w0);
        if (c == 0)
        {
            c = _w1.CompareTo(other._w1);
        }

        if (c == 0)
        {
            c = _w2.CompareTo(other._w2);
        }

        return c != 0 ? c : _w3.CompareTo(other._w3);
    }

    /// <summary>Equality.</summary>
    public static bool operator ==(PeerId left, PeerId right) => left.Equals(right);

    /// <summary>Inequality.</summary>
    public static bool operator !=(PeerId left, PeerId right) => !left.Equals(right);

    /// <summary>Ordering by key bytes.</summary>
    public static bool operator <(PeerId left, PeerId right) => left.CompareTo(right) < 0;

    /// <summary>Ordering by key bytes.</summary>
    public static bool operator >(PeerId left, PeerId right) => left.CompareTo(right) > 0;

    /// <summary>Ordering by key bytes.</summary>
    public static bool operator <=(PeerId left, PeerId right) => left.CompareTo(right) <= 0;

    /// <summary>Ordering by key bytes.</summary>
    public static bool operator >=(PeerId left, PeerId right) => left.CompareTo(right) >= 0;
}
