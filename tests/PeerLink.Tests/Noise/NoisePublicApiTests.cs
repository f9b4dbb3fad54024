using System;
using PeerLink.Security.Noise;
using Xunit;

namespace PeerLink.Tests.Noise;

/// <summary>The Noise core through its public surface: identities in, PeerIds out.</summary>
public sealed class NoisePublicApiTests
{
    [Theory]
    [InlineData("Noise_IK_25519_ChaChaPoly_SHA256")]
    [InlineData("Noise_IKpsk2_25519_AESGCM_SHA256")]
    [InlineData("Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s")]
    public void TwoIdentitiesAuthenticateEachOther(string name)
    {
        using PeerIdentity sensor = PeerIdentity.Generate();
        using PeerIdentity light = PeerIdentity.Generate();
        NoiseProtocol protocol = NoiseProtocol.Parse(name);
        byte[][] psks = protocol.PskCount == 0 ? [] : [new byte[32]];

        using var initiator = new NoiseHandshakeState(protocol, true, "app"u8, sensor.KeyPair, light.PeerId.ToArray(), psks);
        using var responder = new NoiseHandshakeState(protocol, false, "app"u8, light.KeyPair, psks: psks);
        byte[] buffer = new byte[1024];
        byte[] payload = new byte[1024];
        while (!initiator.IsCompleted)
        {
            NoiseHandshakeState sender = initiator.IsMyTurnToWrite ? initiator : responder;
            NoiseHandshakeState receiver = sender == initiator ? responder : initiator;
            int overhead = sender.NextMessageOverhead;
            int length = sender.WriteMessage(default, buffer);
            Assert.Equal(overhead, length);   // an empty payload: the message is keys and tags only
            Assert.Equal(0, receiver.ReadMessage(buffer.AsSpan(0, length), payload));
        }

        Assert.Equal(sensor.PeerId.ToArray(), responder.RemoteStaticPublicKey.ToArray());
        Assert.Equal(light.PeerId.ToArray(), initiator.RemoteStaticPublicKey.ToArray());
        Assert.True(protocol.IsSupported);
        Assert.Equal(name.Split('_')[1], protocol.PatternName);
    }

    [Fact]
    public void AnXxResponderLearnsThePeerIdOnlyFromTheHandshake()
    {
        using PeerIdentity a = PeerIdentity.Generate();
        using PeerIdentity b = PeerIdentity.Generate();
        NoiseProtocol xx = NoiseProtocol.Parse("Noise_XX_25519_ChaChaPoly_SHA256");
        using var initiator = new NoiseHandshakeState(xx, true, default, a.KeyPair);
        using var responder = new NoiseHandshakeState(xx, false, default, b.KeyPair);

        Assert.True(initiator.RemoteStaticPublicKey.IsEmpty);
        Assert.True(responder.RemoteStaticPublicKey.IsEmpty);
        Assert.Equal("Noise_XX_25519_ChaChaPoly_SHA256 (initiator, message 0)", initiator.ToString());
        Assert.Equal("ChaChaPoly", xx.CipherName);
        Assert.Equal("SHA256", xx.HashName);
        Assert.False(xx.IsOneWay);
    }

    [Fact]
    public void TryParseReportsWhy()
    {
        Assert.False(NoiseProtocol.TryParse("Noise_QQ_25519_ChaChaPoly_SHA256", out NoiseProtocol? none, out string? error));
        Assert.Null(none);
        Assert.Contains("QQ", error, StringComparison.Ordinal);
        Assert.False(NoiseProtocol.TryParse(null, out _, out error));
        Assert.Throws<ArgumentNullException>("name", () => NoiseProtocol.Parse(null!));
    }
}
