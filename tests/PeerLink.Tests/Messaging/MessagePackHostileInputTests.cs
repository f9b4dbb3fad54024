using System;
using System.Buffers;
using System.Linq;
using PeerLink.Messaging;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Messaging;

/// <summary>Malformed and hostile MessagePack: a clear <see cref="PeerLinkException"/>, never a crash, a hang or a huge allocation.</summary>
public sealed class MessagePackHostileInputTests
{
    /// <summary>A value that uses most of the format, to cut short at every position.</summary>
    private static byte[] RichValue()
    {
        var output = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(output);
        writer.WriteMapHeader(9);
        writer.Write("int");
        writer.Write(-123456789012L);
        writer.Write("uint");
        writer.Write(ulong.MaxValue);
        writer.Write("f32");
        writer.Write(1.5f);
        writer.Write("f64");
        writer.Write(Math.PI);
        writer.Write("text");
        writer.Write(new string('é', 300));
        writer.Write("bin");
        writer.WriteBinary(Enumerable.Range(0, 70000).Select(i => unchecked((byte)i)).ToArray());
        writer.Write("list");
        writer.WriteArrayHeader(20);
        for (int i = 0; i < 20; i++)
        {
            writer.Write(i % 2 == 0);
        }

        writer.Write("ts");
        writer.Write(new MessagePackTimestamp(-5, 7));
        writer.Write("ext");
        writer.WriteExtension(42, new byte[300]);
        writer.Flush();
        return output.WrittenSpan.ToArray();
    }

    [Fact]
    public void TheRichValueRoundTrips()
    {
        byte[] data = RichValue();
        foreach (int segmentSize in TestSequence.SegmentSizes)
        {
            var reader = new MessagePackReader(TestSequence.Create(data, segmentSize));
            Assert.Equal(9, reader.ReadMapHeader());
            Assert.Equal("int", reader.ReadString());
            Assert.Equal(-123456789012L, reader.ReadInt64());
            Assert.Equal("uint", reader.ReadString());
            Assert.Equal(ulong.MaxValue, reader.ReadUInt64());
            Assert.Equal("f32", reader.ReadString());
            Assert.Equal(1.5f, reader.ReadSingle());
            Assert.Equal("f64", reader.ReadString());
            Assert.Equal(Math.PI, reader.ReadDouble());
            Assert.Equal("text", reader.ReadString());
            Assert.Equal(new string('é', 300), reader.ReadString());
            Assert.Equal("bin", reader.ReadString());
            Assert.Equal(Enumerable.Range(0, 70000).Select(i => unchecked((byte)i)).ToArray(), reader.ReadBytes()!.Value.ToArray());
            Assert.Equal("list", reader.ReadString());
            Assert.Equal(20, reader.ReadArrayHeader());
            for (int i = 0; i < 20; i++)
            {
                Assert.Equal(i % 2 == 0, reader.ReadBoolean());
            }

            Assert.Equal("ts", reader.ReadString());
            Assert.Equal(new MessagePackTimestamp(-5, 7), reader.ReadTimestamp());
            Assert.Equal("ext", reader.ReadString());
            (sbyte type, ReadOnlySequence<byte> ext) = reader.ReadExtension();
            Assert.Equal(42, type);
            Assert.Equal(300, ext.Length);
            Assert.True(reader.End);
        }
    }

    [Fact]
    public void TruncationAnywhereIsAClearError()
    {
        byte[] data = RichValue();

        // Every cut in the small fields, and a sample of cuts through the large binary.
        var cuts = Enumerable.Range(0, data.Length).Where(i => i < 2000 || i > data.Length - 2000 || i % 997 == 0);
        foreach (int cut in cuts)
        {
            foreach (int segmentSize in new[] { 1, 4096 })
            {
                if (segmentSize == 1 && cut > 4000 && cut < data.Length - 2000)
                {
                    continue;   // byte-at-a-time through 70 KB of binary adds time, not coverage
                }

                ReadOnlySequence<byte> input = TestSequence.Create(data.AsSpan(0, cut), segmentSize);
                var e = Assert.Throws<PeerLinkException>(() => MessagePackValue.Decode(input));
                Assert.Equal(PeerLinkError.InvalidMessagePack, e.Error);

                var skipper = new MessagePackReader(input);
                bool threw = false;
                try
                {
                    skipper.Skip();
                }
                catch (PeerLinkException ex) when (ex.Error == PeerLinkError.InvalidMessagePack)
                {
                    threw = true;
                }

                Assert.True(threw, $"Skip accepted data cut at {cut}");
            }
        }
    }

    [Theory]
    [InlineData("db-ff-ff-ff-ff-41")]            // str32 claiming 4 GiB
    [InlineData("da-ff-ff-41")]                  // str16 claiming 65535 bytes
    [InlineData("c6-7f-ff-ff-ff-00")]            // bin32 claiming 2 GiB
    [InlineData("c9-ff-ff-ff-ff-01-00")]         // ext32 claiming 4 GiB
    [InlineData("dd-ff-ff-ff-ff-c0")]            // array32 claiming 4 billion elements
    [InlineData("df-7f-ff-ff-ff-c0-c0")]         // map32 claiming 2 billion entries
    [InlineData("dc-ff-ff")]                     // array16 with no elements at all
    [InlineData("c1")]                           // reserved code
    [InlineData("a2-c3-28")]                     // invalid UTF-8
    [InlineData("d7-ff-ff-ff-ff-ff-00-00-00-00")] // timestamp64 with nanoseconds over 999999999
    [InlineData("c7-0c-ff-40-00-00-00-00-00-00-00-00-00-00-00")] // timestamp96 with nanoseconds over 999999999
    [InlineData("c7-05-ff-00-00-00-00-00")]      // timestamp with a 5-byte body
    public void LyingOrInvalidDataIsRejectedWithoutLargeAllocations(string hex)
    {
        byte[] data = MessagePackValue.Hex(hex);
        foreach (int segmentSize in TestSequence.SegmentSizes)
        {
            ReadOnlySequence<byte> input = TestSequence.Create(data, segmentSize);
            long before = GC.GetAllocatedBytesForCurrentThread();
            var e = Assert.Throws<PeerLinkException>(() => MessagePackValue.Decode(input));
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

            Assert.Equal(PeerLinkError.InvalidMessagePack, e.Error);
            Assert.True(allocated < 64 * 1024, $"decoding {hex} allocated {allocated} bytes");
        }
    }

    [Fact]
    public void DeepNestingStopsAtTheLimitWithoutStackOverflow()
    {
        byte[] deep = Enumerable.Repeat((byte)0x91, 1_000_000).Append((byte)0xc0).ToArray();   // [[[[…nil…]]]]
        var input = new ReadOnlySequence<byte>(deep);

        var skip = Assert.Throws<PeerLinkException>(() => new MessagePackReader(input).Skip());
        Assert.Equal(PeerLinkError.InvalidMessagePack, skip.Error);
        Assert.Contains("64", skip.Message, StringComparison.Ordinal);

        var decode = Assert.Throws<PeerLinkException>(() => MessagePackValue.Decode(input));
        Assert.Equal(PeerLinkError.InvalidMessagePack, decode.Error);
    }

    [Fact]
    public void TheDepthLimitIsConfigurable()
    {
        var options = new MessagePackReaderOptions { MaxDepth = 3 };
        byte[] three = [0x91, 0x91, 0x91, 0xc0];
        byte[] four = [0x91, 0x91, 0x91, 0x91, 0xc0];

        var ok = new MessagePackReader(new ReadOnlySequence<byte>(three), options);
        ok.Skip();
        Assert.True(ok.End);
        Assert.Throws<PeerLinkException>(() => new MessagePackReader(new ReadOnlySequence<byte>(four), options).Skip());
        Assert.Throws<ArgumentOutOfRangeException>("MaxDepth", () => new MessagePackReaderOptions { MaxDepth = 0 });
    }

    [Fact]
    public void RandomBytesNeverEscapeAsAnotherException()
    {
        var random = new Random(20261121);
        byte[] buffer = new byte[64];
        for (int i = 0; i < 20_000; i++)
        {
            int length = random.Next(1, buffer.Length);
            random.NextBytes(buffer.AsSpan(0, length));
            var input = TestSequence.Create(buffer.AsSpan(0, length), 1 + (i % 7));
            try
            {
                var reader = new MessagePackReader(input);
                while (!reader.End)
                {
                    MessagePackValue.Read(ref reader);
                }
            }
            catch (PeerLinkException e)
            {
                Assert.Equal(PeerLinkError.InvalidMessagePack, e.Error);
            }
        }
    }

    [Fact]
    public void ReadingTheWrongTypeSaysWhatWasFound()
    {
        var reader = new MessagePackReader(new ReadOnlySequence<byte>(new byte[] { 0xa1, 0x61 }));
        PeerLinkException? e = null;
        try
        {
            reader.ReadInt64();
        }
        catch (PeerLinkException caught)
        {
            e = caught;
        }

        Assert.NotNull(e);
        Assert.Equal(PeerLinkError.InvalidMessagePack, e.Error);
        Assert.Contains("String", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("cf-ff-ff-ff-ff-ff-ff-ff-ff", "Int64")]   // uint64 max into Int64
    [InlineData("ce-ff-ff-ff-ff", "Int32")]               // 4294967295 into Int32
    [InlineData("ff", "UInt64")]                          // -1 into UInt64
    public void IntegersThatDoNotFitAreRejected(string hex, string target)
    {
        byte[] data = MessagePackValue.Hex(hex);
        var e = Assert.Throws<PeerLinkException>(() =>
        {
            var reader = new MessagePackReader(new ReadOnlySequence<byte>(data));
            _ = target switch
            {
                "Int64" => reader.ReadInt64(),
                "Int32" => reader.ReadInt32(),
                _ => (long)reader.ReadUInt64(),
            };
        });
        Assert.Equal(PeerLinkError.InvalidMessagePack, e.Error);
    }
}
