// Noise CipherState (Noise Protocol Framework revision 34, §5.1), including Rekey (§11.3) and the reserved nonce 2^64-1.
using System;
using System.Security.Cryptography;
using PeerLink.Internal;

namespace PeerLink.Security.Noise;

/// <summary>
/// A Noise CipherState: a key and a 64-bit nonce. Transport messages are encrypted and decrypted here without allocating.
/// Not thread-safe: one sender and one receiver each own one. Obtained from <see cref="NoiseHandshakeState.Split"/>.
/// </summary>
public sealed class NoiseCipherState : IDisposable
{
    /// <summary>Bytes added to every message once a key is set.</summary>
    public const int TagSize = NoiseCipher.TagSize;

    /// <summary>The largest Noise message, tag included (§3).</summary>
    public const int MaxMessageLength = 65535;

    /// <summary>The largest plaintext that fits in one encrypted Noise message.</summary>
    public const int MaxPlaintextLength = MaxMessageLength - TagSize;

    private readonly NoiseCipherKind _kind;
    private NoiseCipher? _cipher;
    private ulong _nonce;
    private bool _disposed;

    internal NoiseCipherState(NoiseCipherKind kind) => _kind = kind;

    /// <summary>True once a key is set; before that, "encryption" copies the plaintext (as the Noise spec says).</summary>
    public bool HasKey => _cipher is not null;

    /// <summary>The next nonce (the number of messages this state has encrypted or decrypted).</summary>
    /// <remarks>
    /// Read-only: setting a nonce backwards would reuse it, which breaks the AEAD. The datagram transport, where the nonce
    /// travels with each packet, will decrypt with an explicit nonce instead.
    /// </remarks>
    public ulong Nonce
    {
        get => _nonce;
        internal set => _nonce = value;
    }

    internal NoiseCipherKind Kind => _kind;

    internal void InitializeKey(ReadOnlySpan<byte> key)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        NoiseCipher next = NoiseCipher.Create(_kind, key);
        _cipher?.Dispose();
        _cipher = next;
        _nonce = 0;
    }

    /// <summary>
    /// ENCRYPT(k, n++, ad, plaintext) into <paramref name="ciphertext"/>, or a copy of the plaintext while no key is set.
    /// Returns the number of bytes written. The destination may be the plaintext buffer itself.
    /// </summary>
    public int EncryptWithAd(ReadOnlySpan<byte> associatedData, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        NoiseCipher? cipher = _cipher;
        if (cipher is null)
        {
            CopyChecked(plaintext, ciphertext);
            return plaintext.Length;
        }

        int length = plaintext.Length + TagSize;
        if (ciphertext.Length < length)
        {
            ThrowHelper.ThrowDestinationTooSmall(nameof(ciphertext));
        }

        CheckNonce();
        cipher.Encrypt(_nonce, associatedData, plaintext, ciphertext);
        _nonce++;
        return length;
    }

    /// <summary>
    /// DECRYPT(k, n, ad, ciphertext). On success the nonce advances and the plaintext length is returned in
    /// <paramref name="bytesWritten"/>. On an authentication failure returns <see langword="false"/>, the nonce does not
    /// advance (§5.1), and the destination holds no plaintext.
    /// </summary>
    public bool TryDecryptWithAd(ReadOnlySpan<byte> associatedData, ReadOnlySpan<byte> ciphertext, Span<byte> plaintext, out int bytesWritten)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        NoiseCipher? cipher = _cipher;
        if (cipher is null)
        {
            CopyChecked(ciphertext, plaintext);
            bytesWritten = ciphertext.Length;
            return true;
        }

        bytesWritten = 0;
        if (ciphertext.Length < TagSize)
        {
            return false;
        }

        int length = ciphertext.Length - TagSize;
        if (plaintext.Length < length)
        {
            ThrowHelper.ThrowDestinationTooSmall(nameof(plaintext));
        }

        CheckNonce();
        if (!cipher.TryDecrypt(_nonce, associatedData, ciphertext, plaintext))
        {
            CryptographicOperations.ZeroMemory(plaintext[..length]);
            return false;
        }

        _nonce++;
        bytesWritten = length;
        return true;
    }

    /// <summary>REKEY(k) = the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes) (§4.2, §11.3). The nonce is kept.</summary>
    public void Rekey()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        NoiseCipher cipher = _cipher ?? throw new InvalidOperationException("Rekey needs a cipher state that has a key.");
        NoiseCipher next = Next(cipher);
        cipher.Dispose();
        _cipher = next;
    }

    /// <summary>
    /// Datagrams carry their nonce (docs/protocol.md, datagram transport): encrypts with an explicit
    /// <paramref name="nonce"/> and leaves this state's own counter alone. The caller guarantees each nonce is used once.
    /// </summary>
    internal void EncryptWithNonce(ulong nonce, ReadOnlySpan<byte> associatedData, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        NoiseCipher cipher = _cipher ?? throw new InvalidOperationException("The cipher state has no key.");
        if (nonce == ulong.MaxValue)
        {
            ThrowHelper.ThrowPeerLink(PeerLinkError.NonceExhausted, "The datagram counter has used every nonce.");
        }

        cipher.Encrypt(nonce, associatedData, plaintext, ciphertext);
    }

    /// <summary>Decrypts a datagram with its explicit <paramref name="nonce"/>; false when it fails authentication.</summary>
    internal bool TryDecryptWithNonce(ulong nonce, ReadOnlySpan<byte> associatedData, ReadOnlySpan<byte> ciphertext, Span<byte> plaintext)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        NoiseCipher? cipher = _cipher;
        if (cipher is null || ciphertext.Length < TagSize || nonce == ulong.MaxValue)
        {
            return false;
        }

        if (!cipher.TryDecrypt(nonce, associatedData, ciphertext, plaintext))
        {
            CryptographicOperations.ZeroMemory(plaintext[..(ciphertext.Length - TagSize)]);
            return false;
        }

        return true;
    }

    /// <summary>A new cipher state holding REKEY(k) (§11.3), this one unchanged: the next key phase of a datagram session.</summary>
    internal NoiseCipherState CreateNext()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        NoiseCipher cipher = _cipher ?? throw new InvalidOperationException("Rekey needs a cipher state that has a key.");
        return new NoiseCipherState(_kind) { _cipher = Next(cipher) };
    }

    /// <summary>The cipher of REKEY(k); <paramref name="cipher"/> stays as it is.</summary>
    private NoiseCipher Next(NoiseCipher cipher)
    {
        Span<byte> buffer = stackalloc byte[NoiseCipher.KeySize + TagSize];
        try
        {
            buffer.Clear();
            cipher.Encrypt(ulong.MaxValue, default, buffer[..NoiseCipher.KeySize], buffer);
            return NoiseCipher.Create(_kind, buffer[..NoiseCipher.KeySize]);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
        }
    }

    /// <summary>Erases the key. Later calls throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        _disposed = true;
        _cipher?.Dispose();
        _cipher = null;
    }

    private void CheckNonce()
    {
        if (_nonce == ulong.MaxValue)
        {
            ThrowHelper.ThrowPeerLink(PeerLinkError.NonceExhausted, "The cipher state has used every nonce; the session must be rekeyed or re-established.");
        }
    }

    private static void CopyChecked(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (destination.Length < source.Length)
        {
            ThrowHelper.ThrowDestinationTooSmall(nameof(destination));
        }

        source.CopyTo(destination);
    }
}
