// The Noise cipher functions (Noise Protocol Framework revision 34, §12.3 and §12.4):
// ChaChaPoly = ChaCha20-Poly1305 (RFC 8439) with nonce 32 zero bits || 64-bit little-endian counter;
// AESGCM = AES-256-GCM with nonce 32 zero bits || 64-bit big-endian counter. Both from the BCL. 128-bit tags.
using System;
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace PeerLink.Security;

/// <summary>The AEAD used by a Noise protocol.</summary>
internal enum NoiseCipherKind
{
    ChaChaPoly,
    AesGcm,
}

/// <summary>One AEAD key, ready to use. Constructing the BCL object is expensive, so one instance lives as long as its key.</summary>
internal abstract class NoiseCipher : IDisposable
{
    public const int KeySize = 32;
    public const int TagSize = 16;
    public const int NonceSize = 12;

    public static string GetName(NoiseCipherKind kind) => kind == NoiseCipherKind.ChaChaPoly ? "ChaChaPoly" : "AESGCM";

    public static bool IsSupported(NoiseCipherKind kind) =>
        kind == NoiseCipherKind.ChaChaPoly ? ChaCha20Poly1305.IsSupported : AesGcm.IsSupported;

    public static NoiseCipher Create(NoiseCipherKind kind, ReadOnlySpan<byte> key)
    {
        if (key.Length != KeySize)
        {
            throw new ArgumentException($"A Noise cipher key is {KeySize} bytes.", nameof(key));
        }

        return kind switch
        {
            NoiseCipherKind.ChaChaPoly => new ChaChaPolyCipher(key),
            NoiseCipherKind.AesGcm => new AesGcmCipher(key),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
    }

    /// <summary>Writes ciphertext || tag (plaintext.Length + 16 bytes). The destination may be the plaintext buffer itself.</summary>
    public void Encrypt(ulong nonce, ReadOnlySpan<byte> associatedData, ReadOnlySpan<byte> plaintext, Span<byte> ciphertextAndTag)
    {
        Span<byte> n = stackalloc byte[NonceSize];
        WriteNonce(n, nonce);
        EncryptCore(n, plaintext, ciphertextAndTag[..plaintext.Length], ciphertextAndTag.Slice(plaintext.Length, TagSize), associatedData);
    }

    /// <summary>Decrypts ciphertext || tag. On a bad tag returns <see langword="false"/> and leaves <paramref name="plaintext"/> zeroed.</summary>
    public bool TryDecrypt(ulong nonce, ReadOnlySpan<byte> associatedData, ReadOnlySpan<byte> ciphertextAndTag, Span<byte> plaintext)
    {
        Span<byte> n = stackalloc byte[NonceSize];
        WriteNonce(n, nonce);
        int length = ciphertextAndTag.Length - TagSize;
        try
        {
            DecryptCore(n, ciphertextAndTag[..length], ciphertextAndTag[length..], plaintext[..length], associatedData);
            return true;
        }
        catch (AuthenticationTagMismatchException)
        {
            return false;
        }
    }

    public abstract void Dispose();

    private protected abstract void WriteNonce(Span<byte> destination, ulong counter);

    private protected abstract void EncryptCore(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> associatedData);

    private protected abstract void DecryptCore(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext, ReadOnlySpan<byte> associatedData);

    private sealed class ChaChaPolyCipher(ReadOnlySpan<byte> key) : NoiseCipher
    {
        private readonly ChaCha20Poly1305 _aead = new(key);

        private protected override void WriteNonce(Span<byte> destination, ulong counter)
        {
            destination[..4].Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(destination[4..], counter);
        }

        private protected override void EncryptCore(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> associatedData)
            => _aead.Encrypt(nonce, plaintext, ciphertext, tag, associatedData);

        private protected override void DecryptCore(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext, ReadOnlySpan<byte> associatedData)
            => _aead.Decrypt(nonce, ciphertext, tag, plaintext, associatedData);

        public override void Dispose() => _aead.Dispose();
    }

    private sealed class AesGcmCipher(ReadOnlySpan<byte> key) : NoiseCipher
    {
        private readonly AesGcm _aead = new(key, TagSize);

        private protected override void WriteNonce(Span<byte> destination, ulong counter)
        {
            destination[..4].Clear();
            BinaryPrimitives.WriteUInt64BigEndian(destination[4..], counter);
        }

        private protected override void EncryptCore(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> associatedData)
            => _aead.Encrypt(nonce, plaintext, ciphertext, tag, associatedData);

        private protected override void DecryptCore(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext, ReadOnlySpan<byte> associatedData)
            => _aead.Decrypt(nonce, ciphertext, tag, plaintext, associatedData);

        public override void Dispose() => _aead.Dispose();
    }
}
