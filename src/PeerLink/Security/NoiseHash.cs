// The Noise hash functions (Noise Protocol Framework revision 34, §4.3 and §12.5-12.8): SHA-256 and SHA-512 from the BCL,
// BLAKE2b (64-byte output) from NSec (libsodium), BLAKE2s (32-byte output) from BouncyCastle.Cryptography, since neither
// NSec nor libsodium has BLAKE2s. HMAC is RFC 2104 built on the hash (for BLAKE2 too: Noise does not use BLAKE2's keyed
// mode), and HKDF is the Noise HKDF of §4.3, not RFC 5869's Extract/Expand API. NSec's own HKDF is not used: it refuses
// the empty input key material that Noise's Split() passes.
using System;
using System.Security.Cryptography;
using Org.BouncyCastle.Crypto.Digests;

namespace PeerLink.Security;

/// <summary>The hash function of a Noise protocol.</summary>
internal enum NoiseHashKind
{
    Sha256,
    Sha512,
    Blake2s,
    Blake2b,
}

/// <summary>An incremental hash with the HMAC and HKDF that Noise builds on it. Not thread-safe: one per handshake.</summary>
internal abstract class NoiseHash : IDisposable
{
    public const int MaxHashLength = 64;
    private const int MaxBlockLength = 128;

    public abstract int HashLength { get; }

    public abstract int BlockLength { get; }

    public static string GetName(NoiseHashKind kind) => kind switch
    {
        NoiseHashKind.Sha256 => "SHA256",
        NoiseHashKind.Sha512 => "SHA512",
        NoiseHashKind.Blake2s => "BLAKE2s",
        _ => "BLAKE2b",
    };

    public static NoiseHash Create(NoiseHashKind kind) => kind switch
    {
        NoiseHashKind.Sha256 => new BclHash(HashAlgorithmName.SHA256, 32, 64),
        NoiseHashKind.Sha512 => new BclHash(HashAlgorithmName.SHA512, 64, 128),
        NoiseHashKind.Blake2s => new Blake2sHash(),
        NoiseHashKind.Blake2b => new Blake2bHash(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    public abstract void Append(ReadOnlySpan<byte> data);

    /// <summary>Writes the digest of everything appended so far into <paramref name="output"/> (HashLength bytes) and resets.</summary>
    public abstract void Finish(Span<byte> output);

    public abstract void Dispose();

    /// <summary>output = HASH(a || b).</summary>
    public void Hash(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, Span<byte> output)
    {
        Append(a);
        Append(b);
        Finish(output);
    }

    /// <summary>output = HMAC-HASH(key, data1 || data2), RFC 2104 with this hash's block length.</summary>
    public void Hmac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data1, ReadOnlySpan<byte> data2, Span<byte> output)
    {
        Span<byte> pad = stackalloc byte[MaxBlockLength];
        Span<byte> inner = stackalloc byte[MaxHashLength];
        Span<byte> hashedKey = stackalloc byte[MaxHashLength];
        pad = pad[..BlockLength];
        inner = inner[..HashLength];
        try
        {
            pad.Clear();
            if (key.Length > BlockLength)
            {
                Append(key);
                Finish(hashedKey[..HashLength]);
                hashedKey[..HashLength].CopyTo(pad);
            }
            else
            {
                key.CopyTo(pad);
            }

            XorAll(pad, 0x36);
            Append(pad);
            Append(data1);
            Append(data2);
            Finish(inner);

            XorAll(pad, 0x36 ^ 0x5c);
            Append(pad);
            Append(inner);
            Finish(output[..HashLength]);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pad);
            CryptographicOperations.ZeroMemory(inner);
            CryptographicOperations.ZeroMemory(hashedKey);
        }
    }

    /// <summary>
    /// Noise HKDF(chaining_key, input_key_material, num_outputs): two outputs, or three when <paramref name="output3"/> is not empty.
    /// Each output is HashLength bytes.
    /// </summary>
    public void Hkdf(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> inputKeyMaterial, Span<byte> output1, Span<byte> output2, Span<byte> output3)
    {
        Span<byte> tempKey = stackalloc byte[MaxHashLength];
        tempKey = tempKey[..HashLength];
        Span<byte> counter = stackalloc byte[1];
        try
        {
            Hmac(chainingKey, inputKeyMaterial, default, tempKey);
            counter[0] = 1;
            Hmac(tempKey, counter, default, output1);
            counter[0] = 2;
            Hmac(tempKey, output1[..HashLength], counter, output2);
            if (!output3.IsEmpty)
            {
                counter[0] = 3;
                Hmac(tempKey, output2[..HashLength], counter, output3);
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(tempKey);
        }
    }

    private static void XorAll(Span<byte> buffer, byte value)
    {
        for (int i = 0; i < buffer.Length; i++)
        {
            buffer[i] ^= value;
        }
    }

    private sealed class BclHash(HashAlgorithmName algorithm, int hashLength, int blockLength) : NoiseHash
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(algorithm);

        public override int HashLength => hashLength;

        public override int BlockLength => blockLength;

        public override void Append(ReadOnlySpan<byte> data) => _hash.AppendData(data);

        public override void Finish(Span<byte> output) => _hash.GetHashAndReset(output[..hashLength]);

        public override void Dispose() => _hash.Dispose();
    }

    /// <summary>BLAKE2b-512 from NSec: libsodium's incremental state, a value type, so nothing is allocated per hash.</summary>
    private sealed class Blake2bHash : NoiseHash
    {
        private NSec.Cryptography.IncrementalHash _state;

        public Blake2bHash() => NSec.Cryptography.IncrementalHash.Initialize(NSec.Cryptography.HashAlgorithm.Blake2b_512, out _state);

        public override int HashLength => 64;

        public override int BlockLength => 128;

        public override void Append(ReadOnlySpan<byte> data) => NSec.Cryptography.IncrementalHash.Update(ref _state, data);

        public override void Finish(Span<byte> output)
        {
            NSec.Cryptography.IncrementalHash.Finalize(ref _state, output[..64]);
            NSec.Cryptography.IncrementalHash.Initialize(NSec.Cryptography.HashAlgorithm.Blake2b_512, out _state);
        }

        public override void Dispose() => NSec.Cryptography.IncrementalHash.Initialize(NSec.Cryptography.HashAlgorithm.Blake2b_512, out _state);
    }

    /// <summary>BLAKE2s-256 from BouncyCastle.Cryptography 2.x (span overloads, no staging copies).</summary>
    private sealed class Blake2sHash : NoiseHash
    {
        private readonly Blake2sDigest _digest = new(256);

        public override int HashLength => 32;

        public override int BlockLength => 64;

        public override void Append(ReadOnlySpan<byte> data) => _digest.BlockUpdate(data);

        public override void Finish(Span<byte> output) => _digest.DoFinal(output[..32]);     // DoFinal also resets

        public override void Dispose() => _digest.Reset();
    }
}
