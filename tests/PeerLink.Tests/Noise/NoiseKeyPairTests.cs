using System;
using PeerLink.Security.Noise;
using Xunit;

namespace PeerLink.Tests.Noise;

/// <summary>X25519 from NSec, checked against RFC 7748 §6.1 and the small-order inputs a handshake must refuse.</summary>
public sealed class NoiseKeyPairTests
{
    // RFC 7748 §6.1 (Curve25519 Diffie-Hellman test vector).
    private const string AlicePrivate = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    private const string AlicePublic = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    private const string BobPrivate = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
    private const string BobPublic = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    private const string Shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

    [Fact]
    public void ImportDerivesThePublicKeysAndBothSidesAgreeOnTheRfcSecret()
    {
        using NoiseKeyPair alice = NoiseKeyPair.Import(Convert.FromHexString(AlicePrivate));
        using NoiseKeyPair bob = NoiseKeyPair.Import(Convert.FromHexString(BobPrivate));
        Assert.Equal(AlicePublic, Convert.ToHexStringLower(alice.PublicKey));
        Assert.Equal(BobPublic, Convert.ToHexStringLower(bob.PublicKey));

        byte[] fromAlice = new byte[32];
        byte[] fromBob = new byte[32];
        Assert.True(alice.TryAgree(bob.PublicKey, fromAlice));
        Assert.True(bob.TryAgree(alice.PublicKey, fromBob));
        Assert.Equal(Shared, Convert.ToHexStringLower(fromAlice));
        Assert.Equal(Shared, Convert.ToHexStringLower(fromBob));

        byte[] exported = new byte[32];
        alice.ExportPrivateKey(exported);
        Assert.Equal(AlicePrivate, Convert.ToHexStringLower(exported));
    }

    [Theory]
    // Points of small order on Curve25519 (0, 1, and the order-8 point from the libsodium blocklist): the DH result is all zeros.
    [InlineData("0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("0100000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")]
    [InlineData("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157")]
    [InlineData("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")]
    public void ASmallOrderPublicKeyIsRefused(string point)
    {
        using NoiseKeyPair key = NoiseKeyPair.Generate();
        byte[] shared = new byte[32];
        Assert.False(key.TryAgree(Convert.FromHexString(point), shared));
    }

    [Fact]
    public void AGeneratedKeyCannotBeExportedAndADisposedOneCannotBeUsed()
    {
        NoiseKeyPair key = NoiseKeyPair.Generate();
        Assert.Throws<InvalidOperationException>(() => key.ExportPrivateKey(new byte[32]));
        Assert.Equal("NoiseKeyPair (X25519, private key hidden)", key.ToString());

        using NoiseKeyPair other = NoiseKeyPair.Generate();
        key.Dispose();
        key.Dispose();      // idempotent
        Assert.Throws<ObjectDisposedException>(() => key.TryAgree(other.PublicKey, new byte[32]));
        Assert.Equal(32, key.PublicKey.Length);    // the public key stays readable
    }

    [Fact]
    public void ImportRefusesAWrongLength()
    {
        Assert.Throws<ArgumentException>("privateKey", () => NoiseKeyPair.Import(new byte[31]));
        Assert.Throws<ArgumentException>("privateKey", () => PeerIdentity.FromPrivateKey(new byte[33]));
    }
}
