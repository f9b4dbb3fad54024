// The handshake payload: a MessagePack map. Unknown keys are skipped, so newer peers can add keys.
using System;
using System.Buffers;
using PeerLink.Messaging;

namespace PeerLink.Sessions;

/// <param name="Version">The protocol version.</param>
/// <param name="ApplicationId">The application id.</param>
/// <param name="MaxMessageSize">The largest message the sender accepts.</param>
/// <param name="AesHardware">The sender has AES instructions (feature "aes-hw"), so AES-GCM is cheap for it.</param>
internal readonly record struct SessionHello(int Version, string ApplicationId, int MaxMessageSize, bool AesHardware = false)
{
    public void WriteTo(IBufferWriter<byte> output)
    {
        var writer = new MessagePackWriter(output);
        writer.WriteMapHeader(4);
        writer.Write("v");
        writer.Write(Version);
        writer.Write("app");
        writer.Write(ApplicationId);
        writer.Write("max");
        writer.Write(MaxMessageSize);
        writer.Write("feat");
        writer.WriteArrayHeader(AesHardware ? 3 : 2);
        writer.Write("coalesce");
        writer.Write("rekey");
        if (AesHardware)
        {
            writer.Write("aes-hw");
        }

        writer.Flush();
    }

    /// <summary>Reads a peer's hello; throws <see cref="PeerLinkException"/> (ProtocolViolation) when it is not one.</summary>
    /// <param name="payload">The handshake payload.</param>
    /// <param name="expectedApplication">This side's application id: when the peer's is the same, the hello carries this
    /// instance instead of a new string, which every live session would otherwise hold.</param>
    public static SessionHello Read(ReadOnlyMemory<byte> payload, string? expectedApplication = null)
    {
        try
        {
            var reader = new MessagePackReader(payload);
            int version = 0;
            string? application = null;
            int max = 0;
            bool aesHardware = false;
            int count = reader.ReadMapHeader();
            for (int i = 0; i < count; i++)
            {
                // Keys are compared as UTF-8 bytes: no string is made for a key.
                ReadOnlySequence<byte> key = reader.ReadStringSequence();
                if (Is(key, "v"u8))
                {
                    version = reader.ReadInt32();
                }
                else if (Is(key, "app"u8))
                {
                    MessagePackReader peek = reader;
                    if (expectedApplication is not null && peek.NextType == MessagePackType.String && IsText(peek.ReadStringSequence(), expectedApplication))
                    {
                        reader = peek;
                        application = expectedApplication;
                    }
                    else
                    {
                        application = reader.ReadString();
                    }
                }
                else if (Is(key, "max"u8))
                {
                    max = reader.ReadInt32();
                }
                else if (Is(key, "feat"u8) && reader.NextType == MessagePackType.Array)
                {
                    for (int n = reader.ReadArrayHeader(); n > 0; n--)
                    {
                        if (reader.NextType != MessagePackType.String)
                        {
                            reader.Skip();      // features are strings; anything else is ignored
                        }
                        else if (Is(reader.ReadStringSequence(), "aes-hw"u8))
                        {
                            aesHardware = true;
                        }
                    }
                }
                else
                {
                    reader.Skip();
                }
            }

            if (!reader.End)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"The peer's handshake payload has {reader.Remaining} bytes after its hello map.");
            }

            if (version < 1 || application is null || max < 1)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer's handshake payload lacks the protocol version, application id or maximum message size.");
            }

            return new SessionHello(version, application, max, aesHardware);
        }
        catch (PeerLinkException e) when (e.Error == PeerLinkError.InvalidMessagePack)
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer's handshake payload is not a valid MessagePack map.", e);
        }
    }

    private static bool IsText(in ReadOnlySequence<byte> utf8, string text)
    {
        const int MaxStack = 256;
        if (utf8.Length > MaxStack || text.Length > MaxStack)
        {
            return false;
        }

        Span<byte> encoded = stackalloc byte[MaxStack * 3];
        return System.Text.Encoding.UTF8.TryGetBytes(text, encoded, out int written) && Is(utf8, encoded[..written]);
    }

    private static bool Is(in ReadOnlySequence<byte> key, ReadOnlySpan<byte> name)
    {
        if (key.Length != name.Length)
        {
            return false;
        }

        if (key.IsSingleSegment)
        {
            return key.FirstSpan.SequenceEqual(name);
        }

        Span<byte> copy = stackalloc byte[name.Length];
        key.CopyTo(copy);
        return copy.SequenceEqual(name);
    }
}
