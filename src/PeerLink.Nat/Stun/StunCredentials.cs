// STUN credentials (RFC 8489 §9): the short-term key, the long-term key with MD5 or SHA-256, USERHASH, and the
// SASLprep profile of stringprep (RFC 4013, RFC 3454) that RFC 5389 and the RFC 5769 vectors apply to passwords.
using System;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace PeerLink.Nat.Stun;

internal static class StunCredentials
{
    /// <summary>Short-term key (§9.1.1): the prepared password's UTF-8 bytes.</summary>
    public static byte[] ShortTermKey(string password) => Encoding.UTF8.GetBytes(SaslPrep(password));

    /// <summary>Long-term key (§9.2.2): MD5 or SHA-256 of username ":" realm ":" prepared password.</summary>
    public static byte[] LongTermKey(string username, string realm, string password, ushort algorithm = StunConstants.PasswordAlgorithmMd5)
    {
        byte[] input = Encoding.UTF8.GetBytes($"{username}:{realm}:{SaslPrep(password)}");
        try
        {
            return algorithm switch
            {
                StunConstants.PasswordAlgorithmMd5 => MD5.HashData(input),
                StunConstants.PasswordAlgorithmSha256 => SHA256.HashData(input),
                _ => throw new ArgumentOutOfRangeException(nameof(algorithm), algorithm, "Only MD5 (1) and SHA-256 (2) are defined."),
            };
        }
        finally
        {
            CryptographicOperations.ZeroMemory(input);
        }
    }

    /// <summary>USERHASH (§14.4): SHA-256 of username ":" realm.</summary>
    public static byte[] UserHash(string username, string realm) => SHA256.HashData(Encoding.UTF8.GetBytes($"{username}:{realm}"));

    /// <summary>
    /// SASLprep (RFC 4013): map non-ASCII spaces to space and remove the characters "commonly mapped to nothing",
    /// normalize with NFKC, and refuse prohibited characters. The bidirectional-text rule of RFC 3454 §6 is not
    /// checked (.NET exposes no bidi classes); such strings are rare in STUN passwords.
    /// </summary>
    /// <exception cref="ArgumentException">The string holds a prohibited character.</exception>
    public static string SaslPrep(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var mapped = new StringBuilder(value.Length);
        foreach (char c in value)
        {
            if (IsMappedToNothing(c))
            {
                continue;
            }

            mapped.Append(IsNonAsciiSpace(c) ? ' ' : c);
        }

        string normalized = mapped.ToString().Normalize(NormalizationForm.FormKC);
        for (int i = 0; i < normalized.Length; i++)
        {
            int codePoint = char.ConvertToUtf32(normalized, i);
            if (char.IsSurrogatePair(normalized, i))
            {
                i++;
            }

            if (IsProhibited(codePoint))
            {
                throw new ArgumentException($"The string has the prohibited character U+{codePoint:X4} at position {i} (SASLprep, RFC 4013 §2.3).", nameof(value));
            }
        }

        return normalized;
    }

    // RFC 3454 table B.1.
    private static bool IsMappedToNothing(char c) =>
        c is '\u00AD' or '\u034F' or '\u1806' or '\u180B' or '\u180C' or '\u180D' or '\u200B' or '\u200C' or '\u200D' or '\u2060' or '\uFEFF'
        || c is >= '\uFE00' and <= '\uFE0F';

    // RFC 3454 table C.1.2.
    private static bool IsNonAsciiSpace(char c) =>
        c is '\u00A0' or '\u1680' or '\u202F' or '\u205F' or '\u3000' || c is >= '\u2000' and <= '\u200B';

    // RFC 3454 tables C.1.2 to C.9, as RFC 4013 §2.3 lists them.
    private static bool IsProhibited(int c) =>
        c < 0x20 || c == 0x7F                                                  // C.2.1 ASCII control
        || c is >= 0x80 and <= 0x9F || c is 0x06DD or 0x070F or 0x180E or 0x200C or 0x200D or 0x2028 or 0x2029
        || c is >= 0x2060 and <= 0x2063 || c is >= 0x206A and <= 0x206F || c == 0xFEFF || c is >= 0xFFF9 and <= 0xFFFC
        || c is >= 0x1D173 and <= 0x1D17A                                      // C.2.2 non-ASCII control
        || c is >= 0xE000 and <= 0xF8FF || c is >= 0xF0000 and <= 0xFFFFD || c is >= 0x100000 and <= 0x10FFFD   // C.3 private use
        || c is >= 0xFDD0 and <= 0xFDEF || (c & 0xFFFE) == 0xFFFE              // C.4 non-characters
        || c is >= 0xD800 and <= 0xDFFF                                        // C.5 surrogates
        || c is >= 0xFFF9 and <= 0xFFFD                                        // C.6 inappropriate for plain text
        || c is >= 0x2FF0 and <= 0x2FFB                                        // C.7 ideographic description
        || c is 0x0340 or 0x0341 or 0x200E or 0x200F || c is >= 0x202A and <= 0x202E   // C.8 display properties
        || c == 0xE0001 || c is >= 0xE0020 and <= 0xE007F                      // C.9 tagging
        || (c is > 0x7F and <= 0xFFFF && IsNonAsciiSpace((char)c));   // C.1.2 (NFKC can produce none, but the table lists it)
}
