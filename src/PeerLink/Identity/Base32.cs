// Base32 with the RFC 4648 §6 alphabet, written lowercase and without padding.
using System;

namespace PeerLink.Identity;

internal static class Base32
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";

    public static int GetEncodedLength(int byteCount) => ((byteCount * 8) + 4) / 5;

    public static string Encode(ReadOnlySpan<byte> data)
    {
        return string.Create(GetEncodedLength(data.Length), data.ToArray(), static (chars, bytes) =>
        {
            int buffer = 0;
            int bits = 0;
            int index = 0;
            foreach (byte b in bytes)
            {
                buffer = (buffer << 8) | b;
                bits += 8;
                while (bits >= 5)
                {
                    bits -= 5;
                    chars[index++] = Alphabet[(buffer >> bits) & 0x1f];
                }
            }

            if (bits > 0)
            {
                chars[index] = Alphabet[(buffer << (5 - bits)) & 0x1f];
            }
        });
    }

    /// <summary>
    /// Decodes exactly <paramref name="destination"/>.Length bytes. Accepts either case; rejects padding, other characters,
    /// and non-zero unused trailing bits (so that every value has one text form). Returns an error message or null.
    /// </summary>
    public static string? TryDecode(ReadOnlySpan<char> text, Span<byte> destination)
    {
        int expected = GetEncodedLength(destination.Length);
        if (text.Length != expected)
        {
            return $"expected {expected} base32 characters, got {text.Length}";
        }

        int buffer = 0;
        int bits = 0;
        int index = 0;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            int value = c switch
            {
                >= 'a' and <= 'z' => c - 'a',
                >= 'A' and <= 'Z' => c - 'A',
                >= '2' and <= '7' => c - '2' + 26,
                _ => -1,
            };
            if (value < 0)
            {
                return $"'{c}' at position {i} is not a base32 character (a-z, 2-7)";
            }

            buffer = ((buffer << 5) | value) & 0xfff;
            bits += 5;
            if (bits >= 8)
            {
                bits -= 8;
                destination[index++] = (byte)(buffer >> bits);
            }
        }

        if ((buffer & ((1 << bits) - 1)) != 0)
        {
            return "the last character has non-zero padding bits (not the canonical encoding)";
        }

        return null;
    }
}
