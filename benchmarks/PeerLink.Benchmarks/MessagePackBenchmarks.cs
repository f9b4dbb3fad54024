using System;
using System.Buffers;
using BenchmarkDotNet.Attributes;
using PeerLink.Messaging;

namespace PeerLink.Benchmarks;

/// <summary>Write and read of a typical small telemetry record (a map of six fields, 70-odd bytes).</summary>
public class MessagePackBenchmarks
{
    private readonly ArrayBufferWriter<byte> _output = new(256);
    private readonly Telemetry _record = new("living-room/motion-1", new DateTimeOffset(2026, 11, 21, 10, 0, 0, TimeSpan.Zero), 21.5, 48, true, 3650);
    private ReadOnlySequence<byte> _encoded;

    [GlobalSetup]
    public void Setup()
    {
        MessagePackSerializer.Serialize(_output, _record);
        _encoded = new ReadOnlySequence<byte>(_output.WrittenMemory.ToArray());
    }

    [Benchmark]
    public int Write()
    {
        _output.ResetWrittenCount();
        MessagePackSerializer.Serialize(_output, _record);
        return _output.WrittenCount;
    }

    [Benchmark]
    public double Read() => MessagePackSerializer.Deserialize<Telemetry>(_encoded).TemperatureCelsius;

    /// <summary>A device's periodic report. A struct, so that reading it allocates nothing but its string.</summary>
    public readonly record struct Telemetry(string Sensor, DateTimeOffset Time, double TemperatureCelsius, int HumidityPercent, bool Motion, int BatteryMillivolts)
        : IMessagePackSerializable<Telemetry>
    {
        public void WriteTo(ref MessagePackWriter writer)
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

        public static Telemetry ReadFrom(ref MessagePackReader reader)
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
