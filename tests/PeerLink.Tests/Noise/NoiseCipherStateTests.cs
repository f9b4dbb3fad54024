using System;
using System.Security.Cryptography;
using PeerLink.Security;
using PeerLink.Security.Noise;
using Xunit;

namespace PeerLink.Tests.Noise;

public sealed class NoiseCipherStateTests
{
    [Theory]
    [InlineData("ChaChaPoly")]
    [InlineData("AESGCM")]
    public void TamperedReplayedAndReorderedMessagesAreRejected(string cipher)
    {
        (NoiseCipherState send, NoiseCipherState receive) = Create(KindOf(cipher));
        byte[] first = Encrypt(send, "first"u8);
        byte[] second = Encrypt(send, "second"u8);
        byte[] plaintext = new byte[64];

        // Reordered: the second message arrives first.
        Assert.False(receive.TryDecryptWithAd(default, second, plaintext, out _));
        Assert.Equal(0UL, receive.Nonce);   // a failure does not advance the nonce

        // Tampered: any flipped bit.
        for (int bit = 0; bit < first.Length * 8; bit++)
        {
            byte[] tampered = (byte[])first.Clone();
            tampered[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.False(receive.TryDecryptWithAd(default, tampered, plaintext, out _));
        }

        Assert.True(receive.TryDecryptWithAd(default, first, plaintext, out int written));
        Assert.Equal("first"u8.ToArray(), plaintext.AsSpan(0, written).ToArray());

        // Replayed.
        Assert.False(receive.TryDecryptWithAd(default, first, plaintext, out _));
        Assert.True(receive.TryDecryptWithAd(default, second, plaintext, out written));
        Assert.Equal("second"u8.ToArray(), plaintext.AsSpan(0, written).ToArray());

        // Too short to hold a tag.
        Assert.False(receive.TryDecryptWithAd(default, new byte[15], plaintext, out _));
    }

    [Theory]
    [InlineData("ChaChaPoly")]
    [InlineData("AESGCM")]
    public void RekeyOnBothSidesKeepsTheSessionAndChangesTheKey(string cipher)
    {
        (NoiseCipherState send, NoiseCipherState receive) = Create(KindOf(cipher));
        (NoiseCipherState unrekeyed, _) = Create(KindOf(cipher));
        byte[] plaintext = new byte[64];

        send.Rekey();
        byte[] afterRekey = Encrypt(send, "after"u8);
        Assert.False(receive.TryDecryptWithAd(default, afterRekey, plaintext, out _));   // the receiver has the old key

        receive.Rekey();
        Assert.True(receive.TryDecryptWithAd(default, afterRekey, plaintext, out int written));
        Assert.Equal("after"u8.ToArray(), plaintext.AsSpan(0, written).ToArray());
        Assert.NotEqual(Encrypt(unrekeyed, "after"u8), afterRekey);
    }

    [Fact]
    public void TheLastNonceIsReservedAndExhaustionIsAnError()
    {
        (NoiseCipherState send, NoiseCipherState receive) = Create(NoiseCipherKind.ChaChaPoly);
        send.Nonce = ulong.MaxValue - 1;
        receive.Nonce = ulong.MaxValue - 1;
        byte[] last = Encrypt(send, "last"u8);
        Assert.True(receive.TryDecryptWithAd(default, last, new byte[64], out _));

        var e = Assert.Throws<PeerLinkException>(() => Encrypt(send, "one too many"u8));
        Assert.Equal(PeerLinkError.NonceExhausted, e.Error);
        e = Assert.Throws<PeerLinkException>(() => receive.TryDecryptWithAd(default, last, new byte[64], out _));
        Assert.Equal(PeerLinkError.NonceExhausted, e.Error);
    }

    [Fact]
    public void EncryptionInPlaceWorks()
    {
        (NoiseCipherState send, NoiseCipherState receive) = Create(NoiseCipherKind.ChaChaPoly);
        byte[] buffer = new byte[100 + NoiseCipherState.TagSize];
        RandomNumberGenerator.Fill(buffer.AsSpan(0, 100));
        byte[] original = buffer[..100];

        int length = send.EncryptWithAd(default, buffer.AsSpan(0, 100), buffer);
        Assert.True(receive.TryDecryptWithAd(default, buffer.AsSpan(0, length), buffer, out int written));
        Assert.Equal(original, buffer.AsSpan(0, written).ToArray());
    }

    [Fact]
    public void ShortDestinationsAreArgumentErrors()
    {
        (NoiseCipherState send, _) = Create(NoiseCipherKind.ChaChaPoly);
        Assert.Throws<ArgumentException>("ciphertext", () => send.EncryptWithAd(default, new byte[10], new byte[25]));
    }

    private static NoiseCipherKind KindOf(string cipher) => cipher == "AESGCM" ? NoiseCipherKind.AesGcm : NoiseCipherKind.ChaChaPoly;

    private static (NoiseCipherState Send, NoiseCipherState Receive) Create(NoiseCipherKind kind)
    {
        byte[] key = RandomNumberGenerator.GetBytes(NoiseCipher.KeySize);
        var send = new NoiseCipherState(kind);
        var receive = new NoiseCipherState(kind);
        send.InitializeKey(key);
        receive.InitializeKey(key);
        return (send, receive);
    }

    private static byte[] Encrypt(NoiseCipherState state, ReadOnlySpan<byte> plaintext)
    {
        byte[] ciphertext = new byte[plaintext.Length + NoiseCipherState.TagSize];
        state.EncryptWithAd(default, plaintext, ciphertext);
        return ciphertext;
    }
}
