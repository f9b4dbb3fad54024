// The stream framing of docs/protocol.md §2, one codec for the handshake and the session: every Noise message, handshake
// or transport, travels as length:u16be followed by that many bytes (at most 65535, Noise's own limit).
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;

namespace PeerLink.Sessions.Framing;

/// <summary>Reads and writes length-prefixed Noise messages on a byte stream. Reading never copies; writing never allocates.</summary>
internal static class NoiseFrame
{
    /// <summary>The size of the length prefix.</summary>
    public const int PrefixSize = 2;

    /// <summary>The largest Noise message (tag included).</summary>
    public const int MaxLength = ushort.MaxValue;

    /// <summary>
    /// Takes one whole frame from the front of <paramref name="buffer"/>: on success <paramref name="message"/> is the Noise
    /// message (a slice of the input, possibly across segments) and <paramref name="buffer"/> is what follows it. Returns
    /// false, and leaves <paramref name="buffer"/> as it was, while the frame is incomplete.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> message)
    {
        message = default;
        if (buffer.Length < PrefixSize)
        {
            return false;
        }

        int length = PeekLength(buffer);
        if (buffer.Length < PrefixSize + length)
        {
            return false;
        }

        message = buffer.Slice(PrefixSize, length);
        buffer = buffer.Slice(message.End);
        return true;
    }

    /// <summary>The length in the prefix at the start of <paramref name="buffer"/> (which holds at least the prefix).</summary>
    public static int PeekLength(in ReadOnlySequence<byte> buffer)
    {
        ReadOnlySpan<byte> first = buffer.FirstSpan;
        if (first.Length >= PrefixSize)
        {
            return BinaryPrimitives.ReadUInt16BigEndian(first);
        }

        Span<byte> prefix = stackalloc byte[PrefixSize];
        buffer.Slice(0, PrefixSize).CopyTo(prefix);
        return BinaryPrimitives.ReadUInt16BigEndian(prefix);
    }

    /// <summary>
    /// Writes the prefix of a <paramref name="length"/>-byte message into <paramref name="output"/> and returns the space
    /// for the message itself; fill it, then call <see cref="Commit"/> with the same length.
    /// </summary>
    public static Span<byte> Begin(PipeWriter output, int length)
    {
        if ((uint)length > MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"A Noise message is at most {MaxLength} bytes.");
        }

        Span<byte> destination = output.GetSpan(PrefixSize + length);
        BinaryPrimitives.WriteUInt16BigEndian(destination, (ushort)length);
        return destination.Slice(PrefixSize, length);
    }

    /// <summary>Commits a frame begun with <see cref="Begin"/>.</summary>
    public static void Commit(PipeWriter output, int length) => output.Advance(PrefixSize + length);

    /// <summary>Writes one whole frame.</summary>
    public static void Write(PipeWriter output, ReadOnlySpan<byte> message)
    {
        message.CopyTo(Begin(output, message.Length));
        Commit(output, message.Length);
    }
}
