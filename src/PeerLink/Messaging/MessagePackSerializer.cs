using System;
using System.Buffers;
using PeerLink.Internal;

namespace PeerLink.Messaging;

/// <summary>
/// A type that writes and reads itself as MessagePack. No reflection is involved, so it works with trimming and AOT.
/// </summary>
/// <typeparam name="TSelf">The implementing type.</typeparam>
public interface IMessagePackSerializable<TSelf>
    where TSelf : IMessagePackSerializable<TSelf>
{
    /// <summary>Writes this value.</summary>
    /// <param name="writer">The writer; do not flush it.</param>
    void WriteTo(ref MessagePackWriter writer);

    /// <summary>Reads a value. Unknown map keys should be skipped (<see cref="MessagePackReader.Skip"/>), so that newer peers can talk to older ones.</summary>
    /// <param name="reader">The reader, positioned at the value.</param>
    static abstract TSelf ReadFrom(ref MessagePackReader reader);
}

/// <summary>Writes and reads values of a type that cannot implement <see cref="IMessagePackSerializable{TSelf}"/> itself.</summary>
/// <typeparam name="T">The type.</typeparam>
public interface IMessagePackFormatter<T>
{
    /// <summary>Writes <paramref name="value"/>.</summary>
    /// <param name="writer">The writer; do not flush it.</param>
    /// <param name="value">The value.</param>
    void Write(ref MessagePackWriter writer, T value);

    /// <summary>Reads a value.</summary>
    /// <param name="reader">The reader, positioned at the value.</param>
    T Read(ref MessagePackReader reader);
}

/// <summary>Serializes whole messages: one MessagePack value per call.</summary>
public static class MessagePackSerializer
{
    /// <summary>Writes <paramref name="value"/> to <paramref name="output"/>.</summary>
    /// <typeparam name="T">The message type.</typeparam>
    /// <param name="output">Where the bytes go.</param>
    /// <param name="value">The value.</param>
    public static void Serialize<T>(IBufferWriter<byte> output, T value)
        where T : IMessagePackSerializable<T>
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(value);
        var writer = new MessagePackWriter(output);
        value.WriteTo(ref writer);
        writer.Flush();
    }

    /// <summary>Writes <paramref name="value"/> with <paramref name="formatter"/>.</summary>
    /// <typeparam name="T">The value type.</typeparam>
    /// <param name="output">Where the bytes go.</param>
    /// <param name="value">The value.</param>
    /// <param name="formatter">The formatter for <typeparamref name="T"/>.</param>
    public static void Serialize<T>(IBufferWriter<byte> output, T value, IMessagePackFormatter<T> formatter)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(formatter);
        var writer = new MessagePackWriter(output);
        formatter.Write(ref writer, value);
        writer.Flush();
    }

    /// <summary>Writes <paramref name="value"/> into a new array.</summary>
    /// <typeparam name="T">The message type.</typeparam>
    /// <param name="value">The value.</param>
    public static byte[] SerializeToArray<T>(T value)
        where T : IMessagePackSerializable<T>
    {
        var buffer = new ArrayBufferWriter<byte>(64);
        Serialize(buffer, value);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Reads one value that must span all of <paramref name="data"/>.</summary>
    /// <typeparam name="T">The message type.</typeparam>
    /// <param name="data">Exactly one MessagePack value.</param>
    /// <param name="options">Limits; defaults when null.</param>
    /// <exception cref="PeerLinkException">The data is malformed, of another shape, or has bytes after the value.</exception>
    public static T Deserialize<T>(ReadOnlySequence<byte> data, MessagePackReaderOptions? options = null)
        where T : IMessagePackSerializable<T>
    {
        var reader = new MessagePackReader(data, options);
        T value = T.ReadFrom(ref reader);
        CheckEnd(ref reader);
        return value;
    }

    /// <summary>Reads one value that must span all of <paramref name="data"/>.</summary>
    /// <typeparam name="T">The message type.</typeparam>
    /// <param name="data">Exactly one MessagePack value.</param>
    /// <param name="options">Limits; defaults when null.</param>
    /// <exception cref="PeerLinkException">The data is malformed, of another shape, or has bytes after the value.</exception>
    public static T Deserialize<T>(ReadOnlyMemory<byte> data, MessagePackReaderOptions? options = null)
        where T : IMessagePackSerializable<T> => Deserialize<T>(new ReadOnlySequence<byte>(data), options);

    /// <summary>Reads one value with <paramref name="formatter"/>; the value must span all of <paramref name="data"/>.</summary>
    /// <typeparam name="T">The value type.</typeparam>
    /// <param name="data">Exactly one MessagePack value.</param>
    /// <param name="formatter">The formatter for <typeparamref name="T"/>.</param>
    /// <param name="options">Limits; defaults when null.</param>
    /// <exception cref="PeerLinkException">The data is malformed, of another shape, or has bytes after the value.</exception>
    public static T Deserialize<T>(ReadOnlySequence<byte> data, IMessagePackFormatter<T> formatter, MessagePackReaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(formatter);
        var reader = new MessagePackReader(data, options);
        T value = formatter.Read(ref reader);
        CheckEnd(ref reader);
        return value;
    }

    private static void CheckEnd(ref MessagePackReader reader)
    {
        if (!reader.End)
        {
            ThrowHelper.ThrowMessagePack($"{reader.Remaining} bytes follow the MessagePack value.");
        }
    }
}
