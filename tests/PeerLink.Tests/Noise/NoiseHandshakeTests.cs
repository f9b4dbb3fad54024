using System;
using System.Collections.Generic;
using System.Linq;
using System.Security.Cryptography;
using PeerLink.Security.Noise;
using Xunit;

namespace PeerLink.Tests.Noise;

/// <summary>What the Noise core does with tampered, truncated, oversized or mis-keyed handshakes.</summary>
public sealed class NoiseHandshakeTests
{
    public static TheoryData<string> Protocols() => new()
    {
        "Noise_XX_25519_ChaChaPoly_SHA256",
        "Noise_IK_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk3_25519_ChaChaPoly_SHA256",
        "Noise_IKpsk2_25519_AESGCM_SHA256",
        "Noise_NK1_25519_AESGCM_BLAKE2b",
        "Noise_X_25519_ChaChaPoly_BLAKE2s",
    };

    [Theory]
    [MemberData(nameof(Protocols))]
    public void AnUntamperedHandshakeCompletesWithMatchingKeys(string name)
    {
        using var pair = new Pair(name);
        pair.Run(tamper: null);

        Assert.True(pair.Initiator.IsCompleted && pair.Responder.IsCompleted);
        Assert.Equal(pair.Initiator.HandshakeHash.ToArray(), pair.Responder.HandshakeHash.ToArray());
        Assert.Equal(pair.InitiatorKey.PublicKey.ToArray(), pair.Responder.RemoteStaticPublicKey.ToArray());
        using NoiseTransport a = pair.Initiator.Split();
        using NoiseTransport b = pair.Responder.Split();
        AssertTransportWorks(a.Send!, b.Receive!);
        if (!pair.Protocol.Pattern.IsOneWay)
        {
            AssertTransportWorks(b.Send!, a.Receive!);
        }
    }

    [Theory]
    [MemberData(nameof(Protocols))]
    public void AFlippedBitInAnyHandshakeMessageFailsTheHandshake(string name)
    {
        int messages = NoiseProtocol.Parse(name).Pattern.Messages.Length;
        for (int message = 0; message < messages; message++)
        {
            int length = new Pair(name).MessageLength(message);
            for (int bit = 0; bit < length * 8; bit += 7)   // a spread of bits across every field of the message
            {
                using var pair = new Pair(name);
                PeerLinkException? failure = pair.RunExpectingFailure(message, bytes => bytes[bit / 8] ^= (byte)(1 << (bit % 8)));

                Assert.True(failure is not null, $"message {message}, bit {bit}: the handshake completed");
                Assert.True(failure.Error is PeerLinkError.DecryptionFailed or PeerLinkError.HandshakeFailed, failure.Error.ToString());
            }
        }
    }

    [Theory]
    [MemberData(nameof(Protocols))]
    public void ATruncatedHandshakeMessageFailsCleanly(string name)
    {
        int messages = NoiseProtocol.Parse(name).Pattern.Messages.Length;
        for (int message = 0; message < messages; message++)
        {
            int length = new Pair(name).MessageLength(message);
            for (int cut = 0; cut < length; cut++)
            {
                using var pair = new Pair(name);
                PeerLinkException? failure = pair.RunExpectingFailure(message, bytes => bytes.RemoveRange(cut, bytes.Count - cut));
                Assert.True(failure is not null, $"message {message} cut to {cut} bytes was accepted");
            }
        }
    }

    [Fact]
    public void AHandshakeBorrowsTheStaticKeyAndLeavesItUsable()
    {
        using var pair = new Pair("Noise_XX_25519_ChaChaPoly_SHA256");
        pair.Run(tamper: null);
        pair.Initiator.Dispose();
        pair.Responder.Dispose();

        // Both static keys still serve a second handshake: disposing a handshake never disposes the key it was given.
        using var again = NoiseHandshakeState.Create(pair.Protocol, true, default, pair.InitiatorKey);
        Assert.Equal(NoiseKeyPair.KeySize, pair.InitiatorKey.PublicKey.Length);
        Assert.Equal(again.NextMessageOverhead, again.WriteMessage(default, new byte[1024]));
    }

    [Fact]
    public void AWrongPskFailsTheHandshake()
    {
        using var pair = new Pair("Noise_XXpsk3_25519_ChaChaPoly_SHA256", responderPsk: RandomNumberGenerator.GetBytes(32));
        PeerLinkException? failure = pair.RunExpectingFailure(message: -1, tamper: null);
        Assert.NotNull(failure);
        Assert.Equal(PeerLinkError.DecryptionFailed, failure.Error);
        Assert.False(pair.Responder.IsCompleted);
    }

    [Fact]
    public void IkWithAWrongRemoteStaticKeyFailsAtTheFirstMessage()
    {
        using NoiseKeyPair stale = NoiseKeyPair.Generate();
        using var pair = new Pair("Noise_IK_25519_ChaChaPoly_SHA256", initiatorRemoteStatic: stale.PublicKey.ToArray());
        byte[] first = new byte[1024];
        int length = pair.Initiator.WriteMessage([1, 2, 3], first);

        var failure = Assert.Throws<PeerLinkException>(() => pair.Responder.ReadMessage(first.AsSpan(0, length), new byte[1024]));
        Assert.Equal(PeerLinkError.DecryptionFailed, failure.Error);
    }

    [Fact]
    public void ADecryptionFailureYieldsNoPlaintext()
    {
        using var pair = new Pair("Noise_IK_25519_ChaChaPoly_SHA256");
        byte[] first = new byte[1024];
        byte[] secret = Enumerable.Repeat((byte)0xAB, 100).ToArray();
        int length = pair.Initiator.WriteMessage(secret, first);
        first[length - 1] ^= 1;   // the payload's tag

        byte[] payload = new byte[1024];
        Assert.Throws<PeerLinkException>(() => pair.Responder.ReadMessage(first.AsSpan(0, length), payload));
        Assert.DoesNotContain((byte)0xAB, payload);
    }

    [Fact]
    public void UseAfterFailureIsRefused()
    {
        using var pair = new Pair("Noise_XX_25519_ChaChaPoly_SHA256");
        byte[] buffer = new byte[1024];
        int length = pair.Initiator.WriteMessage([], buffer);
        pair.Responder.ReadMessage(buffer.AsSpan(0, length), new byte[1024]);
        length = pair.Responder.WriteMessage([], buffer);
        buffer[40] ^= 1;
        Assert.Throws<PeerLinkException>(() => pair.Initiator.ReadMessage(buffer.AsSpan(0, length), new byte[1024]));

        Assert.Throws<InvalidOperationException>(() => pair.Initiator.ReadMessage(buffer.AsSpan(0, length), new byte[1024]));
        Assert.Throws<InvalidOperationException>(() => pair.Initiator.WriteMessage([], new byte[1024]));
        Assert.Throws<InvalidOperationException>(() => pair.Initiator.Split());
    }

    [Fact]
    public void MessagesOverTheNoiseLimitAreRejected()
    {
        using var pair = new Pair("Noise_XX_25519_ChaChaPoly_SHA256");

        // Message 0 of XX carries 32 bytes of key: a payload over 65503 bytes cannot fit.
        Assert.Throws<ArgumentException>("payload", () => pair.Initiator.WriteMessage(new byte[65504], new byte[70000]));
        int length = pair.Initiator.WriteMessage(new byte[65503], new byte[70000]);
        Assert.Equal(65535, length);

        var e = Assert.Throws<PeerLinkException>(() => pair.Responder.ReadMessage(new byte[65536], new byte[70000]));
        Assert.Equal(PeerLinkError.MessageTooLarge, e.Error);
    }

    [Fact]
    public void ASmallOrderEphemeralKeyIsRefused()
    {
        using var pair = new Pair("Noise_XX_25519_ChaChaPoly_SHA256");
        byte[] first = new byte[32];   // the all-zero point: every DH with it is zero
        pair.Responder.ReadMessage(first, new byte[16]);

        var e = Assert.Throws<PeerLinkException>(() => pair.Responder.WriteMessage([], new byte[1024]));
        Assert.Equal(PeerLinkError.HandshakeFailed, e.Error);
    }

    [Fact]
    public void MissingKeysAreArgumentErrors()
    {
        NoiseProtocol ik = NoiseProtocol.Parse("Noise_IK_25519_ChaChaPoly_SHA256");
        using NoiseKeyPair key = NoiseKeyPair.Generate();

        Assert.Throws<ArgumentException>("localStatic", () => NoiseHandshakeState.Create(ik, true, default));
        Assert.Throws<ArgumentException>("remoteStatic", () => NoiseHandshakeState.Create(ik, true, default, key));
        Assert.Throws<ArgumentException>("psks", () => NoiseHandshakeState.Create(NoiseProtocol.Parse("Noise_XXpsk3_25519_ChaChaPoly_SHA256"), true, default, key));
        Assert.Throws<ArgumentException>("psks", () => NoiseHandshakeState.Create(NoiseProtocol.Parse("Noise_NNpsk0_25519_ChaChaPoly_SHA256"), true, default, psks: [new byte[31]]));
    }

    [Theory]
    [InlineData("Noise_XX_448_ChaChaPoly_SHA256", "448")]
    [InlineData("Noise_XX_25519_Salsa_SHA256", "Salsa")]
    [InlineData("Noise_XX_25519_ChaChaPoly_MD5", "MD5")]
    [InlineData("Noise_ZZ_25519_ChaChaPoly_SHA256", "ZZ")]
    [InlineData("Noise_XXpsk9_25519_ChaChaPoly_SHA256", "psk9")]
    [InlineData("Noise_XXpsk3+psk3_25519_ChaChaPoly_SHA256", "twice")]
    [InlineData("Noise_XXbogus_25519_ChaChaPoly_SHA256", "bogus")]
    [InlineData("Noise_Nfallback_25519_ChaChaPoly_SHA256", "fallback")]
    [InlineData("Noise_XX_25519_ChaChaPoly", "form")]
    [InlineData("NoisePSK_XX_25519_ChaChaPoly_SHA256", "form")]
    public void UnsupportedProtocolNamesSayWhy(string name, string expected)
    {
        var e = Assert.Throws<ArgumentException>("name", () => NoiseProtocol.Parse(name));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Noise_XXpsk0+psk1_25519_AESGCM_BLAKE2s", 2)]
    [InlineData("Noise_XXpsk3_25519_ChaChaPoly_SHA256", 1)]
    [InlineData("Noise_IKpsk2_25519_ChaChaPoly_SHA256", 1)]
    [InlineData("Noise_NXpsk0+psk1+psk2_25519_ChaChaPoly_BLAKE2b", 3)]
    public void PskModifiersAreParsed(string name, int pskCount)
    {
        NoiseProtocol protocol = NoiseProtocol.Parse(name);
        Assert.Equal(pskCount, protocol.Pattern.PskCount);
        Assert.Equal(name.Split('_')[1], protocol.Pattern.Name);
    }

    private static void AssertTransportWorks(NoiseCipherState send, NoiseCipherState receive)
    {
        byte[] message = RandomNumberGenerator.GetBytes(1000);
        byte[] ciphertext = new byte[1016];
        byte[] plaintext = new byte[1000];
        send.EncryptWithAd(default, message, ciphertext);
        Assert.True(receive.TryDecryptWithAd(default, ciphertext, plaintext, out int written));
        Assert.Equal(message, plaintext.AsSpan(0, written).ToArray());
    }

    /// <summary>An initiator and a responder for one protocol, with fresh keys.</summary>
    private sealed class Pair : IDisposable
    {
        public Pair(string name, byte[]? responderPsk = null, byte[]? initiatorRemoteStatic = null)
        {
            Protocol = NoiseProtocol.Parse(name);
            InitiatorKey = NoiseKeyPair.Generate();
            ResponderKey = NoiseKeyPair.Generate();
            byte[] psk = RandomNumberGenerator.GetBytes(32);
            List<byte[]> initiatorPsks = Enumerable.Repeat(psk, Protocol.Pattern.PskCount).ToList();
            List<byte[]> responderPsks = Enumerable.Repeat(responderPsk ?? psk, Protocol.Pattern.PskCount).ToList();
            byte[] prologue = "PLNK test"u8.ToArray();
            Initiator = NoiseHandshakeState.Create(Protocol, true, prologue, InitiatorKey, initiatorRemoteStatic ?? ResponderKey.PublicKey.ToArray(), initiatorPsks);
            Responder = NoiseHandshakeState.Create(Protocol, false, prologue, ResponderKey, InitiatorKey.PublicKey, responderPsks);
        }

        public NoiseProtocol Protocol { get; }

        public NoiseKeyPair InitiatorKey { get; }

        public NoiseKeyPair ResponderKey { get; }

        public NoiseHandshakeState Initiator { get; }

        public NoiseHandshakeState Responder { get; }

        /// <summary>The length of handshake message <paramref name="index"/> with a 5-byte payload.</summary>
        public int MessageLength(int index)
        {
            int length = 0;
            Run(tamper: null, onMessage: (i, bytes) =>
            {
                if (i == index)
                {
                    length = bytes.Count;
                }
            });
            Dispose();
            return length;
        }

        public void Run(Action<List<byte>>? tamper, int tamperIndex = -1, Action<int, List<byte>>? onMessage = null)
        {
            byte[] buffer = new byte[2048];
            byte[] payload = new byte[2048];
            for (int i = 0; !Initiator.IsCompleted; i++)
            {
                NoiseHandshakeState sender = Initiator.IsMyTurnToWrite ? Initiator : Responder;
                NoiseHandshakeState receiver = sender == Initiator ? Responder : Initiator;
                int length = sender.WriteMessage("hello"u8, buffer);
                var bytes = buffer.Take(length).ToList();
                onMessage?.Invoke(i, bytes);
                if (i == tamperIndex)
                {
                    tamper?.Invoke(bytes);
                }

                int read = receiver.ReadMessage(bytes.ToArray(), payload);
                if (tamper is null)
                {
                    Assert.Equal("hello"u8.ToArray(), payload.AsSpan(0, read).ToArray());
                }
            }
        }

        /// <summary>Runs the handshake with message <paramref name="message"/> altered; returns the failure, or null if it completed.</summary>
        public PeerLinkException? RunExpectingFailure(int message, Action<List<byte>>? tamper)
        {
            try
            {
                Run(tamper, message);
                return null;
            }
            catch (PeerLinkException e)
            {
                return e;
            }
        }

        public void Dispose()
        {
            Initiator.Dispose();
            Responder.Dispose();
            InitiatorKey.Dispose();
            ResponderKey.Dispose();
        }
    }
}
