using System;
using System.Buffers;
using BenchmarkDotNet.Attributes;
using PeerLink.Messaging;
using PolyType;
using PolyType.Abstractions;

namespace PeerLink.Benchmarks;

/// <summary>
/// Write and read of a typical small telemetry record (a map of six fields, 70-odd bytes): the typed API sessions use
/// (Nerdbank.MessagePack on a generated shape, through PeerLink's strict wrapper) against the hand-written codec that
/// PeerLink used before (its reader and writer, now internal, written field by field). Baseline: the old codec.
/// </summary>
public partial class MessagePackBenchmarks
{
    private static readonly ITypeShape<Telemetry> Shape = TypeShapeResolver.Resolve<Telemetry>();
    private readonly ArrayBufferWriter<byte> _output = new(256);
    private readonly Telemetry _record = new("living-room/motion-1", new DateTimeOffset(2026, 11, 21, 10, 0, 0, TimeSpan.Zero), 21.5, 48, true, 3650);
    private ReadOnlyMemory<byte> _handWritten;
    private ReadOnlyMemory<byte> _typed;

    [GlobalSetup]
    public void Setup()
    {
        WriteByHand();
        _handWritten = _output.WrittenMemory.ToArray();
        WriteTyped();
        _typed = _output.WrittenMemory.ToArray();
    }

    [BenchmarkCategory("Write"), Benchmark(Baseline = true)]
    public int WriteByHand()
    {
        _output.ResetWrittenCount();
        var writer = new MessagePackWriter(_output);
        _record.WriteTo(ref writer);
        writer.Flush();
        return _output.WrittenCount;
    }

    [BenchmarkCategory("Write"), Benchmark]
    public int WriteTyped()
    {
        _output.ResetWrittenCount();
        TypedMessages.Serialize(TypedMessages.DefaultSerializer, _output, _record, Shape);
        return _output.WrittenCount;
    }

    [BenchmarkCategory("Read"), Benchmark(Baseline = true)]
    public double ReadByHand()
    {
        var reader = new MessagePackReader(_handWritten);
        return Telemetry.ReadFrom(ref reader).TemperatureCelsius;
    }

    [BenchmarkCategory("Read"), Benchmark]
    public double ReadTyped() => TypedMessages.Deserialize(TypedMessages.DefaultSerializer, _typed, Shape).TemperatureCelsius;

    /// <summary>A device's periodic report. A struct, so that reading it allocates nothing but its string.</summary>
    [GenerateShape]
    public readonly partial record struct Telemetry(string Sensor, DateTimeOffset Time, double TemperatureCelsius, int HumidityPercent, bool Motion, int BatteryMillivolts)
    {
        internal void WriteTo(ref MessagePackWriter writer)
        {
            writer.WriteMapHeader(6);
            writer.Write("sensor");
            writer.Write(Sensor);
            writer.Write("t");
            writer.Write(Time);
            writer.Write("temp");
            writer.Write(TemperatureCelsius);
            writer.Write("hum");
            writer.Write(HumidityPercent);
            writer.Write("motion");
            writer.Write(Motion);
            writer.Write("batt");
            writer.Write(BatteryMillivolts);
        }

        internal static Telemetry ReadFrom(ref MessagePackReader reader)
        {
            string sensor = string.Empty;
            DateTimeOffset time = default;
            double temperature = 0;
            int humidity = 0;
            bool motion = false;
            int battery = 0;
            for (int count = reader.ReadMapHeader(); count > 0; count--)
            {
                ReadOnlySequence<byte> key = reader.ReadStringSequence();
                ReadOnlySpan<byte> name = key.IsSingleSegment ? key.FirstSpan : key.ToArray();
                if (name.SequenceEqual("sensor"u8)) { sensor = reader.ReadString() ?? string.Empty; }
                else if (name.SequenceEqual("t"u8)) { time = reader.ReadTimestamp().ToDateTimeOffset(); }
                else if (name.SequenceEqual("temp"u8)) { temperature = reader.ReadDouble(); }
                else if (name.SequenceEqual("hum"u8)) { humidity = reader.ReadInt32(); }
                else if (name.SequenceEqual("motion"u8)) { motion = reader.ReadBoolean(); }
                else if (name.SequenceEqual("batt"u8)) { battery = reader.ReadInt32(); }
                else { reader.Skip(); }
            }

            return new Telemetry(sensor, time, temperature, humidity, motion, battery);
        }
    }
}
