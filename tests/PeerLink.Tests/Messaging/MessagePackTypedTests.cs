using System;
using System.Buffers;
using PeerLink.Messaging;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Messaging;

/// <summary>The typed layer: message types that write and read themselves, and formatters for types one does not own.</summary>
public sealed class MessagePackTypedTests
{
    [Fact]
    public void ARecordRoundTripsOnAnySegmentation()
    {
        var original = new Reading("porch", -12.25, [1, 2, 3], new DateTimeOffset(2026, 11, 21, 9, 30, 15, 123, TimeSpan.Zero));
        byte[] bytes = MessagePackSerializer.SerializeToArray(original);

        foreach (int segmentSize in TestSequence.SegmentSizes)
        {
            Reading copy = MessagePackSerializer.Deserialize<Reading>(TestSequence.Create(bytes, segmentSize));
            Assert.Equal(original.Sensor, copy.Sensor);
            Assert.Equal(original.Value, copy.Value);
            Assert.Equal(original.Raw, copy.Raw);
            Assert.Equal(original.Time, copy.Time);
        }
    }

    [Fact]
    public void UnknownKeysFromANewerPeerAreSkipped()
    {
        var output = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(output);
        writer.WriteMapHeader(5);
        writer.Write("sensor");
        writer.Write("attic");
        writer.Write("added-in-v2");
        writer.WriteArrayHeader(2);
        writer.WriteMapHeader(1);
        writer.Write("deep");
        writer.WriteBinary(new byte[300]);
        writer.Write(new MessagePackTimestamp(1, 2));
        writer.Write("value");
        writer.Write(3.5);
        writer.Write("raw");
        writer.WriteNil();
        writer.Write("t");
        writer.Write(new MessagePackTimestamp(0, 0));
        writer.Flush();

        Reading reading = MessagePackSerializer.Deserialize<Reading>(output.WrittenMemory);

        Assert.Equal("attic", reading.Sensor);
        Assert.Equal(3.5, reading.Value);
        Assert.Null(reading.Raw);
        Assert.Equal(DateTimeOffset.UnixEpoch, reading.Time);
    }

    [Fact]
    public void BytesAfterTheValueAreRejected()
    {
        byte[] bytes = [.. MessagePackSerializer.SerializeToArray(new Reading("x", 1, null, DateTimeOffset.UnixEpoch)), 0xc0];
        var e = Assert.Throws<PeerLinkException>(() => MessagePackSerializer.Deserialize<Reading>(bytes.AsMemory()));
        Assert.Equal(PeerLinkError.InvalidMessagePack, e.Error);
        Assert.Contains("1 bytes follow", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AWrongShapeIsAClearError()
    {
        byte[] notAMap = [0x93, 0x01, 0x02, 0x03];
        var e = Assert.Throws<PeerLinkException>(() => MessagePackSerializer.Deserialize<Reading>(notAMap.AsMemory()));
        Assert.Equal(PeerLinkError.InvalidMessagePack, e.Error);
        Assert.Contains("map", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFormatterServesATypeThatCannotImplementTheInterface()
    {
        var output = new ArrayBufferWriter<byte>();
        var formatter = new VersionFormatter();
        MessagePackSerializer.Serialize(output, new Version(1, 2, 3), formatter);

        Assert.Equal([0x93, 0x01, 0x02, 0x03], output.WrittenSpan.ToArray());
        Assert.Equal(new Version(1, 2, 3), MessagePackSerializer.Deserialize(new ReadOnlySequence<byte>(output.WrittenMemory), formatter));
    }

    [Fact]
    public void WritingAllocatesNothing()
    {
        var output = new ArrayBufferWriter<byte>(1024);
        var reading = new Reading("porch", 1.5, null, DateTimeOffset.UnixEpoch);
        MessagePackSerializer.Serialize(output, reading);   // warm up

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            output.ResetWrittenCount();
            MessagePackSerializer.Serialize(output, reading);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void NullArgumentsAreNamed()
    {
        Assert.Throws<ArgumentNullException>("output", () => MessagePackSerializer.Serialize<Reading>(null!, new Reading("x", 1, null, default)));
        Assert.Throws<ArgumentNullException>("formatter", () => MessagePackSerializer.Deserialize<Version>(ReadOnlySequence<byte>.Empty, null!));
        Assert.Throws<ArgumentNullException>("output", () => new MessagePackWriter(null!));
    }

    private sealed record Reading(string Sensor, double Value, byte[]? Raw, DateTimeOffset Time) : IMessagePackSerializable<Reading>
    {
        public void WriteTo(ref MessagePackWriter writer)
        {
            writer.WriteMapHeader(4);
            writer.Write("sensor");
            writer.Write(Sensor);
            writer.Write("value");
            writer.Write(Value);
            writer.Write("raw");
            if (Raw is null)
            {
                writer.WriteNil();
            }
            else
            {
                writer.WriteBinary(Raw);
            }

            writer.Write("t");
            writer.Write(Time);
        }

        public static Reading ReadFrom(ref MessagePackReader reader)
        {
            string sensor = string.Empty;
            double value = 0;
            byte[]? raw = null;
            DateTimeOffset time = default;
            for (int count = reader.ReadMapHeader(); count > 0; count--)
            {
                switch (reader.ReadString())
                {
                    case "sensor": sensor = reader.ReadString() ?? string.Empty; break;
                    case "value": value = reader.ReadDouble(); break;
                    case "raw": raw = reader.ReadBytes()?.ToArray(); break;
                    case "t": time = reader.ReadTimestamp().ToDateTimeOffset(); break;
                    default: reader.Skip(); break;
                }
            }

            return new Reading(sensor, value, raw, time);
        }
    }

    private sealed class VersionFormatter : IMessagePackFormatter<Version>
    {
        public void Write(ref MessagePackWriter writer, Version value)
        {
            writer.WriteArrayHeader(3);
            writer.Write(value.Major);
            writer.Write(value.Minor);
            writer.Write(value.Build);
        }

        public Version Read(ref MessagePackReader reader)
        {
            Assert.Equal(3, reader.ReadArrayHeader());
            return new Version(reader.ReadInt32(), reader.ReadInt32(), reader.ReadInt32());
        }
    }
}
