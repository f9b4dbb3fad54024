// RFC 6762 §7.2 (known-answer lists over several packets, TC bit) and §17 (packets fit the interface MTU; one record that
// does not fit alone may still go out, up to 9000 bytes).
using System.Collections.Generic;
using PeerLink.Discovery.Dns;

namespace PeerLink.Discovery.Mdns;

/// <summary>Splits questions and records into packets that fit a size limit.</summary>
internal static class MdnsPackets
{
    /// <summary>The largest mDNS packet, even for a single record that is larger than the MTU (RFC 6762 §17).</summary>
    public const int MaxPacketSize = 9000;

    /// <summary>
    /// Response packets: answers spread over as many packets as needed; additional records go into the last packet
    /// while they fit and are dropped otherwise (the querier can ask for them).
    /// </summary>
    public static List<byte[]> Responses(IReadOnlyList<DnsRecord> answers, IReadOnlyList<DnsRecord> additionals, int maxSize, ushort id = 0, DnsQuestion? echo = null)
    {
        var packets = new List<byte[]>();
        var writer = new DnsWriter();
        int answerCount = 0, additionalCount = 0;
        Begin(writer, id, DnsMessage.ResponseFlags, echo);

        foreach (DnsRecord record in answers)
        {
            var mark = writer.Mark();
            writer.WriteRecord(record);
            if (writer.Position > maxSize && answerCount > 0)
            {
                writer.Rewind(mark);
                packets.Add(Finish(writer, echo is null ? 0 : 1, answerCount, 0));
                Begin(writer, id, DnsMessage.ResponseFlags, echo);
                answerCount = 0;
                writer.WriteRecord(record);
            }

            if (writer.Position > MaxPacketSize)
            {
                writer.Rewind(mark);   // a record that cannot go out at all
                continue;
            }

            answerCount++;
        }

        foreach (DnsRecord record in additionals)
        {
            var mark = writer.Mark();
            writer.WriteRecord(record);
            if (writer.Position > maxSize)
            {
                writer.Rewind(mark);
                continue;
            }

            additionalCount++;
        }

        if (answerCount > 0 || additionalCount > 0)
        {
            packets.Add(Finish(writer, echo is null ? 0 : 1, answerCount, additionalCount));
        }

        return packets;
    }

    /// <summary>
    /// Query packets: the questions (and a probe's authority records) in the first; known answers fill it and continue in
    /// further packets, every packet but the last with the TC bit (RFC 6762 §7.2).
    /// </summary>
    public static List<byte[]> Queries(IReadOnlyList<DnsQuestion> questions, IReadOnlyList<DnsRecord> knownAnswers, IReadOnlyList<DnsRecord> authorities, int maxSize)
    {
        var packets = new List<byte[]>();
        var writer = new DnsWriter();
        Begin(writer, 0, 0, null);
        foreach (DnsQuestion question in questions)
        {
            writer.WriteQuestion(question);
        }

        int questionCount = questions.Count, answerCount = 0;
        var pendingAuthorities = new List<DnsRecord>(authorities);
        foreach (DnsRecord record in knownAnswers)
        {
            var mark = writer.Mark();
            writer.WriteRecord(record);
            if (writer.Position <= maxSize || answerCount == 0 && questionCount == 0)
            {
                answerCount++;
                continue;
            }

            writer.Rewind(mark);
            packets.Add(Finish(writer, questionCount, answerCount, 0, truncated: true, authorities: pendingAuthorities));
            pendingAuthorities.Clear();
            Begin(writer, 0, 0, null);
            questionCount = 0;
            writer.WriteRecord(record);
            answerCount = 1;
        }

        packets.Add(Finish(writer, questionCount, answerCount, 0, truncated: false, authorities: pendingAuthorities));
        return packets;
    }

    private static void Begin(DnsWriter writer, ushort id, ushort flags, DnsQuestion? echo)
    {
        writer.Reset();
        writer.WriteUInt16(id);
        writer.WriteUInt16(flags);
        writer.WriteBytes(new byte[8]);
        if (echo is not null)
        {
            writer.WriteQuestion(echo);
        }
    }

    private static byte[] Finish(DnsWriter writer, int questions, int answers, int additionals, bool truncated = false, List<DnsRecord>? authorities = null)
    {
        foreach (DnsRecord record in authorities ?? [])
        {
            writer.WriteRecord(record);
        }

        if (truncated)
        {
            writer.PatchUInt16(2, DnsMessage.TruncatedQueryFlags);
        }

        writer.PatchUInt16(4, (ushort)questions);
        writer.PatchUInt16(6, (ushort)answers);
        writer.PatchUInt16(8, (ushort)(authorities?.Count ?? 0));
        writer.PatchUInt16(10, (ushort)additionals);
        return writer.WrittenSpan.ToArray();
    }
}
