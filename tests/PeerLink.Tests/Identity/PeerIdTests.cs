using System;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using PeerLink.Identity;
using Xunit;

namespace PeerLink.Tests.Identity;

public sealed class PeerIdTests
{
    // RFC 4648 §10 test vectors, lowercased and without padding.
    [Theory]
    [InlineData("", "")]
    [InlineData("f", "my")]
    [InlineData("fo", "mzxq")]
    [InlineData("foo", "mzxw6")]
    [InlineData("foob", "mzxw6yq")]
    [InlineData("fooba", "mzxw6ytb")]
    [InlineData("foobar", "mzxw6ytboi")]
    public void Base32MatchesRfc4648(string input, string expected)
    {
        byte[] data = Encoding.ASCII.GetBytes(input);
        Assert.Equal(expected, Base32.Encode(data));

        byte[] decoded = new byte[data.Length];
        Assert.Null(Base32.TryDecode(expected, decoded));
        Assert.Equal(data, decoded);
        Assert.Null(Base32.TryDecode(expected.ToUpperInvariant(), decoded));
        Assert.Equal(data, decoded);
    }

    [Fact]
    public void TextFormIs52LowercaseCharactersAndRoundTrips()
    {
        byte[] key = RandomNumberGenerator.GetBytes(32);
        var id = new PeerId(key);

        string text = id.ToString();

        Assert.Equal(PeerId.EncodedLength, text.Length);
        Assert.True(text.All(c => c is (>= 'a' and <= 'z') or (>= '2' and <= '7')), text);
        Assert.Equal(id, PeerId.Parse(text));
        Assert.Equal(id, PeerId.Parse(text.ToUpperInvariant()));
        Assert.Equal(key, id.ToArray());
        Assert.Equal(text[..10], id.ToFingerprint());
    }

    [Fact]
    public void ParseSaysWhatIsWrong()
    {
        string valid = new PeerId(RandomNumberGenerator.GetBytes(32)).ToString();

        Assert.Throws<ArgumentNullException>("s", () => PeerId.Parse((string)null!));
        Assert.Contains("52", Assert.Throws<FormatException>(() => PeerId.Parse(valid[..51])).Message, StringComparison.Ordinal);
        Assert.Contains("position 3", Assert.Throws<FormatException>(() => PeerId.Parse(valid[..3] + "1" + valid[4..])).Message, StringComparison.Ordinal);

        // The 52nd character carries 1 unused bit: a set unused bit is a non-canonical second spelling of the same key.
        char last = valid[51];
        char other = "abcdefghijklmnopqrstuvwxyz234567"[("abcdefghijklmnopqrstuvwxyz234567".IndexOf(last, StringComparison.Ordinal) ^ 1)];
        Assert.Contains("padding bits", Assert.Throws<FormatException>(() => PeerId.Parse(valid[..51] + other)).Message, StringComparison.Ordinal);

        Assert.False(PeerId.TryParse("not a peer id", out PeerId none));
        Assert.Equal(default, none);
        Assert.False(PeerId.TryParse((string?)null, out _));
    }

    [Fact]
    public void OrderingIsLexicographicOverTheKeyBytes()
    {
        var random = new Random(7);
        for (int i = 0; i < 500; i++)
        {
            byte[] a = new byte[32];
            byte[] b = new byte[32];
            random.NextBytes(a);
            random.NextBytes(b);
            if (i % 3 == 0)
            {
                a.AsSpan(0, 31).CopyTo(b);   // differ only in the last byte
            }

            int expected = Math.Sign(a.AsSpan().SequenceCompareTo(b));
            Assert.Equal(expected, Math.Sign(new PeerId(a).CompareTo(new PeerId(b))));
            Assert.Equal(expected == 0, new PeerId(a) == new PeerId(b));
            Assert.Equal(expected < 0, new PeerId(a) < new PeerId(b));
        }
    }

    [Fact]
    public void EqualityAndHashing()
    {
        byte[] key = RandomNumberGenerator.GetBytes(32);
        var a = new PeerId(key);
        var b = new PeerId(key.ToArray());
        key[31] ^= 1;
        var c = new PeerId(key);

        Assert.Equal(a, b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.NotEqual(a, c);
        Assert.True(a != c);
        Assert.False(a.Equals((object)"text"));
    }

    [Fact]
    public void WrongKeyLengthNamesTheArgument()
    {
        Assert.Throws<ArgumentException>("publicKey", () => new PeerId(new byte[31]));
        Assert.Throws<ArgumentException>("destination", () => new PeerId(new byte[32]).CopyTo(new byte[31]));
    }
}
