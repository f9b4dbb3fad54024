using System;
using System.Buffers.Binary;
using System.Linq;
using System.Net;
using PeerLink.Nat.Stun;
using Xunit;

namespace PeerLink.Tests.Stun;

/// <summary>Malformed datagrams and other protocols on the same socket: false with a reason, never an exception.</summary>
public sealed class StunHostileInputTests
{
    [Fact]
    public void EveryTruncationIsRejected()
    {
        foreach (byte[] bytes in StunVectorTests.AllValidVectors())
        {
            for (int cut = 0; cut < bytes.Length; cut++)
            {
                Assert.False(StunMessage.TryParse(bytes.AsSpan(0, cut), out _, out string? error), $"accepted {cut} of {bytes.Length} bytes");
                Assert.False(string.IsNullOrEmpty(error));
                Assert.False(StunMessage.LooksLikeStun(bytes.AsSpan(0, cut)));
            }
        }
    }

    [Fact]
    public void TruncatedAttributesWithAConsistentHeaderAreRejected()
    {
        // Cut inside the last attribute but rewrite the header length so that only the attribute's own length lies.
        foreach (byte[] original in StunVectorTests.AllValidVectors())
        {
            for (int cut = 24; cut < original.Length; cut += 4)
            {
                byte[] bytes = original[..cut];
                BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(2), (ushort)(cut - 20));
                if (StunMessage.TryParse(bytes, out StunMessage? message, out _))
                {
                    // A cut on an attribute boundary is a well-formed shorter message: its integrity must then fail.
                    Assert.False(message!.VerifyMessageIntegrity("VOkJxbRl1RmTxUk/WvJxBt"u8) && message.HasValidFingerprint());
                }
            }
        }
    }

    [Theory]
    [InlineData("000100082112a442000000000000000000000000" + "80220010" + "41414141", "claims 16 bytes")]     // value beyond the message
    [InlineData("000100082112a442000000000000000000000000" + "80220005" + "41414141", "claims 5 bytes")]    // padding beyond the message
    [InlineData("000100002112a443000000000000000000000000", "magic cookie")]                               // wrong cookie
    [InlineData("000100022112a442000000000000000000000000" + "0000", "multiple of 4")]                     // length not a multiple of 4
    [InlineData("400100002112a442000000000000000000000000", "leading bits")]                               // leading bits set
    [InlineData("000100102112a442000000000000000000000000" + "80280004" + "00000000" + "80220000" + "00000000", "follows FINGERPRINT")]
    public void MalformedMessagesSayWhy(string hex, string expected)
    {
        byte[] bytes = Convert.FromHexString(hex);
        Assert.False(StunMessage.TryParse(bytes, out StunMessage? message, out string? error));
        Assert.Null(message);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("80e0000100000000deadbeef")]                   // RTP
    [InlineData("16fefd0000000000000000002c010000200000")]     // DTLS ClientHello
    [InlineData("504c4e4b0101")]                               // a PeerLink stream preamble
    [InlineData("")]
    public void OtherProtocolsAreToldApartCheaply(string hex)
    {
        byte[] bytes = Convert.FromHexString(hex);
        Assert.False(StunMessage.LooksLikeStun(bytes));
        Assert.False(StunMessage.TryParse(bytes, out _, out _));
    }

    [Fact]
    public void RandomDatagramsNeverThrow()
    {
        var random = new Random(5769);
        byte[] buffer = new byte[300];
        for (int i = 0; i < 20_000; i++)
        {
            int length = 20 + (4 * random.Next(0, 70));
            random.NextBytes(buffer.AsSpan(0, length));
            buffer[0] &= 0x3F;
            BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(2), (ushort)(length - 20));
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(4), StunConstants.MagicCookie);
            if (i % 3 == 0)
            {
                // Plausible attribute headers, so that the value accessors get exercised too.
                for (int offset = 20; offset + 4 <= length; offset += 8)
                {
                    BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(offset), new ushort[] { 0x0001, 0x0020, 0x0009, 0x000A, 0x001D, 0x8002, 0x0006, 0x8028 }[random.Next(8)]);
                    BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(offset + 2), (ushort)random.Next(0, 9));
                }
            }

            if (StunMessage.TryParse(buffer.AsSpan(0, length), out StunMessage? message, out _))
            {
                _ = message!.GetXorMappedAddress();
                _ = message.GetMappedAddress();
                _ = message.GetErrorCode();
                _ = message.GetUnknownAttributes();
                _ = message.GetPasswordAlgorithm();
                _ = message.GetPasswordAlgorithms();
                _ = message.GetUsername();
                _ = message.HasValidFingerprint();
                _ = message.VerifyMessageIntegrity("key"u8);
                _ = message.VerifyMessageIntegritySha256("key"u8);
            }
        }
    }

    [Fact]
    public void AnyFlippedBitBreaksIntegrityOrFingerprint()
    {
        byte[] original = StunVectorTests.AllValidVectors().Skip(1).First();   // the IPv4 response: MESSAGE-INTEGRITY and FINGERPRINT
        byte[] key = StunCredentials.ShortTermKey("VOkJxbRl1RmTxUk/WvJxBt");
        for (int bit = 0; bit < original.Length * 8; bit++)
        {
            byte[] bytes = (byte[])original.Clone();
            bytes[bit / 8] ^= (byte)(1 << (bit % 8));
            if (StunMessage.TryParse(bytes, out StunMessage? message, out _))
            {
                Assert.False(message!.VerifyMessageIntegrity(key) && message.HasValidFingerprint(), $"bit {bit} went unnoticed");
            }
        }
    }

    [Fact]
    public void AttributesAfterMessageIntegrityOtherThanFingerprintAreIgnored()
    {
        byte[] id = StunMessageBuilder.NewTransactionId();
        byte[] bytes = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, id)
            .AddString(StunAttributeType.Username, "alice")
            .AddMessageIntegrity("pw"u8)
            .AddString(StunAttributeType.Software, "injected after the MAC")
            .AddFingerprint()
            .ToArray();

        Assert.True(StunMessage.TryParse(bytes, out StunMessage? message, out _));
        Assert.Null(message!.GetSoftware());
        Assert.True(message.VerifyMessageIntegrity("pw"u8));
        Assert.True(message.HasValidFingerprint());
    }

    [Theory]
    [InlineData(StunClass.Request)]
    [InlineData(StunClass.Indication)]
    [InlineData(StunClass.SuccessResponse)]
    [InlineData(StunClass.ErrorResponse)]
    internal void BuiltMessagesRoundTrip(StunClass messageClass)
    {
        byte[] id = StunMessageBuilder.NewTransactionId();
        var v4 = new IPEndPoint(IPAddress.Parse("203.0.113.7"), 40000);
        var v6 = new IPEndPoint(IPAddress.Parse("2001:db8::1"), 3478);
        byte[] bytes = new StunMessageBuilder(messageClass, 0x0ABC, id)
            .AddAddress(StunAttributeType.XorMappedAddress, v6)
            .AddAddress(StunAttributeType.MappedAddress, v4)
            .AddAddress(StunAttributeType.ResponseOrigin, v4)
            .AddAddress(StunAttributeType.OtherAddress, v6)
            .AddErrorCode(438, "Stale Nonce")
            .AddUnknownAttributes([0x0024, 0x7FFF])
            .AddUInt32(StunAttributeType.ChangeRequest, StunConstants.ChangeIp | StunConstants.ChangePort)
            .AddResponsePort(5000)
            .AddPasswordAlgorithms(StunConstants.PasswordAlgorithmMd5, StunConstants.PasswordAlgorithmSha256)
            .AddFingerprint()
            .ToArray();

        Assert.True(StunMessage.TryParse(bytes, out StunMessage? message, out string? error), error);
        Assert.Equal(messageClass, message!.Class);
        Assert.Equal(0x0ABC, message.Method);
        Assert.Equal(id, message.TransactionId.ToArray());
        Assert.Equal(v6, message.GetXorMappedAddress());
        Assert.Equal(v4, message.GetMappedAddress());
        Assert.Equal(v4, message.GetResponseOrigin());
        Assert.Equal(v6, message.GetOtherAddress());
        Assert.Equal((438, "Stale Nonce"), message.GetErrorCode());
        Assert.Equal(new ushort[] { 0x0024, 0x7FFF }, message.GetUnknownAttributes());
        Assert.Equal(StunConstants.ChangeIp | StunConstants.ChangePort, message.GetChangeRequest());
        Assert.Equal((ushort)5000, message.GetResponsePort());
        Assert.Equal(new ushort[] { 1, 2 }, message.GetPasswordAlgorithms());
        Assert.True(message.HasValidFingerprint());
        Assert.Empty(message.UnknownComprehensionRequired);
    }

    [Fact]
    public void BuilderArgumentsAreChecked()
    {
        Assert.Throws<ArgumentException>("transactionId", () => new StunMessageBuilder(StunClass.Request, StunMethod.Binding, new byte[11]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new StunMessageBuilder(StunClass.Request, 0x1000, new byte[12]));
        var builder = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, new byte[12]);
        Assert.Throws<ArgumentException>("padding", () => builder.Add(0x8022, new byte[3], new byte[2]));
        Assert.Throws<InvalidOperationException>(() => builder.Add(0x8022, new byte[65535]));
    }
}
