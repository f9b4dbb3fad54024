// Noise protocol names (Noise Protocol Framework revision 34, §8): Noise_<pattern><modifiers>_<DH>_<cipher>_<hash>,
// for example Noise_XXpsk3_25519_ChaChaPoly_SHA256 or Noise_XXpsk0+psk1_25519_AESGCM_BLAKE2s.
using System;
using System.Collections.Generic;
using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace PeerLink.Security.Noise;

/// <summary>A parsed, supported Noise protocol name.</summary>
internal sealed class NoiseProtocol
{
    private NoiseProtocol(string name, HandshakePattern pattern, NoiseCipherKind cipher, NoiseHashKind hash)
    {
        Name = name;
        NameBytes = Encoding.ASCII.GetBytes(name);
        Pattern = pattern;
        Cipher = cipher;
        Hash = hash;
    }

    public string Name { get; }

    public byte[] NameBytes { get; }

    public HandshakePattern Pattern { get; }

    public NoiseCipherKind Cipher { get; }

    public NoiseHashKind Hash { get; }

    public override string ToString() => Name;

    /// <summary>Parses a protocol name; an unsupported or malformed name is an <see cref="ArgumentException"/> that says why.</summary>
    public static NoiseProtocol Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!TryParse(name, out NoiseProtocol? protocol, out string? error))
        {
            throw new ArgumentException(error, nameof(name));
        }

        return protocol;
    }

    public static bool TryParse(string name, [NotNullWhen(true)] out NoiseProtocol? protocol, [NotNullWhen(false)] out string? error)
    {
        protocol = null;
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
