// X25519 Diffie-Hellman (RFC 7748 §5), with the scalar multiplication taken from BouncyCastle 1.8.10.
// This is the only use of BouncyCastle in PeerLink besides the BLAKE2 digests.
using System;
using System.Security.Cryptography;
using Bc = Org.BouncyCastle.Math.EC.Rfc7748.X25519;

namespace PeerLink.Security;

internal static class X25519
{
    public const int KeySize = 32;

    // BouncyCastle 1.8.10 only takes arrays. Per-thread scratch buffers keep a DH call from allocating and are
    // zeroed after every use, so that no secret stays in them.
    [ThreadStatic] private static byte[]? t_scalar;
    [ThreadStatic] private static byte[]? t_point;
    [ThreadStatic] private static byte[]? t_result;

    /// <summary>Fills <paramref name="privateKey"/> with 32 random bytes (clamping happens in every scalar multiplication).</summary>
    public static void GeneratePrivateKey(Span<byte> privateKey)
    {
        CheckLength(privateKey.Length, nameof(privateKey));
        RandomNumberGenerator.Fill(privateKey);
    }

    /// <summary>Computes the public key X25519(k, 9) for a private key.</summary>
    public static void DerivePublicKey(ReadOnlySpan<byte> privateKey, Span<byte> publicKey)
    {
        CheckLength(privateKey.Length, nameof(privateKey));
        CheckLength(publicKey.Length, nameof(publicKey));
        byte[] scalar = t_scalar ??= new byte[KeySize];
        byte[] result = t_result ??= new byte[KeySize];
        try
        {
            privateKey.CopyTo(scalar);
            Bc.ScalarMultBase(scalar, 0, result, 0);
            result.CopyTo(publicKey);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(scalar);
            CryptographicOperations.ZeroMemory(result);
        }
    }

    /// <summary>
    /// Computes the shared secret X25519(privateKey, publicKey). Returns <see langword="false"/> when the result is all
    /// zeros, which happens only for small-order public keys: a peer that sends one is misbehaving, and the handshake is refused.
    /// </summary>
    public static bool TryAgree(ReadOnlySpan<byte> privateKey, ReadOnlySpan<byte> publicKey, Span<byte> sharedSecret)
    {
        CheckLength(privateKey.Length, nameof(privateKey));
        CheckLength(publicKey.Length, nameof(publicKey));
        CheckLength(sharedSecret.Length, nameof(sharedSecret));
        byte[] scalar = t_scalar ??= new byte[KeySize];
        byte[] point = t_point ??= new byte[KeySize];
        byte[] result = t_result ??= new byte[KeySize];
        try
        {
            privateKey.CopyTo(scalar);
            publicKey.CopyTo(point);
            Bc.ScalarMult(scalar, 0, point, 0, result, 0);
            result.CopyTo(sharedSecret);
            int any = 0;
            foreach (byte b in result)
            {
                any |= b;
            }

            return any != 0;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(scalar);
            CryptographicOperations.ZeroMemory(result);
        }
    }

    private static void CheckLength(int length, string paramName)
    {
        if (length != KeySize)
        {
            throw new ArgumentException($"An X25519 key is {KeySize} bytes; got {length}.", paramName);
        }
    }
}
