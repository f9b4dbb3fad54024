using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using PeerLink.Messaging;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Messaging;

/// <summary>
/// msgpack-test-suite (kawanet): each of its 233 encodings decodes to its value, fed whole, in 3-byte segments and a byte
/// at a time; and for each of its 85 values the writer's output is one of the allowed encodings.
/// </summary>
public sealed class MessagePackConformanceTests
{
    private static readonly Lazy<Dictionary<string, JsonElement[]>> s_suite = new(() =>
    {
        using JsonDocument document = TestFiles.Json("msgpack/msgpack-test-suite.json");
        return document.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.EnumerateArray().Select(c => c.Clone()).ToArray());
    });

    public static TheoryData<string, int, int, string> Encodings()
    {
        var data = new TheoryData<string, int, int, string>();
        foreach ((string group, JsonElement[] cases) in s_suite.Value)
        {
            for (int i = 0; i < cases.Length; i++)
            {
                string[] encodings = cases[i].GetProperty("msgpack").EnumerateArray().Select(e => e.GetString()!).ToArray();
                for (int j = 0; j < encodings.Length; j++)
                {
                    data.Add(group, i, j, encodings[j]);
                }
            }
        }

        return data;
    }

    public static TheoryData<string, int> Values()
    {
        var data = new TheoryData<string, int>();
        foreach ((string group, JsonElement[] cases) in s_suite.Value)
        {
            for (int i = 0; i < cases.Length; i++)
            {
                data.Add(group, i);
            }
        }

        return data;
    }

    [Fact]
    public void TheSuiteHas233EncodingsOf85Values()
    {
        Assert.Equal(233, Encodings().Count());
        Assert.Equal(85, Values().Count());
    }

    [Theory]
    [MemberData(nameof(Encodings))]
    public void EncodingDecodesToItsValue(string group, int index, int encodingIndex, string encoding)
    {
        (string kind, JsonElement expected) = ValueOf(s_suite.Value[group][index]);
        byte[] bytes = MessagePackValue.Hex(encoding);
        Assert.True(encodingIndex >= 0);

        foreach (int segmentSize in TestSequence.SegmentSizes)
        {
            object? actual = MessagePackValue.Decode(TestSequence.Create(bytes, segmentSize));
            MessagePackValue.AssertMatches(kind, expected, actual);

            // The generic skipper agrees on where the value ends.
            var reader = new MessagePackReader(TestSequence.Create(bytes, segmentSize));
            Assert.Equal(bytes.Length, reader.ReadRaw().Length);
            Assert.True(reader.End);
        }
    }

    [Theory]
    [MemberData(nameof(Values))]
    public void WriterProducesAnAllowedEncoding(string group, int index)
    {
        JsonElement testCase = s_suite.Value[group][index];
        (string kind, JsonElement value) = ValueOf(testCase);
        string[] allowed = testCase.GetProperty("msgpack").EnumerateArray().Select(e => e.GetString()!.ToUpperInvariant()).ToArray();

        var output = new ArrayBufferWriter<byte>(1);   // tiny initial buffer: the writer must cope with growth
        var writer = new MessagePackWriter(output);
        MessagePackValue.Write(ref writer, kind, value);
        writer.Flush();

        string written = BitConverter.ToString(output.WrittenSpan.ToArray());
        Assert.Contains(written, allowed);
    }

    private static (string Kind, JsonElement Value) ValueOf(JsonElement testCase)
    {
        // Prefer the exact "bignum" text over "number" when a case has both.
        if (testCase.TryGetProperty("bignum", out JsonElement bignum))
        {
            return ("bignum", bignum);
        }

        JsonProperty property = testCase.EnumerateObject().First(p => p.Name != "msgpack");
        return (property.Name, property.Value);
    }
}
