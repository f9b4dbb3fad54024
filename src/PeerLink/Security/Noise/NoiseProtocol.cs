// Noise protocol names (Noise Protocol Framework revision 34, §8): Noise_<pattern><modifiers>_<DH>_<cipher>_<hash>,
// for example Noise_XXpsk3_25519_ChaChaPoly_SHA256 or Noise_XXpsk0+psk1_25519_AESGCM_BLAKE2s.
using System;
using System.Collections.Generic;
using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace PeerLink.Security.Noise;

/// <summary>
/// A parsed, supported Noise protocol: a handshake pattern with its modifiers, the DH function (25519), the cipher
/// (ChaChaPoly or AESGCM) and the hash (SHA256, SHA512, BLAKE2s or BLAKE2b). Immutable and thread-safe.
/// </summary>
public sealed class NoiseProtocol
{
    private NoiseProtocol(string name, HandshakePattern pattern, NoiseCipherKind cipher, NoiseHashKind hash)
    {
        Name = name;
        NameBytes = Encoding.ASCII.GetBytes(name);
        Pattern = pattern;
        Cipher = cipher;
        Hash = hash;
    }

    /// <summary>The full protocol name, for example "Noise_IK_25519_ChaChaPoly_SHA256".</summary>
    public string Name { get; }

    /// <summary>The pattern with its modifiers, for example "IK" or "XXpsk3".</summary>
    public string PatternName => Pattern.Name;

    /// <summary>The cipher's name: "ChaChaPoly" or "AESGCM".</summary>
    public string CipherName => NoiseCipher.GetName(Cipher);

    /// <summary>The hash's name: "SHA256", "SHA512", "BLAKE2s" or "BLAKE2b".</summary>
    public string HashName => NoiseHash.GetName(Hash);

    /// <summary>True for the one-way patterns N, K and X: after the handshake only the initiator sends.</summary>
    public bool IsOneWay => Pattern.IsOneWay;

    /// <summary>How many 32-byte pre-shared keys a handshake of this protocol needs (one per psk modifier).</summary>
    public int PskCount => Pattern.PskCount;

    /// <summary>True when this platform supports the protocol's cipher (ChaCha20-Poly1305 needs OpenSSL 1.1 or later on Linux).</summary>
    public bool IsSupported => NoiseCipher.IsSupported(Cipher);

    internal byte[] NameBytes { get; }

    internal HandshakePattern Pattern { get; }

    internal NoiseCipherKind Cipher { get; }

    internal NoiseHashKind Hash { get; }

    /// <summary>The protocol name.</summary>
    public override string ToString() => Name;

    /// <summary>Parses a protocol name.</summary>
    /// <param name="name">A name such as "Noise_XXpsk3_25519_ChaChaPoly_SHA256".</param>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="ArgumentException">The name is malformed or names something unsupported; the message says which part.</exception>
    public static NoiseProtocol Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!TryParse(name, out NoiseProtocol? protocol, out string? error))
        {
            throw new ArgumentException(error, nameof(name));
        }

        return protocol;
    }

    /// <summary>Tries to parse a protocol name, and says what is wrong when it cannot.</summary>
    /// <param name="name">A name such as "Noise_XXpsk3_25519_ChaChaPoly_SHA256".</param>
    /// <param name="protocol">The protocol, when the result is true.</param>
    /// <param name="error">Why the name was refused, when the result is false.</param>
    public static bool TryParse(string? name, [NotNullWhen(true)] out NoiseProtocol? protocol, [NotNullWhen(false)] out string? error)
    {
        protocol = null;
        if (name is null)
        {
            error = "The protocol name is null.";
            return false;
        }

        string[] parts = name.Split('_');
        if (parts.Length != 5 || parts[0] != "Noise")
        {
            error = $"'{name}' is not a Noise protocol name of the form Noise_<pattern>_<DH>_<cipher>_<hash>.";
            return false;
        }

        if (parts[2] != "25519")
        {
            error = $"The DH function '{parts[2]}' is not supported; PeerLink supports 25519.";
            return false;
        }

        NoiseCipherKind cipher;
        switch (parts[3])
        {
            case "ChaChaPoly": cipher = NoiseCipherKind.ChaChaPoly; break;
            case "AESGCM": cipher = NoiseCipherKind.AesGcm; break;
            default:
                error = $"The cipher '{parts[3]}' is not supported; use ChaChaPoly or AESGCM.";
                return false;
        }

        NoiseHashKind hash;
        switch (parts[4])
        {
            case "SHA256": hash = NoiseHashKind.Sha256; break;
            case "SHA512": hash = NoiseHashKind.Sha512; break;
            case "BLAKE2s": hash = NoiseHashKind.Blake2s; break;
            case "BLAKE2b": hash = NoiseHashKind.Blake2b; break;
            default:
                error = $"The hash '{parts[4]}' is not supported; use SHA256, SHA512, BLAKE2s or BLAKE2b.";
                return false;
        }

        // The base pattern is the leading run of N, K, X, I and the deferral digit 1; modifiers follow, joined by '+'.
        string patternText = parts[1];
        int split = 0;
        while (split < patternText.Length && patternText[split] is 'N' or 'K' or 'X' or 'I' or '1')
        {
            split++;
        }

        if (split == 0)
        {
            error = $"'{patternText}' is not a known handshake pattern.";
            return false;
        }

        string baseName = patternText[..split];
        string modifierText = patternText[split..];
        IReadOnlyList<string> modifiers = modifierText.Length == 0 ? [] : modifierText.Split('+');
        if (!HandshakePattern.TryCreate(baseName, modifiers, out HandshakePattern? pattern, out string? patternError))
        {
            error = patternError ?? "Invalid handshake pattern.";
            return false;
        }

        error = null;

        protocol = new NoiseProtocol(name, pattern!, cipher, hash);
        return true;
    }
}
