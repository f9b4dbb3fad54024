using System;
using PeerLink.Messaging;

namespace PeerLink.Samples.Hello;

/// <summary>The handshake payload each side sends: who it is and which version of the application it speaks.</summary>
internal sealed record Hello(string Device, int Version) : IMessagePackSerializable<Hello>
{
    public void WriteTo(ref MessagePackWriter writer)
    {
        writer.WriteMapHeader(2);
        writer.Write("device");
        writer.Write(Device);
        writer.Write("v");
        writer.Write(Version);
    }

    public static Hello ReadFrom(ref MessagePackReader reader)
    {
        string device = "?";
        int version = 0;
        for (int count = reader.ReadMapHeader(); count > 0; count--)
        {
            switch (reader.ReadString())
            {
                case "device": device = reader.ReadString() ?? "?"; break;
                case "v": version = reader.ReadInt32(); break;
                default: reader.Skip(); break;   // newer peers may send more: ignore what we do not know
            }
        }

        return new Hello(device, version);
    }
}

/// <summary>The sensor's event, as a positional array: compact for a message sent often.</summary>
internal sealed record MotionEvent(string Room, DateTimeOffset Time, int Strength) : IMessagePackSerializable<MotionEvent>
{
    public void WriteTo(ref MessagePackWriter writer)
    {
        writer.WriteArrayHeader(3);
        writer.Write(Room);
        writer.Write(Time);
        writer.Write(Strength);
    }

    public static MotionEvent ReadFrom(ref MessagePackReader reader)
    {
        int count = reader.ReadArrayHeader();
        var value = new MotionEvent(reader.ReadString() ?? "?", reader.ReadTimestamp().ToDateTimeOffset(), reader.ReadInt32());
        for (int i = 3; i < count; i++)
        {
            reader.Skip();
        }

        return value;
    }
}

/// <summary>The light's answer.</summary>
internal sealed record LightState(bool On, int Brightness) : IMessagePackSerializable<LightState>
{
    public void WriteTo(ref MessagePackWriter writer)
    {
        writer.WriteArrayHeader(2);
        writer.Write(On);
        writer.Write(Brightness);
    }

    public static LightState ReadFrom(ref MessagePackReader reader)
    {
        int count = reader.ReadArrayHeader();
        var value = new LightState(reader.ReadBoolean(), reader.ReadInt32());
        for (int i = 2; i < count; i++)
        {
            reader.Skip();
        }

        return value;
    }
}
