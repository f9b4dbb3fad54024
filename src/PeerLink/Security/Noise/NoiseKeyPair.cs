// X25519 key pairs (RFC 7748 §5) for the Noise core, from NSec (libsodium). The private key lives in NSec's native
// key object (locked memory, erased on Dispose); PeerLink keeps only the public key as bytes.
using System;
using System.Threading;
using NSec.Cryptography;

namespace PeerLink.Security.Noise;

/// <summary>
/// An X25519 key pair: a Noise static key (<c>s</c>), or an ephemeral one (<c>e</c>). The private key stays in native
/// memory that is locked against swapping and erased by <see cref="Dispose"/>; it never appears in <see cref="ToString"/>.
/// </summary>
/// <remarks>
/// Keys are native resources: dispose every key pair you create. A <see cref="NoiseHandshakeState"/> borrows the static
/// key it is given (keep it alive until the handshake is disposed) and disposes the ephemeral key it generates itself as
/// soon as the handshake is split, fails or is disposed. Thread-safe: one key pair may serve many handshakes at once.
/// </remarks>
public sealed class NoiseKeyPair : IDisposable
{
    /// <summary>The size of an X25519 private key, public key and shared secret, in bytes.</summary>
    public const int KeySize = 32;

    private static readonly KeyAgreementAlgorithm Algorithm = KeyAgreementAlgorithm.X25519;
    private static int s_live;

    private readonly Key _key;
    private readonly byte[] _publicKey = new byte[KeySize];
    private int _disposed;

    private NoiseKeyPair(Key key)
    {
        _key = key;
        if (!key.PublicKey.TryExport(KeyBlobFormat.RawPublicKey, _publicKey, out int written) || written != KeySize)
        {
            key.Dispose();
            throw new InvalidOperationException("NSec did not export a 32-byte X25519 public key.");
        }

        Interlocked.Increment(ref s_live);
    }

    /// <summary>The public key (32 bytes).</summary>
    public ReadOnlySpan<byte> PublicKey => _publicKey;

    /// <summary>How many key pairs are alive in this process (created and not yet disposed); for leak tests.</summary>
    internal static int LiveCount => Volatile.Read(ref s_live);

    /// <summary>Generates a key pair from the system's cryptographic random number generator.</summary>
    /// <remarks>Its private key cannot be exported: use it for ephemeral keys, or import a key you keep elsewhere.</remarks>
    public static NoiseKeyPair Generate() => Generate(exportable: false);

    /// <summary>Creates a key pair from a 32-byte X25519 private key (its public key is derived: one X25519 operation).</summary>
    /// <param name="privateKey">The private key; erase your copy when done.</param>
    /// <exception cref="ArgumentException"><paramref name="privateKey"/> is not 32 bytes.</exception>
    public static NoiseKeyPair Import(ReadOnlySpan<byte> privateKey)
    {
        if (privateKey.Length != KeySize)
        {
            throw new ArgumentException($"An X25519 private key is {KeySize} bytes; got {privateKey.Length}.", nameof(privateKey));
        }

        var parameters = new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport };
        return new NoiseKeyPair(Key.Import(Algorithm, privateKey, KeyBlobFormat.RawPrivateKey, in parameters));
    }

    /// <summary>Generates a key pair; an exportable one can be written to an identity file.</summary>
    internal static NoiseKeyPair Generate(bool exportable)
    {
        var parameters = new KeyCreationParameters
        {
            ExportPolicy = exportable ? KeyExportPolicies.AllowPlaintextExport : KeyExportPolicies.None,
        };
        return new NoiseKeyPair(Key.Create(Algorithm, in parameters));
    }

    /// <summary>Copies the private key out (only key pairs made by <see cref="Import"/> or exportable generation allow it).</summary>
    internal void ExportPrivateKey(Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (!_key.TryExport(KeyBlobFormat.RawPrivateKey, destination, out int written) || written != KeySize)
        {
            throw new InvalidOperationException("This key pair's private key cannot be exported.");
        }
    }

    /// <summary>
    /// DH(private key, <paramref name="remotePublicKey"/>) into <paramref name="sharedSecret"/> (32 bytes). Returns
    /// <see langword="false"/> for a public key of small order (an all-zero result), which a handshake must refuse.
    /// </summary>
    internal bool TryAgree(ReadOnlySpan<byte> remotePublicKey, Span<byte> sharedSecret)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (remotePublicKey.Length != KeySize || sharedSecret.Length != KeySize)
        {
            throw new ArgumentException($"X25519 public keys and shared secrets are {KeySize} bytes.");
        }

        if (!NSec.Cryptography.PublicKey.TryImport(Algorithm, remotePublicKey, KeyBlobFormat.RawPublicKey, out NSec.Cryptography.PublicKey? remote) || remote is null)
        {
            return false;
        }

        // Noise's MixKey needs the raw DH output, so the shared secret must be exportable (NSec's default forbids it).
        var parameters = new SharedSecretCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport };
        using SharedSecret? secret = Algorithm.Agree(_key, remote, in parameters);
        return secret is not null
            && secret.TryExport(SharedSecretBlobFormat.RawSharedSecret, sharedSecret, out int written)
            && written == KeySize;
    }

    /// <summary>Erases the private key. Later use throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _key.Dispose();
            Interlocked.Decrement(ref s_live);
        }
    }

    /// <summary>Names the type only; never key material.</summary>
    public override string ToString() => "NoiseKeyPair (X25519, private key hidden)";
}
