// Noise SymmetricState (Noise Protocol Framework revision 34, §5.2).
using System;
using System.Security.Cryptography;
using PeerLink.Internal;

namespace PeerLink.Security.Noise;

/// <summary>The chaining key, the handshake hash and the handshake's CipherState.</summary>
internal sealed class NoiseSymmetricState : IDisposable
{
    private readonly NoiseHash _hash;
    private readonly NoiseCipherKind _cipherKind;
    private readonly byte[] _ck = GC.AllocateArray<byte>(NoiseHash.MaxHashLength, pinned: true);
    private readonly byte[] _h = new byte[NoiseHash.MaxHashLength];
    private readonly int _hashLength;
    private readonly NoiseCipherState _cipher;

    /// <summary>InitializeSymmetric(protocol_name).</summary>
    public NoiseSymmetricState(NoiseProtocol protocol)
    {
        _hash = NoiseHash.Create(protocol.Hash);
        _hashLength = _hash.HashLength;
        _cipherKind = protocol.Cipher;
        _cipher = new NoiseCipherState(protocol.Cipher);
        byte[] name = protocol.NameBytes;
        if (name.Length <= _hashLength)
        {
            name.CopyTo(_h, 0);
        }
        else
        {
            _hash.Hash(name, default, _h);
        }

        _h.AsSpan(0, _hashLength).CopyTo(_ck);
    }

    public ReadOnlySpan<byte> HandshakeHash => _h.AsSpan(0, _hashLength);

    public bool HasKey => _cipher.HasKey;

    public void MixKey(ReadOnlySpan<byte> inputKeyMaterial)
    {
        Span<byte> output1 = stackalloc byte[NoiseHash.MaxHashLength];
        Span<byte> output2 = stackalloc byte[NoiseHash.MaxHashLength];
        try
        {
            _hash.Hkdf(Ck, inputKeyMaterial, output1, output2, default);
            output1[.._hashLength].CopyTo(_ck);
            _cipher.InitializeKey(output2[..NoiseCipher.KeySize]);    // truncated to 32 bytes when HASHLEN is 64
        }
        finally
        {
            CryptographicOperations.ZeroMemory(output1);
            CryptographicOperations.ZeroMemory(output2);
        }
    }

    public void MixHash(ReadOnlySpan<byte> data) => _hash.Hash(HandshakeHash, data, _h);

    public void MixKeyAndHash(ReadOnlySpan<byte> inputKeyMaterial)
    {
        Span<byte> output1 = stackalloc byte[NoiseHash.MaxHashLength];
        Span<byte> output2 = stackalloc byte[NoiseHash.MaxHashLength];
        Span<byte> output3 = stackalloc byte[NoiseHash.MaxHashLength];
        try
        {
            _hash.Hkdf(Ck, inputKeyMaterial, output1, output2, output3);
            output1[.._hashLength].CopyTo(_ck);
            MixHash(output2[.._hashLength]);
            _cipher.InitializeKey(output3[..NoiseCipher.KeySize]);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(output1);
            CryptographicOperations.ZeroMemory(output2);
            CryptographicOperations.ZeroMemory(output3);
        }
    }

    /// <summary>Encrypts with h as associated data, then mixes the ciphertext into h. Returns the bytes written.</summary>
    public int EncryptAndHash(ReadOnlySpan<byte> plaintext, Span<byte> ciphertext)
    {
        int written = _cipher.EncryptWithAd(HandshakeHash, plaintext, ciphertext);
        MixHash(ciphertext[..written]);
        return written;
    }

    /// <summary>Decrypts with h as associated data, then mixes the ciphertext into h. A bad tag is a handshake failure.</summary>
    public int DecryptAndHash(ReadOnlySpan<byte> ciphertext, Span<byte> plaintext)
    {
        if (!_cipher.TryDecryptWithAd(HandshakeHash, ciphertext, plaintext, out int written))
        {
            ThrowHelper.ThrowPeerLink(
                PeerLinkError.DecryptionFailed,
                "A Noise handshake message failed authentication: the peer used other keys (a wrong static key or network key) or the message was altered.");
        }

        MixHash(ciphertext);
        return written;
    }

    /// <summary>Split(): the two transport CipherStates, for initiator-to-responder and responder-to-initiator traffic.</summary>
    public (NoiseCipherState InitiatorToResponder, NoiseCipherState ResponderToInitiator) Split()
    {
        Span<byte> output1 = stackalloc byte[NoiseHash.MaxHashLength];
        Span<byte> output2 = stackalloc byte[NoiseHash.MaxHashLength];
        try
        {
            _hash.Hkdf(Ck, default, output1, output2, default);
            var c1 = new NoiseCipherState(_cipherKind);
            var c2 = new NoiseCipherState(_cipherKind);
            c1.InitializeKey(output1[..NoiseCipher.KeySize]);
            c2.InitializeKey(output2[..NoiseCipher.KeySize]);
            return (c1, c2);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(output1);
            CryptographicOperations.ZeroMemory(output2);
        }
    }

    public void Dispose()
    {
        CryptographicOperations.ZeroMemory(_ck);
        _cipher.Dispose();
        _hash.Dispose();
    }

    private ReadOnlySpan<byte> Ck => _ck.AsSpan(0, _hashLength);
}
