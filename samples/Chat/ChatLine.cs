using System;
using PeerLink.Messaging;

namespace PeerLink.Samples.Chat;

/// <summary>One chat line, as a MessagePack array [text, sent].</summary>
internal sealed record ChatLine(string Text, DateTimeOffset Sent) : IMessagePackSerializable<ChatLine>
{
    public static ChatLine ReadFrom(ref MessagePackReader reader)
    {
        if (reader.ReadArrayHeader() != 2)
        {
            throw new PeerLinkException(PeerLinkError.InvalidMessagePack, "A chat line is an array of two.");
        }

        return new ChatLine(reader.ReadString() ?? string.Empty, reader.ReadTimestamp().ToDateTimeOffset());
    }

    public void WriteTo(ref MessagePackWriter writer)
    {
        writer.WriteArrayHeader(2);
        writer.Write(Text);
        writer.Write(Sent);
    }
}
