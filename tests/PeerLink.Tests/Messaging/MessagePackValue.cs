using System;
using System.Buffers;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text.Json;
using PeerLink.Messaging;
using Xunit;

namespace PeerLink.Tests.Messaging;

/// <summary>Test helpers: decode any MessagePack value into plain objects, and compare with the test suite's JSON.</summary>
internal static class MessagePackValue
{
    public sealed record Ext(sbyte Type, byte[] Data);

    public static object? Read(ref MessagePackReader reader)
    {
        switch (reader.NextType)
        {
            case MessagePackType.Nil:
                reader.ReadNil();
                return null;
            case MessagePackType.Boolean:
                return reader.ReadBoolean();
            case MessagePackType.Integer:
                // Decide signedness from what fits: try as Int64 on a copy, fall back to UInt64.
                MessagePackReader probe = reader;
                try
                {
                    long value = probe.ReadInt64();
                    reader = probe;
                    return value;
                }
                catch (PeerLinkException)
                {
                    return reader.ReadUInt64();
                }

            case MessagePackType.Float:
                return reader.ReadDouble();
            case MessagePackType.String:
                return reader.ReadString();
            case MessagePackType.Binary:
                return reader.ReadBytes()!.Value.ToArray();
            case MessagePackType.Array:
            {
                int count = reader.ReadArrayHeader();
                reader.EnterNested();
                var list = new List<object?>(count);
                for (int i = 0; i < count; i++)
                {
                    list.Add(Read(ref reader));
                }

                reader.ExitNested();
                return list;
            }

            case MessagePackType.Map:
            {
                int count = reader.ReadMapHeader();
                reader.EnterNested();
                var map = new List<KeyValuePair<object?, object?>>(count);
                for (int i = 0; i < count; i++)
                {
                    object? key = Read(ref reader);
                    map.Add(new(key, Read(ref reader)));
                }

                reader.ExitNested();
                return map;
            }

            case MessagePackType.Extension:
            {
                MessagePackReader probe2 = reader;
                MessagePackExtensionHeader header = probe2.ReadExtensionHeader();
                if (header.TypeCode == -1)
                {
                    return reader.ReadTimestamp();
                }

                (sbyte type, ReadOnlySequence<byte> data) = reader.ReadExtension();
                return new Ext(type, data.ToArray());
            }

            default:
                reader.Skip();   // throws for 0xc1
                throw new InvalidOperationException("unreachable");
        }
    }

    public static object? Decode(ReadOnlySequence<byte> data, MessagePackReaderOptions? options = null)
    {
        var reader = new MessagePackReader(data, options);
        object? value = Read(ref reader);
        Assert.True(reader.End, "bytes left after the value");
        return value;
    }

    /// <summary>Asserts that <paramref name="actual"/> is the value the test suite describes with <paramref name="kind"/> and <paramref name="expected"/>.</summary>
    public static void AssertMatches(string kind, JsonElement expected, object? actual)
    {
        switch (kind)
        {
            case "nil":
                Assert.Null(actual);
                break;
            case "bool":
                Assert.Equal(expected.GetBoolean(), Assert.IsType<bool>(actual));
                break;
            case "binary":
                Assert.Equal(Hex(expected.GetString()!), Assert.IsType<byte[]>(actual));
                break;
            case "number":
                Assert.Equal(expected.GetDouble(), ToDouble(actual));
                break;
            case "bignum":
                string text = actual switch
                {
                    long l => l.ToString(CultureInfo.InvariantCulture),
                    ulong u => u.ToString(CultureInfo.InvariantCulture),
                    double d => ((decimal)d).ToString(CultureInfo.InvariantCulture),
                    _ => throw new InvalidOperationException($"not a number: {actual}"),
                };
                Assert.Equal(expected.GetString(), text);
                break;
            case "string":
                Assert.Equal(expected.GetString(), Assert.IsType<string>(actual));
                break;
            case "timestamp":
                var ts = Assert.IsType<MessagePackTimestamp>(actual);
                Assert.Equal(expected[0].GetInt64(), ts.Seconds);
                Assert.Equal(expected[1].GetUInt32(), ts.Nanoseconds);
                break;
            case "ext":
                var ext = Assert.IsType<Ext>(actual);
                Assert.Equal(expected[0].GetInt32(), ext.Type);
                Assert.Equal(Hex(expected[1].GetString()!), ext.Data);
                break;
            case "array":
                var list = Assert.IsType<List<object?>>(actual);
                JsonElement[] items = expected.EnumerateArray().ToArray();
                Assert.Equal(items.Length, list.Count);
                for (int i = 0; i < items.Length; i++)
                {
                    AssertMatches(KindOf(items[i]), items[i], list[i]);
                }

                break;
            case "map":
                var map = Assert.IsType<List<KeyValuePair<object?, object?>>>(actual);
                JsonProperty[] properties = expected.EnumerateObject().ToArray();
                Assert.Equal(properties.Length, map.Count);
                for (int i = 0; i < properties.Length; i++)
                {
                    Assert.Equal(properties[i].Name, map[i].Key);
                    AssertMatches(KindOf(properties[i].Value), properties[i].Value, map[i].Value);
                }

                break;
            default:
                throw new InvalidOperationException($"unknown kind {kind}");
        }
    }

    /// <summary>Writes the value the test suite describes.</summary>
    public static void Write(ref MessagePackWriter writer, string kind, JsonElement value)
    {
        switch (kind)
        {
            case "nil": writer.WriteNil(); break;
            case "bool": writer.Write(value.GetBoolean()); break;
            case "binary": writer.WriteBinary(Hex(value.GetString()!)); break;
            case "string": writer.Write(value.GetString()); break;
            case "number":
                if (value.TryGetInt64(out long l))
                {
                    writer.Write(l);
                }
                else
                {
                    writer.Write(value.GetDouble());
                }

                break;
            case "bignum":
                string s = value.GetString()!;
                if (long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long big))
                {
                    writer.Write(big);
                }
                else
                {
                    writer.Write(ulong.Parse(s, CultureInfo.InvariantCulture));
                }

                break;
            case "timestamp": writer.Write(new MessagePackTimestamp(value[0].GetInt64(), value[1].GetUInt32())); break;
            case "ext": writer.WriteExtension((sbyte)value[0].GetInt32(), Hex(value[1].GetString()!)); break;
            case "array":
                writer.WriteArrayHeader(value.GetArrayLength());
                foreach (JsonElement item in value.EnumerateArray())
                {
                    Write(ref writer, KindOf(item), item);
                }

                break;
            case "map":
                JsonProperty[] properties = value.EnumerateObject().ToArray();
                writer.WriteMapHeader(properties.Length);
                foreach (JsonProperty property in properties)
                {
                    writer.Write(property.Name);
                    Write(ref writer, KindOf(property.Value), property.Value);
                }

                break;
            default:
                throw new InvalidOperationException($"unknown kind {kind}");
        }
    }

    /// <summary>The kind of a nested JSON value inside an array or map of the test suite.</summary>
    public static string KindOf(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Null => "nil",
        JsonValueKind.True or JsonValueKind.False => "bool",
        JsonValueKind.Number => "number",
        JsonValueKind.String => "string",
        JsonValueKind.Array => "array",
        JsonValueKind.Object => "map",
        _ => throw new InvalidOperationException(element.ValueKind.ToString()),
    };

    public static byte[] Hex(string dashed) => dashed.Length == 0 ? [] : Convert.FromHexString(dashed.Replace("-", string.Empty, StringComparison.Ordinal));

    private static double ToDouble(object? value) => value switch
    {
        long l => l,
        ulong u => u,
        double d => d,
        _ => throw new InvalidOperationException($"not a number: {value}"),
    };
}
