using System;
using Nerdbank.MessagePack;
using PolyType;

namespace PeerLink.Samples.Hello;

/// <summary>The serializer both sides use. A record with <c>[GenerateShape]</c> is serialized without reflection.</summary>
internal static class Wire
{
    public static readonly MessagePackSerializer Serializer = new();

    /// <summary>Reads a message; the library returns null for a nil payload, which is no message at all here.</summary>
    public static T Read<T>(ReadOnlyMemory<byte> bytes)
        where T : IShapeable<T> =>
        Serializer.Deserialize<T>(bytes) ?? throw new System.IO.InvalidDataException($"Expected a {typeof(T).Name}, got nil.");
}

/// <summary>The handshake payload each side sends: who it is and which version of the application it speaks.</summary>
/// <remarks>Serialized as a map by property name, so newer peers may add properties: older ones skip what they do not know.</remarks>
[GenerateShape]
internal sealed partial record Hello(string Device, int Version);

/// <summary>The sensor's event.</summary>
[GenerateShape]
internal sealed partial record MotionEvent(string Room, DateTimeOffset Time, int Strength);

/// <summary>The light's answer.</summary>
[GenerateShape]
internal sealed partial record LightState(bool On, int Brightness);
