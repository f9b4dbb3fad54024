extern alias PortableBouncyCastle;

using System;
using BenchmarkDotNet.Attributes;
using PeerLink.Security.Noise;

namespace PeerLink.Benchmarks;

/// <summary>
/// Complete handshakes with both sides in one process: every message written and read, then Split(). Static keys are
/// made once (as a device does); ephemeral keys are generated per handshake. X25519 is NSec (libsodium), measured
/// alone too, because it dominates: IK costs 8 DH and 2 key generations, XX 6 and 2.
/// </summary>
public class HandshakeBenchmarks
{
    private static readonly NoiseProtocol s_xx = NoiseProtocol.Parse("Noise_XX_25519_ChaChaPoly_SHA256");
    private static readonly NoiseProtocol s_ik = NoiseProtocol.Parse("Noise_IK_25519_ChaChaPoly_SHA256");
    private readonly byte[] _buffer = new byte[1024];
    private readonly byte[] _payload = new byte[1024];
    private readonly byte[] _shared = new byte[32];
    private readonly byte[] _bcPrivate = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
    private byte[] _bcPublic = null!;
    private readonly byte[] _generated = new byte[32];
    private NoiseKeyPair _initiator = null!;
    private NoiseKeyPair _responder = null!;

    [GlobalSetup]
    public void Setup()
    {
        _initiator = NoiseKeyPair.Generate();
        _responder = NoiseKeyPair.Generate();
        _bcPublic = _responder.PublicKey.ToArray();
    }

    [Benchmark]
    public bool X25519SharedSecret() => _initiator.TryAgree(_responder.PublicKey, _shared);

    /// <summary>The X25519 PeerLink used before NSec (Portable.BouncyCastle 1.8.10), on the same keys.</summary>
    [Benchmark]
    public void X25519SharedSecretBouncyCastle1810() =>
        PortableBouncyCastle::Org.BouncyCastle.Math.EC.Rfc7748.X25519.ScalarMult(_bcPrivate, 0, _bcPublic, 0, _shared, 0);

    /// <summary>BouncyCastle.Cryptography 2.7, its maintained successor (PeerLink takes only BLAKE2s from it).</summary>
    [Benchmark]
    public void X25519SharedSecretBouncyCastle27() =>
        Org.BouncyCastle.Math.EC.Rfc7748.X25519.ScalarMult(_bcPrivate, 0, _bcPublic, 0, _shared, 0);

    [Benchmark]
    public void X25519KeyGeneration()
    {
        using NoiseKeyPair pair = NoiseKeyPair.Generate();
    }

    /// <summary>
    /// The same DH by calling the libsodium that NSec ships, directly, on arrays: what X25519 costs without NSec's
    /// locked, guarded native object per shared secret (for the breakdown only; PeerLink does not do this).
    /// </summary>
    [Benchmark]
    public unsafe int X25519SharedSecretLibsodiumDirect()
    {
        fixed (byte* q = _shared, n = _bcPrivate, p = _bcPublic)
        {
            return Libsodium.crypto_scalarmult_curve25519(q, n, p);
        }
    }

    /// <summary>Key generation by libsodium directly: random bytes and one base-point multiplication.</summary>
    [Benchmark]
    public unsafe int X25519KeyGenerationLibsodiumDirect()
    {
        fixed (byte* q = _shared, n = _generated)
        {
            Libsodium.randombytes_buf(n, 32);
            return Libsodium.crypto_scalarmult_curve25519_base(q, n);
        }
    }

    private static unsafe class Libsodium
    {
        [System.Runtime.InteropServices.DllImport("libsodium")]
        public static extern int crypto_scalarmult_curve25519(byte* q, byte* n, byte* p);

        [System.Runtime.InteropServices.DllImport("libsodium")]
        public static extern int crypto_scalarmult_curve25519_base(byte* q, byte* n);

        [System.Runtime.InteropServices.DllImport("libsodium")]
        public static extern void randombytes_buf(byte* buffer, nuint size);
    }

    [Benchmark]
    public void HandshakeXX()
    {
        using var initiator = NoiseHandshakeState.Create(s_xx, true, "PLNK"u8, _initiator);
        using var responder = NoiseHandshakeState.Create(s_xx, false, "PLNK"u8, _responder);
        Complete(initiator, responder);
    }

    [Benchmark]
    public void HandshakeIK()
    {
        using var initiator = NoiseHandshakeState.Create(s_ik, true, "PLNK"u8, _initiator, _responder.PublicKey);
        using var responder = NoiseHandshakeState.Create(s_ik, false, "PLNK"u8, _responder);
        Complete(initiator, responder);
    }

    private void Complete(NoiseHandshakeState initiator, NoiseHandshakeState responder)
    {
        while (!initiator.IsCompleted)
        {
            NoiseHandshakeState sender = initiator.IsMyTurnToWrite ? initiator : responder;
            NoiseHandshakeState receiver = sender == initiator ? responder : initiator;
            int length = sender.WriteMessage(default, _buffer);
            receiver.ReadMessage(_buffer.AsSpan(0, length), _payload);
        }

        initiator.Split().Dispose();
        responder.Split().Dispose();
    }
}
