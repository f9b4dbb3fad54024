// Typed messages on Nerdbank.MessagePack, made stricter where the library is lenient with input from the network.
using System;
using System.Buffers;
using System.Text;
using Nerdbank.MessagePack;
using PolyType;

namespace PeerLink.Messaging;

/// <summary>
/// Serializes and deserializes one application message with a <see cref="MessagePackSerializer"/>. On top of the
/// library's own checks (depth limit, collision-resistant maps, types), a received message must be exactly one value
/// (no bytes after it) and must not be nil unless the type is a nullable value type; every failure is one
/// <see cref="PeerLinkException"/> with <see cref="PeerLinkError.InvalidMessagePack"/>.
/// </summary>
internal static class TypedMessages
{
    /// <summary>The serializer sessions use unless the application gives its own: the library's defaults.</summary>
    public static readonly MessagePackSerializer DefaultSerializer = new();

    public static void Serialize<T>(MessagePackSerializer serializer, IBufferWriter<byte> output, in T value, ITypeShape<T> shape)
    {
        try
        {
            serializer.Serialize(output, value, shape);
        }
        catch (MessagePackSerializationException e)
        {
            throw new PeerLinkException(PeerLinkError.InvalidMessagePack, $"A {typeof(T).Name} could not be serialized: {e.Message}", e);
        }
    }

    public static T Deserialize<T>(MessagePackSerializer serializer, ReadOnlyMemory<byte> payload, ITypeShape<T> shape)
    {
        if (payload.IsEmpty)
        {
            throw Invalid<T>("the message is empty", null);
        }

        var reader = new Nerdbank.MessagePack.MessagePackReader(payload);
        if (payload.Span[0] == MessagePackCode.Nil && Nullable.GetUnderlyingType(typeof(T)) is null)
        {
            throw Invalid<T>("the message is nil", null);
        }

        RequireValidUtf8<T>(payload.Span);
        T value;
        try
        {
            value = serializer.Deserialize(ref reader, shape)!;
        }
        catch (Exception e) when (e is MessagePackSerializationException or DecoderFallbackException or OverflowException or FormatException or ArgumentException or InvalidOperationException or NotSupportedException)
        {
            throw Invalid<T>(e.Message, e);
        }

        if (!reader.End)
        {
            long extra = payload.Length - reader.Consumed;
            throw Invalid<T>($"{extra} byte(s) follow the value", null);
        }

        return value;
    }

    /// <summary>
    /// One linear pass over the tokens: every string, map keys included, must be valid UTF-8 (the library decodes
    /// invalid sequences to U+FFFD instead of refusing them). Headers are read straight from the span, with no
    /// recursion, so the pass costs a few nanoseconds per token; truncation and the reserved code 0xc1 fail here too.
    /// </summary>
    private static void RequireValidUtf8<T>(ReadOnlySpan<byte> data)
    {
        int i = 0;
        while (i < data.Length)
        {
            byte code = data[i++];
            long length;      // bytes after the header that belong to this token
            bool isString = false;
            switch (code)
            {
                case <= 0x7f or >= 0xe0:                    // fixint
                case >= 0x80 and <= 0x9f:                   // fixmap, fixarray (their elements follow as tokens)
                case 0xc0 or 0xc2 or 0xc3:                  // nil, false, true
                    length = 0;
                    break;
                case >= 0xa0 and <= 0xbf:                   // fixstr
                    length = code & 0x1f;
                    isString = true;
                    break;
                case 0xd9:                                  // str8, str16, str32
                case 0xda:
                case 0xdb:
                    length = ReadLength(data, ref i, code - 0xd9);
                    isString = true;
                    break;
                case 0xc4 or 0xc5 or 0xc6:                  // bin8, bin16, bin32
                    length = ReadLength(data, ref i, code - 0xc4);
                    break;
                case 0xc7 or 0xc8 or 0xc9:                  // ext8, ext16, ext32: then the type byte
                    length = ReadLength(data, ref i, code - 0xc7) + 1;
                    break;
                case 0xca: length = 4; break;               // float32
                case 0xcb: length = 8; break;               // float64
                case 0xcc or 0xd0: length = 1; break;       // uint8, int8
                case 0xcd or 0xd1: length = 2; break;
                case 0xce or 0xd2: length = 4; break;
                case 0xcf or 0xd3: length = 8; break;
                case >= 0xd4 and <= 0xd8:                   // fixext 1, 2, 4, 8, 16, with the type byte
                    length = (1 << (code - 0xd4)) + 1;
                    break;
                case 0xdc or 0xde: length = 2; break;       // array16, map16 headers
                case 0xdd or 0xdf: length = 4; break;       // array32, map32 headers
                default:
                    throw Invalid<T>($"byte {i - 1} is the reserved code 0x{code:x2}", null);
            }

            if (length > data.Length - i)
            {
                throw Invalid<T>("it ends inside a value", null);
            }

            if (isString && !System.Text.Unicode.Utf8.IsValid(data.Slice(i, (int)length)))
            {
                throw Invalid<T>("a string is not valid UTF-8", null);
            }

            i += (int)length;
        }

        static long ReadLength(ReadOnlySpan<byte> data, ref int i, int form)
        {
            int size = 1 << form;                       // 1, 2 or 4 bytes, big-endian
            if (size > data.Length - i)
            {
                return long.MaxValue;                   // truncated: caught by the caller's bounds check
            }

            long length = size switch
            {
                1 => data[i],
                2 => System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(data[i..]),
                _ => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(data[i..]),
            };
            i += size;
            return length;
        }
    }

    private static PeerLinkException Invalid<T>(string why, Exception? inner) =>
        new(PeerLinkError.InvalidMessagePack, $"The message is not a valid {typeof(T).Name}: {why}.", inner);
}
