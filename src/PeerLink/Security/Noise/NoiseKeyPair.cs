using System;
using System.Security.Cryptography;

namespace PeerLink.Security.Noise;

/// <summary>An X25519 key pair. The private key lives in a pinned array that is zeroed on <see cref="Dispose"/>.</summary>
internal sealed class NoiseKeyPair : IDisposable
{
    private readonly byte[] _privateKey = GC.AllocateArray<byte>(X25519.KeySize, pinned: true);
    private readonly byte[] _publicKey = new byte[X25519.KeySize];
    private bool _disposed;

    private NoiseKeyPair()
    {
    }

    public ReadOnlySpan<byte> PublicKey => _publicKey;

    /// <summary>The private key. Never log it or put it in an exception.</summary>
    public ReadOnlySpan<byte> PrivateKey
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _privateKey;
        }
    }

    public static NoiseKeyPair Generate()
    {
        var pair = new NoiseKeyPair();
        X25519.GeneratePrivateKey(pair._privateKey);
        X25519.DerivePublicKey(pair._privateKey, pair._publicKey);
        return pair;
    }

    public static NoiseKeyPair FromPrivateKey(ReadOnlySpan<byte> privateKey)
    {
        if (privateKey.Length != X25519.KeySize)
        {
            throw new ArgumentException($"An X25519 private key is {X25519.KeySize} bytes.", nameof(privateKey));
        }

        var pair = new NoiseKeyPair();
        privateKey.CopyTo(pair._privateKey);
        X25519.DerivePublicKey(pair._privateKey, pair._publicKey);
        return pair;
    }

    /// <summary>A copy with its own private-key array; the public key is copied, not derived again (that is an X25519 operation).</summary>
    public NoiseKeyPair Clone()
    {
        var pair = new NoiseKeyPair();
        PrivateKey.CopyTo(pair._privateKey);
        _publicKey.CopyTo(pair._publicKey, 0);
        return pair;
    }

    public void Dispose()
    {
        _disposed = true;
        CryptographicOperations.ZeroMemory(_privateKey);
    }

    public override string ToString() => "NoiseKeyPair (private key hidden)";
}
