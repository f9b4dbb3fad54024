using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Text.Json;
using PeerLink.Nat.Stun;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Stun;

/// <summary>RFC 5769 sample messages and RFC 8489 Appendix B.1: decode, verify, and re-encode byte for byte.</summary>
public sealed class StunVectorTests
{
    private static readonly Lazy<JsonElement> s_file = new(() =>
    {
        using JsonDocument document = TestFiles.Json("stun/rfc5769.json");
        return document.RootElement.Clone();
    });

    public static TheoryData<string> Rfc5769Names() => new(s_file.Value.GetProperty("rfc5769").EnumerateArray().Select(v => v.GetProperty("name").GetString()!));

    [Theory]
    [MemberData(nameof(Rfc5769Names))]
    public void Rfc5769SampleDecodesVerifiesAndReencodes(string name)
    {
        JsonElement vector = Vector("rfc5769", name);
        byte[] bytes = TestFiles.Hex(vector.GetProperty("hex").GetString()!);
        JsonElement expected = vector.GetProperty("expected");
        JsonElement credentials = vector.GetProperty("credentials");

        Assert.True(StunMessage.LooksLikeStun(bytes));
        Assert.True(StunMessage.TryParse(bytes, out StunMessage? message, out string? error), error);
        Assert.Equal(expected.GetProperty("class").GetString() == "request" ? StunClass.Request : StunClass.SuccessResponse, message!.Class);
        Assert.Equal(StunMethod.Binding, message.Method);
        Assert.Equal(vector.GetProperty("header").GetProperty("transaction_id").GetString(), Convert.ToHexString(message.TransactionId), ignoreCase: true);

        if (expected.TryGetProperty("SOFTWARE", out JsonElement software))
        {
            Assert.Equal(software.GetString(), message.GetSoftware());
        }

        if (expected.TryGetProperty("USERNAME", out JsonElement username))
        {
            Assert.Equal(username.GetString(), message.GetUsername());
        }

        if (expected.TryGetProperty("XOR-MAPPED-ADDRESS", out JsonElement mapped))
        {
            var endPoint = new IPEndPoint(IPAddress.Parse(mapped.GetProperty("address").GetString()!), mapped.GetProperty("port").GetInt32());
            Assert.Equal(endPoint, message.GetXorMappedAddress());
        }

        if (expected.TryGetProperty("REALM", out JsonElement realm))
        {
            Assert.Equal(realm.GetString(), message.GetRealm());
            Assert.Equal(expected.GetProperty("NONCE").GetString(), message.GetNonce());
        }

        // PRIORITY (0x0024, an ICE attribute) is comprehension-required and unknown to a plain STUN agent: it is reported.
        Assert.Equal(name == "sample_request" ? new ushort[] { 0x0024 } : [], message.UnknownComprehensionRequired);

        byte[] key = credentials.GetProperty("kind").GetString() == "short-term"
            ? StunCredentials.ShortTermKey(credentials.GetProperty("password").GetString()!)
            : StunCredentials.LongTermKey(credentials.GetProperty("username").GetString()!, credentials.GetProperty("realm").GetString()!, credentials.GetProperty("password_before_saslprep").GetString()!);
        Assert.Equal(credentials.GetProperty("hmac_key_hex").GetString(), Convert.ToHexString(key), ignoreCase: true);
        Assert.True(message.VerifyMessageIntegrity(key));
        Assert.False(message.VerifyMessageIntegrity("wrong password"u8));
        Assert.Equal(!expected.TryGetProperty("fingerprint_present", out JsonElement fp) || fp.GetBoolean(), message.HasValidFingerprint());

        Assert.Equal(Convert.ToHexString(bytes), Convert.ToHexString(Reencode(message, key)));
    }

    [Fact]
    public void Rfc8489AppendixB1CorrectedVerifiesWithSha256AndUserHash()
    {
        JsonElement vector = Vector("rfc8489", "rfc8489_B1_long_term_sha256_userhash_errata6268");
        byte[] bytes = TestFiles.Hex(vector.GetProperty("hex").GetString()!);
        JsonElement credentials = vector.GetProperty("credentials");
        string username = credentials.GetProperty("username").GetString()!;
        string realm = credentials.GetProperty("realm").GetString()!;

        Assert.True(StunMessage.TryParse(bytes, out StunMessage? message, out string? error), error);
        Assert.True(message!.TryGetValue(StunAttributeType.UserHash, out ReadOnlySpan<byte> userHash));
        Assert.Equal(credentials.GetProperty("userhash_hex").GetString(), Convert.ToHexString(userHash), ignoreCase: true);
        Assert.Equal(Convert.ToHexString(StunCredentials.UserHash(username, realm)), Convert.ToHexString(userHash));
        Assert.Equal(realm, message.GetRealm());
        Assert.Equal(credentials.GetProperty("nonce").GetString(), message.GetNonce());
        Assert.Equal(StunConstants.PasswordAlgorithmSha256, message.GetPasswordAlgorithm());

        byte[] key = StunCredentials.LongTermKey(username, realm, credentials.GetProperty("password").GetString()!, StunConstants.PasswordAlgorithmSha256);
        Assert.Equal(credentials.GetProperty("hmac_key_hex").GetString(), Convert.ToHexString(key), ignoreCase: true);
        Assert.True(message.VerifyMessageIntegritySha256(key));
        Assert.False(message.VerifyMessageIntegritySha256(StunCredentials.LongTermKey(username, realm, "TheMatrIX")));   // the MD5 key
        Assert.Equal(Convert.ToHexString(bytes), Convert.ToHexString(Reencode(message, key)));
    }

    [Fact]
    public void Rfc8489AppendixB1AsPublishedIsRejected()
    {
        byte[] bytes = TestFiles.Hex(Vector("rfc8489", "rfc8489_B1_as_published").GetProperty("hex").GetString()!);

        Assert.False(StunMessage.LooksLikeStun(bytes));
        Assert.False(StunMessage.TryParse(bytes, out StunMessage? message, out string? error));
        Assert.Null(message);
        Assert.Contains("156", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("I\u00ADX", "IX")]        // RFC 4013 §3: soft hyphen mapped to nothing
    [InlineData("user", "user")]
    [InlineData("USER", "USER")]          // case is preserved
    [InlineData("\u00AA", "a")]           // NFKC
    [InlineData("\u2168", "IX")]          // NFKC
    [InlineData("a\u00A0b", "a b")]       // non-ASCII space mapped to space
    public void SaslPrepFollowsRfc4013Examples(string input, string expected) => Assert.Equal(expected, StunCredentials.SaslPrep(input));

    [Theory]
    [InlineData("\u0007")]                // RFC 4013 §3: prohibited character
    [InlineData("a\uE000b")]              // private use
    [InlineData("a\u200Eb")]              // left-to-right mark
    public void SaslPrepRefusesProhibitedCharacters(string input) =>
        Assert.Throws<ArgumentException>("value", () => StunCredentials.SaslPrep(input));

    internal static JsonElement Vector(string group, string name) =>
        s_file.Value.GetProperty(group).EnumerateArray().Single(v => v.GetProperty("name").GetString() == name);

    internal static IEnumerable<byte[]> AllValidVectors() =>
        s_file.Value.GetProperty("rfc5769").EnumerateArray()
            .Append(Vector("rfc8489", "rfc8489_B1_long_term_sha256_userhash_errata6268"))
            .Select(v => TestFiles.Hex(v.GetProperty("hex").GetString()!));

    /// <summary>Rebuilds a message from its parsed attributes, recomputing integrity and fingerprint with <paramref name="key"/>.</summary>
    private static byte[] Reencode(StunMessage message, byte[] key)
    {
        var builder = new StunMessageBuilder(message.Class, message.Method, message.TransactionId);
        foreach (StunAttribute attribute in message.Attributes)
        {
            switch (attribute.Type)
            {
                case StunAttributeType.MessageIntegrity: builder.AddMessageIntegrity(key); break;
                case StunAttributeType.MessageIntegritySha256: builder.AddMessageIntegritySha256(key); break;
                case StunAttributeType.Fingerprint: builder.AddFingerprint(); break;
                default: builder.Add(attribute.Type, message.ValueOf(attribute), message.PaddingOf(attribute)); break;
            }
        }

        return builder.ToArray();
    }
}
