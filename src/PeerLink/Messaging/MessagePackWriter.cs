// MessagePack encoder (MessagePack specification, https://github.com/msgpack/msgpack/blob/master/spec.md).
// Integers, strings, binaries, arrays, maps and extensions are written in their smallest encoding.
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace PeerLink.Messaging;

/// <summary>
/// Writes MessagePack into an <see cref="IBufferWriter{T}"/> (an <see cref="ArrayBufferWriter{T}"/>, a
/// <c>PipeWriter</c>, …) without allocating. Bytes are staged in the writer's memory and committed by
/// <see cref="Flush"/>: call it when done, or nothing reaches the output.
/// </summary>
internal ref struct MessagePackWriter
{
    private readonly IBufferWriter<byte> _output;
    private Span<byte> _span;
    private int _buffered;

    /// <summary>Creates a writer over <paramref name="output"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="output"/> is null.</exception>
    public MessagePackWriter(IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        _output = output;
        _span = default;
        _buffered = 0;
    }

    /// <summary>Commits everything written so far to the output.</summary>
    public void Flush()
    {
        if (_buffered > 0)
        {
            _output.Advance(_buffered);
            _buffered = 0;
        }

        _span = default;
    }

    /// <summary>Writes nil.</summary>
    public void WriteNil() => WriteByte(MessagePackCode.Nil);

    /// <summary>Writes true or false.</summary>
    public void Write(bool value) => WriteByte(value ? MessagePackCode.True : MessagePackCode.False);

    /// <summary>Writes a signed integer in its smallest encoding.</summary>
    public void Write(long value)
    {
        if (value >= 0)
        {
            Write((ulong)value);
            return;
        }

        if (value >= -32)
        {
            WriteByte(unchecked((byte)value));
        }
        else if (value >= sbyte.MinValue)
        {
            Span<byte> span = Reserve(2);
            span[0] = MessagePackCode.Int8;
            span[1] = unchecked((byte)value);
            Commit(2);
        }
        else if (value >= short.MinValue)
        {
            Span<byte> span = Reserve(3);
            span[0] = MessagePackCode.Int16;
            BinaryPrimitives.WriteInt16BigEndian(span[1..], (short)value);
            Commit(3);
        }
        else if (value >= int.MinValue)
        {
            Span<byte> span = Reserve(5);
            span[0] = MessagePackCode.Int32;
            BinaryPrimitives.WriteInt32BigEndian(span[1..], (int)value);
            Commit(5);
        }
        else
        {
            Span<byte> span = Reserve(9);
            span[0] = MessagePackCode.Int64;
            BinaryPrimitives.WriteInt64BigEndian(span[1..], value);
            Commit(9);
        }
    }

    /// <summary>Writes an unsigned integer in its smallest encoding.</summary>
    public void Write(ulong value)
    {
        if (value <= MessagePackCode.MaxPositiveFixInt)
        {
            WriteByte((byte)value);
        }
        else if (value <= byte.MaxValue)
        {
            Span<byte> span = Reserve(2);
            span[0] = MessagePackCode.UInt8;
            span[1] = (byte)value;
            Commit(2);
        }
        else if (value <= ushort.MaxValue)
        {
            Span<byte> span = Reserve(3);
            span[0] = MessagePackCode.UInt16;
            BinaryPrimitives.WriteUInt16BigEndian(span[1..], (ushort)value);
            Commit(3);
        }
        else if (value <= uint.MaxValue)
        {
            Span<byte> span = Reserve(5);
            span[0] = MessagePackCode.UInt32;
            BinaryPrimitives.WriteUInt32BigEndian(span[1..], (uint)value);
            Commit(5);
        }
        else
        {
            Span<byte> span = Reserve(9);
            span[0] = MessagePackCode.UInt64;
            BinaryPrimitives.WriteUInt64BigEndian(span[1..], value);
            Commit(9);
        }
    }

    /// <summary>Writes a signed integer in its smallest encoding.</summary>
    public void Write(int value) => Write((long)value);

    /// <summary>Writes an unsigned integer in its smallest encoding.</summary>
    public void Write(uint value) => Write((ulong)value);

    /// <summary>Writes a float32.</summary>
    public void Write(float value)
    {
        Span<byte> span = Reserve(5);
        span[0] = MessagePackCode.Float32;
        BinaryPrimitives.WriteSingleBigEndian(span[1..], value);
        Commit(5);
    }

    /// <summary>Writes a float64.</summary>
    public void Write(double value)
    {
        Span<byte> span = Reserve(9);
        span[0] = MessagePackCode.Float64;
        BinaryPrimitives.WriteDoubleBigEndian(span[1..], value);
        Commit(9);
    }

    /// <summary>Writes a string as UTF-8, or nil for <see langword="null"/>.</summary>
    public void Write(string? value)
    {
        if (value is null)
        {
            WriteNil();
            return;
        }

        WriteString(value.AsSpan());
    }

    /// <summary>Writes a string as UTF-8.</summary>
    /// <exception cref="ArgumentException"><paramref name="value"/> holds an unpaired surrogate.</exception>
    public void WriteString(ReadOnlySpan<char> value)
    {
        int byteCount;
        try
        {
            byteCount = StrictUtf8.GetByteCount(value);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException("The string is not valid UTF-16 (an unpaired surrogate).", nameof(value), e);
        }

        WriteStringHeader(byteCount);
        if (byteCount <= 4096)
        {
            Span<byte> span = Reserve(byteCount);
            StrictUtf8.GetBytes(value, span);
            Commit(byteCount);
        }
        else
        {
            byte[] rented = ArrayPool<byte>.Shared.Rent(byteCount);
            try
            {
                int written = StrictUtf8.GetBytes(value, rented);
                WriteRawChunked(rented.AsSpan(0, written));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Writes a string whose UTF-8 bytes the caller already has. The bytes are not validated.</summary>
    public void WriteStringUtf8(ReadOnlySpan<byte> utf8)
    {
        WriteStringHeader(utf8.Length);
        WriteRawChunked(utf8);
    }

    /// <summary>Writes a str header for <paramref name="byteCount"/> UTF-8 bytes, which the caller writes next with <see cref="WriteRaw"/>.</summary>
    public void WriteStringHeader(int byteCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteCount);
        if (byteCount <= 31)
        {
            WriteByte((byte)(MessagePackCode.MinFixStr | byteCount));
        }
        else
        {
            WriteLengthHeader(byteCount, MessagePackCode.Str8, MessagePackCode.Str16, MessagePackCode.Str32);
        }
    }

    /// <summary>Writes a byte array (bin format family).</summary>
    public void WriteBinary(ReadOnlySpan<byte> value)
    {
        WriteBinaryHeader(value.Length);
        WriteRawChunked(value);
    }

    /// <summary>Writes a bin header for <paramref name="length"/> bytes, which the caller writes next with <see cref="WriteRaw"/>.</summary>
    public void WriteBinaryHeader(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        WriteLengthHeader(length, MessagePackCode.Bin8, MessagePackCode.Bin16, MessagePackCode.Bin32);
    }

    /// <summary>Writes an array header; the caller then writes <paramref name="count"/> values.</summary>
    public void WriteArrayHeader(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count <= 15)
        {
            WriteByte((byte)(MessagePackCode.MinFixArray | count));
        }
        else
        {
            WriteCountHeader(count, MessagePackCode.Array16, MessagePackCode.Array32);
        }
    }

    /// <summary>Writes a map header; the caller then writes <paramref name="count"/> key/value pairs.</summary>
    public void WriteMapHeader(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count <= 15)
        {
            WriteByte((byte)(MessagePackCode.MinFixMap | count));
        }
        else
        {
            WriteCountHeader(count, MessagePackCode.Map16, MessagePackCode.Map32);
        }
    }

    /// <summary>Writes an extension header; the caller then writes <paramref name="length"/> bytes with <see cref="WriteRaw"/>.</summary>
    public void WriteExtensionHeader(sbyte typeCode, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        byte fixCode = length switch
        {
            1 => MessagePackCode.FixExt1,
            2 => MessagePackCode.FixExt2,
            4 => MessagePackCode.FixExt4,
            8 => MessagePackCode.FixExt8,
            16 => MessagePackCode.FixExt16,
            _ => 0,
        };
        if (fixCode != 0)
        {
            Span<byte> span = Reserve(2);
            span[0] = fixCode;
            span[1] = unchecked((byte)typeCode);
            Commit(2);
            return;
        }

        WriteLengthHeader(length, MessagePackCode.Ext8, MessagePackCode.Ext16, MessagePackCode.Ext32);
        WriteByte(unchecked((byte)typeCode));
    }

    /// <summary>Writes an extension value.</summary>
    public void WriteExtension(sbyte typeCode, ReadOnlySpan<byte> data)
    {
        WriteExtensionHeader(typeCode, data.Length);
        WriteRawChunked(data);
    }

    /// <summary>Writes a timestamp in the smallest of the 32, 64 and 96-bit forms that holds it.</summary>
    public void Write(MessagePackTimestamp value)
    {
        long seconds = value.Seconds;
        uint nanoseconds = value.Nanoseconds;
        if ((ulong)seconds >> 34 == 0)
        {
            if (nanoseconds == 0 && (ulong)seconds <= uint.MaxValue)
            {
                Span<byte> span = Reserve(6);
                span[0] = MessagePackCode.FixExt4;
                span[1] = unchecked((byte)MessagePackCode.TimestampType);
                BinaryPrimitives.WriteUInt32BigEndian(span[2..], (uint)seconds);
                Commit(6);
            }
            else
            {
                Span<byte> span = Reserve(10);
                span[0] = MessagePackCode.FixExt8;
                span[1] = unchecked((byte)MessagePackCode.TimestampType);
                BinaryPrimitives.WriteUInt64BigEndian(span[2..], ((ulong)nanoseconds << 34) | (ulong)seconds);
                Commit(10);
            }
        }
        else
        {
            Span<byte> span = Reserve(15);
            span[0] = MessagePackCode.Ext8;
            span[1] = 12;
            span[2] = unchecked((byte)MessagePackCode.TimestampType);
            BinaryPrimitives.WriteUInt32BigEndian(span[3..], nanoseconds);
            BinaryPrimitives.WriteInt64BigEndian(span[7..], seconds);
            Commit(15);
        }
    }

    /// <summary>Writes a <see cref="DateTimeOffset"/> as a timestamp extension.</summary>
    public void Write(DateTimeOffset value) => Write(MessagePackTimestamp.FromDateTimeOffset(value));

    /// <summary>Writes bytes as they are: already-encoded MessagePack, or the body after a header written above.</summary>
    public void WriteRaw(ReadOnlySpan<byte> bytes) => WriteRawChunked(bytes);

    private static UTF8Encoding StrictUtf8 { get; } = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private void WriteLengthHeader(int length, byte code8, byte code16, byte code32)
    {
        if (length <= byte.MaxValue)
        {
            Span<byte> span = Reserve(2);
            span[0] = code8;
            span[1] = (byte)length;
            Commit(2);
        }
        else
        {
            WriteCountHeader(length, code16, code32);
        }
    }

    private void WriteCountHeader(int count, byte code16, byte code32)
    {
        if (count <= ushort.MaxValue)
        {
            Span<byte> span = Reserve(3);
            span[0] = code16;
            BinaryPrimitives.WriteUInt16BigEndian(span[1..], (ushort)count);
            Commit(3);
        }
        else
        {
            Span<byte> span = Reserve(5);
            span[0] = code32;
            BinaryPrimitives.WriteUInt32BigEndian(span[1..], (uint)count);
            Commit(5);
        }
    }

    private void WriteByte(byte value)
    {
        Span<byte> span = Reserve(1);
        span[0] = value;
        Commit(1);
    }

    private void WriteRawChunked(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            Span<byte> span = Reserve(1);
            int n = Math.Min(span.Length, bytes.Length);
            bytes[..n].CopyTo(span);
            Commit(n);
            bytes = bytes[n..];
        }
    }

    /// <summary>Returns free staged memory of at least <paramref name="size"/> bytes.</summary>
    private Span<byte> Reserve(int size)
    {
        if (_span.Length - _buffered < size)
        {
            Flush();
            _span = _output.GetSpan(Math.Max(size, 256));
            if (_span.Length < size)
            {
                throw new InvalidOperationException("The output buffer writer returned less memory than requested.");
            }
        }

        return _span[_buffered..];
    }

    private void Commit(int count) => _buffered += count;
}
