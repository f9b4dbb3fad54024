using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO;
using System.IO.Pipelines;
using System.Threading.Tasks;

namespace PeerLink.Samples.Hello;

/// <summary>The stream framing of PeerLink's wire format: length:u16be followed by one Noise message.</summary>
internal static class Frames
{
    public static async ValueTask WriteAsync(PipeWriter output, ReadOnlyMemory<byte> message)
    {
        Memory<byte> memory = output.GetMemory(2 + message.Length);
        BinaryPrimitives.WriteUInt16BigEndian(memory.Span, checked((ushort)message.Length));
        message.CopyTo(memory[2..]);
        output.Advance(2 + message.Length);
        await output.FlushAsync();
    }

    public static async ValueTask<byte[]> ReadAsync(PipeReader input) =>
        await TryReadAsync(input) ?? throw new EndOfStreamException("The peer closed the stream.");

    public static async ValueTask<byte[]?> TryReadAsync(PipeReader input)
    {
        while (true)
        {
            ReadResult result = await input.ReadAsync();
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (TryReadLength(buffer, out int length))
            {
                if (buffer.Length >= 2 + length)
                {
                    byte[] frame = buffer.Slice(2, length).ToArray();
                    input.AdvanceTo(buffer.GetPosition(2 + length));
                    return frame;
                }
            }

            if (result.IsCompleted)
            {
                input.AdvanceTo(buffer.End);
                return buffer.IsEmpty ? null : throw new EndOfStreamException("The stream ended inside a frame.");
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static bool TryReadLength(ReadOnlySequence<byte> buffer, out int length)
    {
        var reader = new SequenceReader<byte>(buffer);
        bool found = reader.TryReadBigEndian(out short raw);
        length = (ushort)raw;
        return found;
    }
}
