// MessagePack decoder (MessagePack specification, https://github.com/msgpack/msgpack/blob/master/spec.md).
// Every length and count that comes from the data is checked against the bytes that are really there before anything
// is allocated, nesting is bounded, and malformed data raises PeerLinkException(InvalidMessagePack).
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using PeerLink.Internal;

namespace PeerLink.Messaging;

/// <summary>An extension value's header: its type code and the length of its data.</summary>
/// <param name="TypeCode">The application-defined type; negative codes are reserved by MessagePack (-1 is the timestamp).</param>
/// <param name="Length">The number of data bytes that follow.</param>
internal readonly record struct MessagePackExtensionHeader(sbyte TypeCode, int Length);

/// <summary>
/// Reads MessagePack from a <see cref="ReadOnlySequence{T}"/>, which may be split into many segments.
/// Values that refer to the input (<see cref="ReadBytes"/>, <see cref="ReadStringSequence"/>, <see cref="ReadRaw"/>)
/// are slices of it, valid as long as the input is.
/// </summary>
/// <remarks>
/// Malformed, truncated or too deeply nested data raises <see cref="PeerLinkException"/> with
/// <see cref="PeerLinkError.InvalidMessagePack"/>. Reading a value of another type than the data holds does too.
/// </remarks>
internal ref struct MessagePackReader
{
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private SequenceReader<byte> _reader;
    private readonly int _maxDepth;
    private int _depth;

    /// <summary>Creates a reader over <paramref name="data"/>.</summary>
    /// <param name="data">The MessagePack bytes.</param>
    /// <param name="options">Limits; <see cref="MessagePackReaderOptions.Default"/> when null.</param>
    public MessagePackReader(ReadOnlySequence<byte> data, MessagePackReaderOptions? options = null)
    {
        _reader = new SequenceReader<byte>(data);
        _maxDepth = (options ?? MessagePackReaderOptions.Default).MaxDepth;
        _depth = 0;
    }

    /// <summary>Creates a reader over contiguous <paramref name="data"/>.</summary>
    /// <param name="data">The MessagePack bytes.</param>
    /// <param name="options">Limits; <see cref="MessagePackReaderOptions.Default"/> when null.</param>
    public MessagePackReader(ReadOnlyMemory<byte> data, MessagePackReaderOptions? options = null)
        : this(new ReadOnlySequence<byte>(data), options)
    {
    }

    /// <summary>True when every byte has been read.</summary>
    public readonly bool End => _reader.End;

    /// <summary>The number of bytes read so far.</summary>
    public readonly long Consumed => _reader.Consumed;

    /// <summary>The number of bytes left.</summary>
    public readonly long Remaining => _reader.Remaining;

    /// <summary>The current nesting depth, as counted by <see cref="EnterNested"/> and <see cref="ExitNested"/>.</summary>
    public readonly int Depth => _depth;

    /// <summary>The type of the next value.</summary>
    public readonly MessagePackType NextType
    {
        get
        {
            if (!_reader.TryPeek(out byte code))
            {
                ThrowHelper.ThrowMessagePackTruncated();
            }

            return MessagePackCode.TypeOf(code);
        }
    }

    /// <summary>
    /// Counts one level of nesting before a formatter reads a nested object. Formatters of recursive types call it (and
    /// <see cref="ExitNested"/> afterwards), so that hostile data cannot nest them past <see cref="MessagePackReaderOptions.MaxDepth"/>.
    /// </summary>
    public void EnterNested()
    {
        if (++_depth > _maxDepth)
        {
            ThrowHelper.ThrowMessagePack($"MessagePack data nests deeper than the limit of {_maxDepth}.");
        }
    }

    /// <summary>Leaves a level of nesting entered with <see cref="EnterNested"/>.</summary>
    public void ExitNested()
    {
        if (_depth == 0)
        {
            throw new InvalidOperationException("ExitNested was called more often than EnterNested.");
        }

        _depth--;
    }

    /// <summary>Reads a nil if one is next, and says whether it did.</summary>
    public bool TryReadNil()
    {
        if (PeekCode() == MessagePackCode.Nil)
        {
            _reader.Advance(1);
            return true;
        }

        return false;
    }

    /// <summary>Reads a nil.</summary>
    public void ReadNil()
    {
        if (!TryReadNil())
        {
            ThrowWrongType("nil");
        }
    }

    /// <summary>Reads true or false.</summary>
    public bool ReadBoolean()
    {
        byte code = ReadCode();
        return code switch
        {
            MessagePackCode.True => true,
            MessagePackCode.False => false,
            _ => ThrowWrongType<bool>("a boolean", code),
        };
    }

    /// <summary>Reads an integer of any encoding that fits in <see cref="long"/>.</summary>
    public long ReadInt64()
    {
        byte code = ReadCode();
        if (code <= MessagePackCode.MaxPositiveFixInt)
        {
            return code;
        }

        if (code >= MessagePackCode.MinNegativeFixInt)
        {
            return unchecked((sbyte)code);
        }

        switch (code)
        {
            case MessagePackCode.UInt8: return ReadRawByte();
            case MessagePackCode.UInt16: return (ushort)ReadRawInt16();
            case MessagePackCode.UInt32: return (uint)ReadRawInt32();
            case MessagePackCode.UInt64:
                ulong u = (ulong)ReadRawInt64();
                if (u > long.MaxValue)
                {
                    ThrowHelper.ThrowMessagePack($"The integer {u} does not fit in Int64.");
                }

                return (long)u;
            case MessagePackCode.Int8: return unchecked((sbyte)ReadRawByte());
            case MessagePackCode.Int16: return ReadRawInt16();
            case MessagePackCode.Int32: return ReadRawInt32();
            case MessagePackCode.Int64: return ReadRawInt64();
            default: return ThrowWrongType<long>("an integer", code);
        }
    }

    /// <summary>Reads a non-negative integer of any encoding.</summary>
    public ulong ReadUInt64()
    {
        byte code = PeekCode();
        if (code == MessagePackCode.UInt64)
        {
            _reader.Advance(1);
            return (ulong)ReadRawInt64();
        }

        long value = ReadInt64();
        if (value < 0)
        {
            ThrowHelper.ThrowMessagePack($"The integer {value} is negative; an unsigned value was expected.");
        }

        return (ulong)value;
    }

    /// <summary>Reads an integer that fits in <see cref="int"/>.</summary>
    public int ReadInt32()
    {
        long value = ReadInt64();
        if (value is < int.MinValue or > int.MaxValue)
        {
            ThrowHelper.ThrowMessagePack($"The integer {value} does not fit in Int32.");
        }

        return (int)value;
    }

    /// <summary>Reads an integer that fits in <see cref="uint"/>.</summary>
    public uint ReadUInt32()
    {
        ulong value = ReadUInt64();
        if (value > uint.MaxValue)
        {
            ThrowHelper.ThrowMessagePack($"The integer {value} does not fit in UInt32.");
        }

        return (uint)value;
    }

    /// <summary>Reads a float64, a float32 or an integer as a <see cref="double"/>.</summary>
    public double ReadDouble()
    {
        byte code = PeekCode();
        switch (code)
        {
            case MessagePackCode.Float64:
                _reader.Advance(1);
                return BitConverter.Int64BitsToDouble(ReadRawInt64());
            case MessagePackCode.Float32:
                _reader.Advance(1);
                return BitConverter.Int32BitsToSingle(ReadRawInt32());
            case MessagePackCode.UInt64:
                return ReadUInt64();
            default:
                return ReadInt64();
        }
    }

    /// <summary>Reads a float32, a float64 (rounded) or an integer as a <see cref="float"/>.</summary>
    public float ReadSingle() => (float)ReadDouble();

    /// <summary>Reads a string, or <see langword="null"/> for nil.</summary>
    public string? ReadString()
    {
        if (TryReadNil())
        {
            return null;
        }

        ReadOnlySequence<byte> utf8 = ReadStringSequence();
        try
        {
            if (utf8.IsSingleSegment)
            {
                return s_strictUtf8.GetString(utf8.FirstSpan);
            }

            // The length was checked against the data, so this rental is bounded by the input's size.
            int length = (int)utf8.Length;
            byte[] rented = ArrayPool<byte>.Shared.Rent(length);
            try
            {
                utf8.CopyTo(rented);
                return s_strictUtf8.GetString(rented, 0, length);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
        catch (DecoderFallbackException e)
        {
            throw new PeerLinkException(PeerLinkError.InvalidMessagePack, "A MessagePack string is not valid UTF-8.", e);
        }
    }

    /// <summary>Reads a string's UTF-8 bytes as a slice of the input, without decoding or copying them.</summary>
    public ReadOnlySequence<byte> ReadStringSequence()
    {
        byte code = ReadCode();
        int length;
        if (code is >= MessagePackCode.MinFixStr and <= MessagePackCode.MaxFixStr)
        {
            length = code & 0x1f;
        }
        else
        {
            length = code switch
            {
                MessagePackCode.Str8 => ReadRawByte(),
                MessagePackCode.Str16 => (ushort)ReadRawInt16(),
                MessagePackCode.Str32 => CheckedLength((uint)ReadRawInt32()),
                _ => ThrowWrongType<int>("a string", code),
            };
        }

        return ReadSlice(length);
    }

    /// <summary>Reads a byte array as a slice of the input, or <see langword="null"/> for nil.</summary>
    public ReadOnlySequence<byte>? ReadBytes()
    {
        if (TryReadNil())
        {
            return null;
        }

        byte code = ReadCode();
        int length = code switch
        {
            MessagePackCode.Bin8 => ReadRawByte(),
            MessagePackCode.Bin16 => (ushort)ReadRawInt16(),
            MessagePackCode.Bin32 => CheckedLength((uint)ReadRawInt32()),
            _ => ThrowWrongType<int>("a byte array", code),
        };
        return ReadSlice(length);
    }

    /// <summary>Reads an array header and returns the element count, which is checked against the bytes left.</summary>
    public int ReadArrayHeader()
    {
        byte code = ReadCode();
        int count;
        if (code is >= MessagePackCode.MinFixArray and <= MessagePackCode.MaxFixArray)
        {
            count = code & 0x0f;
        }
        else
        {
            count = code switch
            {
                MessagePackCode.Array16 => (ushort)ReadRawInt16(),
                MessagePackCode.Array32 => CheckedLength((uint)ReadRawInt32()),
                _ => ThrowWrongType<int>("an array", code),
            };
        }

        // Every element takes at least one byte: a larger count is a lie, and must not size any allocation.
        if (count > _reader.Remaining)
        {
            ThrowHelper.ThrowMessagePack($"A MessagePack array claims {count} elements but only {_reader.Remaining} bytes follow.");
        }

        return count;
    }

    /// <summary>Reads a map header and returns the number of key/value pairs, which is checked against the bytes left.</summary>
    public int ReadMapHeader()
    {
        byte code = ReadCode();
        int count;
        if (code is >= MessagePackCode.MinFixMap and <= MessagePackCode.MaxFixMap)
        {
            count = code & 0x0f;
        }
        else
        {
            count = code switch
            {
                MessagePackCode.Map16 => (ushort)ReadRawInt16(),
                MessagePackCode.Map32 => CheckedLength((uint)ReadRawInt32()),
                _ => ThrowWrongType<int>("a map", code),
            };
        }

        if (count * 2L > _reader.Remaining)
        {
            ThrowHelper.ThrowMessagePack($"A MessagePack map claims {count} entries but only {_reader.Remaining} bytes follow.");
        }

        return count;
    }

    /// <summary>Reads an extension header; its data, <see cref="MessagePackExtensionHeader.Length"/> bytes, follows.</summary>
    public MessagePackExtensionHeader ReadExtensionHeader()
    {
        byte code = ReadCode();
        int length = code switch
        {
            MessagePackCode.FixExt1 => 1,
            MessagePackCode.FixExt2 => 2,
            MessagePackCode.FixExt4 => 4,
            MessagePackCode.FixExt8 => 8,
            MessagePackCode.FixExt16 => 16,
            MessagePackCode.Ext8 => ReadRawByte(),
            MessagePackCode.Ext16 => (ushort)ReadRawInt16(),
            MessagePackCode.Ext32 => CheckedLength((uint)ReadRawInt32()),
            _ => ThrowWrongType<int>("an extension", code),
        };
        sbyte type = unchecked((sbyte)ReadRawByte());
        if (length > _reader.Remaining)
        {
            ThrowHelper.ThrowMessagePack($"A MessagePack extension claims {length} bytes but only {_reader.Remaining} follow.");
        }

        return new MessagePackExtensionHeader(type, length);
    }

    /// <summary>Reads an extension: its type and its data as a slice of the input.</summary>
    public (sbyte TypeCode, ReadOnlySequence<byte> Data) ReadExtension()
    {
        MessagePackExtensionHeader header = ReadExtensionHeader();
        return (header.TypeCode, ReadSlice(header.Length));
    }

    /// <summary>Reads a timestamp extension (type -1) in its 32, 64 or 96-bit form.</summary>
    public MessagePackTimestamp ReadTimestamp()
    {
        MessagePackExtensionHeader header = ReadExtensionHeader();
        if (header.TypeCode != MessagePackCode.TimestampType)
        {
            ThrowHelper.ThrowMessagePack($"Expected a timestamp (extension type -1), found extension type {header.TypeCode}.");
        }

        switch (header.Length)
        {
            case 4:
                return new MessagePackTimestamp((uint)ReadRawInt32(), 0);
            case 8:
                ulong packed = (ulong)ReadRawInt64();
                return CheckedTimestamp((long)(packed & 0x3_ffff_ffffUL), (uint)(packed >> 34));
            case 12:
                uint nanoseconds = (uint)ReadRawInt32();
                return CheckedTimestamp(ReadRawInt64(), nanoseconds);
            default:
                ThrowHelper.ThrowMessagePack($"A timestamp has 4, 8 or 12 data bytes, not {header.Length}.");
                return default;
        }
    }

    /// <summary>Reads the next whole value, however nested, and returns its encoded bytes as a slice of the input.</summary>
    public ReadOnlySequence<byte> ReadRaw()
    {
        SequencePosition start = _reader.Position;
        Skip();
        return _reader.Sequence.Slice(start, _reader.Position);
    }

    /// <summary>Skips the next value, however nested (within <see cref="MessagePackReaderOptions.MaxDepth"/>).</summary>
    public void Skip() => SkipValue(0);

    private void SkipValue(int depth)
    {
        if (depth + _depth > _maxDepth)
        {
            ThrowHelper.ThrowMessagePack($"MessagePack data nests deeper than the limit of {_maxDepth}.");
        }

        switch (NextType)
        {
            case MessagePackType.Nil:
            case MessagePackType.Boolean:
                _reader.Advance(1);
                break;
            case MessagePackType.Integer:
                if (PeekCode() == MessagePackCode.UInt64)
                {
                    ReadUInt64();
                }
                else
                {
                    ReadInt64();
                }

                break;
            case MessagePackType.Float:
                ReadDouble();
                break;
            case MessagePackType.String:
                ReadStringSequence();
                break;
            case MessagePackType.Binary:
                ReadBytes();
                break;
            case MessagePackType.Extension:
                ReadExtension();
                break;
            case MessagePackType.Array:
                for (int i = ReadArrayHeader(); i > 0; i--)
                {
                    SkipValue(depth + 1);
                }

                break;
            case MessagePackType.Map:
                for (int i = ReadMapHeader(); i > 0; i--)
                {
                    SkipValue(depth + 1);
                    SkipValue(depth + 1);
                }

                break;
            default:
                ThrowHelper.ThrowMessagePack("The reserved code 0xc1 is not valid MessagePack.");
                break;
        }
    }

    private readonly byte PeekCode()
    {
        if (!_reader.TryPeek(out byte code))
        {
            ThrowHelper.ThrowMessagePackTruncated();
        }

        return code;
    }

    private byte ReadCode() => ReadRawByte();

    private byte ReadRawByte()
    {
        if (!_reader.TryRead(out byte value))
        {
            ThrowHelper.ThrowMessagePackTruncated();
        }

        return value;
    }

    private short ReadRawInt16()
    {
        if (!_reader.TryReadBigEndian(out short value))
        {
            ThrowHelper.ThrowMessagePackTruncated();
        }

        return value;
    }

    private int ReadRawInt32()
    {
        if (!_reader.TryReadBigEndian(out int value))
        {
            ThrowHelper.ThrowMessagePackTruncated();
        }

        return value;
    }

    private long ReadRawInt64()
    {
        if (!_reader.TryReadBigEndian(out long value))
        {
            ThrowHelper.ThrowMessagePackTruncated();
        }

        return value;
    }

    private ReadOnlySequence<byte> ReadSlice(int length)
    {
        if (length > _reader.Remaining)
        {
            ThrowHelper.ThrowMessagePack($"A MessagePack value claims {length} bytes but only {_reader.Remaining} follow (truncated or corrupt).");
        }

        ReadOnlySequence<byte> slice = _reader.Sequence.Slice(_reader.Position, length);
        _reader.Advance(length);
        return slice;
    }

    private readonly int CheckedLength(uint length)
    {
        if (length > _reader.Remaining)
        {
            ThrowHelper.ThrowMessagePack($"A MessagePack value claims a length of {length} but only {_reader.Remaining} bytes follow.");
        }

        return (int)length;
    }

    private static MessagePackTimestamp CheckedTimestamp(long seconds, uint nanoseconds)
    {
        if (nanoseconds > 999_999_999)
        {
            ThrowHelper.ThrowMessagePack($"A timestamp has {nanoseconds} nanoseconds; at most 999999999 are allowed.");
        }

        return new MessagePackTimestamp(seconds, nanoseconds);
    }

    private static T ThrowWrongType<T>(string expected, byte code) =>
        throw ThrowHelper.MessagePack($"Expected {expected}, found MessagePack code 0x{code:x2} ({MessagePackCode.TypeOf(code)}).");

    private readonly void ThrowWrongType(string expected) => ThrowWrongType<int>(expected, PeekCode());
}
