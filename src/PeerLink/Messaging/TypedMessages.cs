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

        RequireValidUtf8<T>(payload);
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
    /// invalid sequences to U+FFFD instead of refusing them). Malformed MessagePack fails here too, before any decoding.
    /// </summary>
    private static void RequireValidUtf8<T>(ReadOnlyMemory<byte> payload)
    {
        var tokens = new PeerLink.Messaging.MessagePackReader(payload);
        bool valid = true;
        try
        {
            while (valid && !tokens.End)
            {
                switch (tokens.NextType)
                {
                    case MessagePackType.Array:
                        tokens.ReadArrayHeader();
                        break;
                    case MessagePackType.Map:
                        tokens.ReadMapHeader();
                        break;
                    case MessagePackType.String:
                        valid = System.Text.Unicode.Utf8.IsValid(tokens.ReadStringSequence().FirstSpan);   // the payload is one segment
                        break;
                    default:
                        tokens.Skip();
                        break;
                }
            }
        }
        catch (PeerLinkException e) when (e.Error == PeerLinkError.InvalidMessagePack)
        {
            throw Invalid<T>(e.Message.TrimEnd('.'), e);
        }

        if (!valid)
        {
            throw Invalid<T>("a string is not valid UTF-8", null);
        }
    }

    private static PeerLinkException Invalid<T>(string why, Exception? inner) =>
        new(PeerLinkError.InvalidMessagePack, $"The message is not a valid {typeof(T).Name}: {why}.", inner);
}
