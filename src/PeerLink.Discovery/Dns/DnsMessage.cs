// RFC 1035 §4.1 (message format), RFC 6762 §18 (mDNS header fields) and §17 (packet size).
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Net;
using System.Text;

namespace PeerLink.Discovery.Dns;

/// <summary>A DNS message: the header fields mDNS uses and the four sections.</summary>
internal sealed class DnsMessage
{
    /// <summary>The header's size.</summary>
    public const int HeaderSize = 12;

    private const ushort ResponseFlag = 0x8000;
    private const ushort AuthoritativeFlag = 0x0400;
    private const ushort TruncatedFlag = 0x0200;

    public ushort Id { get; init; }

    /// <summary>The raw flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE).</summary>
    public ushort Flags { get; init; }

    public bool IsResponse => (Flags & ResponseFlag) != 0;

    public bool IsTruncated => (Flags & TruncatedFlag) != 0;

    public int Opcode => (Flags >> 11) & 0xF;

    public int ResponseCode => Flags & 0xF;

    public List<DnsQuestion> Questions { get; init; } = [];

    public List<DnsRecord> Answers { get; init; } = [];

    public List<DnsRecord> Authorities { get; init; } = [];

    public List<DnsRecord> Additionals { get; init; } = [];

    /// <summary>
    /// Records left out because their data was malformed (a bad NSEC bitmap, an A record of 5 bytes, …). Their header
    /// gave their length, so the records after them were still read: one bad record does not cost the packet.
    /// </summary>
    public int MalformedRecords { get; private set; }

    /// <summary>Why the first malformed record was left out; null when none was.</summary>
    public string? MalformedReason { get; private set; }

    /// <summary>The flags of an mDNS response: QR and AA set, everything else zero (RFC 6762 §18).</summary>
    public static ushort ResponseFlags => ResponseFlag | AuthoritativeFlag;

    /// <summary>The TC bit, set on a query whose known answers continue in the next packet (RFC 6762 §7.2).</summary>
    public static ushort TruncatedQueryFlags => TruncatedFlag;

    public IEnumerable<DnsRecord> AllRecords()
    {
        foreach (DnsRecord r in Answers)
        {
            yield return r;
        }

        foreach (DnsRecord r in Authorities)
        {
            yield return r;
        }

        foreach (DnsRecord r in Additionals)
        {
            yield return r;
        }
    }

    /// <summary>Writes the whole message with name compression.</summary>
    public byte[] ToArray()
    {
        var writer = new DnsWriter();
        writer.WriteUInt16(Id);
        writer.WriteUInt16(Flags);
        writer.WriteUInt16((ushort)Questions.Count);
        writer.WriteUInt16((ushort)Answers.Count);
        writer.WriteUInt16((ushort)Authorities.Count);
        writer.WriteUInt16((ushort)Additionals.Count);
        foreach (DnsQuestion q in Questions)
        {
            writer.WriteQuestion(q);
        }

        foreach (DnsRecord r in AllRecords())
        {
            writer.WriteRecord(r);
        }

        return writer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Parses a packet. Malformed input returns false with the reason: compression loops and forward pointers, labels
    /// over 63 bytes, names over 255, data past the end, counts that promise more than the packet holds. Nothing is
    /// allocated beyond what the packet's own size allows.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> packet, out DnsMessage? message, out string? error)
    {
        message = null;
        error = null;
        try
        {
            message = Parse(packet);
            return true;
        }
        catch (DnsFormatException e)
        {
            error = e.Message;
            return false;
        }
        catch (ArgumentException e)
        {
            // A value the record types refuse; the codec checks first, so this is a second line of defence.
            error = "A record's data is invalid: " + e.Message;
            return false;
        }
    }

    private static DnsMessage Parse(ReadOnlySpan<byte> packet)
    {
        if (packet.Length < HeaderSize)
        {
            throw new DnsFormatException($"The packet has {packet.Length} bytes; a DNS header has {HeaderSize}.");
        }

        var reader = new DnsReader(packet) { Position = HeaderSize };
        int questions = BinaryPrimitives.ReadUInt16BigEndian(packet[4..]);
        int answers = BinaryPrimitives.ReadUInt16BigEndian(packet[6..]);
        int authorities = BinaryPrimitives.ReadUInt16BigEndian(packet[8..]);
        int additionals = BinaryPrimitives.ReadUInt16BigEndian(packet[10..]);

        // The smallest question has 5 bytes (root name, type, class) and the smallest record 11: a count that needs more
        // than the packet holds is a lie, found before any list is sized from it.
        int body = packet.Length - HeaderSize;
        long needed = questions * 5L + (answers + (long)authorities + additionals) * 11L;
        if (needed > body)
        {
            throw new DnsFormatException(
                $"The header announces {questions} question(s) and {answers + authorities + additionals} record(s), which need at least {needed} bytes; the packet has {body} after the header.");
        }

        var message = new DnsMessage
        {
            Id = BinaryPrimitives.ReadUInt16BigEndian(packet),
            Flags = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]),
            Questions = new List<DnsQuestion>(questions),
            Answers = new List<DnsRecord>(answers),
            Authorities = new List<DnsRecord>(authorities),
            Additionals = new List<DnsRecord>(additionals),
        };

        for (int i = 0; i < questions; i++)
        {
            DnsName name = reader.ReadName();
            var type = (DnsRecordType)reader.ReadUInt16("question type");
            ushort rawClass = reader.ReadUInt16("question class");
            message.Questions.Add(new DnsQuestion(name, type, (ushort)(rawClass & ~DnsClass.TopBit), (rawClass & DnsClass.TopBit) != 0));
        }

        // A record whose header is intact but whose data is not is skipped (RFC 6762 gives no rule, and deployed
        // responders send, for example, malformed NSEC records beside valid ones). A record whose header is broken ends
        // the reading: nothing after it can be located, but the records before it stand.
        int remaining = answers + authorities + additionals;
        bool ended = false;
        foreach ((int count, List<DnsRecord> into) in new[] { (answers, message.Answers), (authorities, message.Authorities), (additionals, message.Additionals) })
        {
            for (int i = 0; i < count && !ended; i++, remaining--)
            {
                try
                {
                    if (reader.ReadRecord(out string? skipped) is { } record)
                    {
                        into.Add(record);
                    }
                    else
                    {
                        message.NoteMalformed(skipped!);
                    }
                }
                catch (DnsFormatException e) when (message.Answers.Count + message.Authorities.Count + message.Additionals.Count > 0)
                {
                    message.NoteMalformed(e.Message);
                    message.MalformedRecords += remaining - 1;
                    ended = true;
                }
            }
        }

        return message;
    }

    private void NoteMalformed(string reason)
    {
        MalformedRecords++;
        MalformedReason ??= reason;
    }
}

/// <summary>Malformed DNS data; caught by <see cref="DnsMessage.TryParse"/> and never leaves the codec.</summary>
internal sealed class DnsFormatException(string message) : Exception(message);

/// <summary>Reads names, records and integers from one packet, with every bound checked.</summary>
internal ref struct DnsReader(ReadOnlySpan<byte> packet)
{
    private readonly ReadOnlySpan<byte> _packet = packet;

    public int Position { get; set; }

    public ushort ReadUInt16(string what)
    {
        Need(2, what);
        ushort value = BinaryPrimitives.ReadUInt16BigEndian(_packet[Position..]);
        Position += 2;
        return value;
    }

    public uint ReadUInt32(string what)
    {
        Need(4, what);
        uint value = BinaryPrimitives.ReadUInt32BigEndian(_packet[Position..]);
        Position += 4;
        return value;
    }

    /// <summary>
    /// Reads a possibly compressed name. Every pointer must point strictly before the pointer itself, so following them
    /// always moves backwards: loops and forward pointers are refused, and the walk ends within the packet's length.
    /// </summary>
    public DnsName ReadName()
    {
        var labels = new List<string>();
        int position = Position;
        int wireLength = 1;
        bool jumped = false;
        while (true)
        {
            if (position >= _packet.Length)
            {
                throw new DnsFormatException($"A name at offset {Position} runs past the end of the packet.");
            }

            byte length = _packet[position];
            switch (length & 0xC0)
            {
                case 0x00 when length == 0:
                    if (!jumped)
                    {
                        Position = position + 1;
                    }

                    return DnsNameFromWire(labels);

                case 0x00:
                    if (position + 1 + length > _packet.Length)
                    {
                        throw new DnsFormatException($"A label at offset {position} runs past the end of the packet.");
                    }

                    wireLength += 1 + length;
                    if (wireLength > DnsName.MaxWireLength)
                    {
                        throw new DnsFormatException($"A name at offset {Position} is longer than {DnsName.MaxWireLength} bytes.");
                    }

                    labels.Add(DecodeLabel(_packet.Slice(position + 1, length), position));
                    position += 1 + length;
                    break;

                case 0xC0:
                    if (position + 2 > _packet.Length)
                    {
                        throw new DnsFormatException($"A compression pointer at offset {position} is cut off.");
                    }

                    int target = BinaryPrimitives.ReadUInt16BigEndian(_packet[position..]) & 0x3FFF;
                    if (target >= position)
                    {
                        throw new DnsFormatException(
                            target >= _packet.Length
                                ? $"A compression pointer at offset {position} points outside the packet (to {target})."
                                : $"A compression pointer at offset {position} points forward or to itself (to {target}); that could loop.");
                    }

                    if (!jumped)
                    {
                        Position = position + 2;
                        jumped = true;
                    }

                    position = target;
                    break;

                default:
                    throw new DnsFormatException($"A label at offset {position} has the reserved type bits 0x{length & 0xC0:X2} (a label has at most 63 bytes).");
            }
        }
    }

    /// <summary>
    /// Reads one record. A malformed header throws (the next record cannot be found); malformed data returns null with
    /// the reason and leaves the reader after the record, so that the next one can be read.
    /// </summary>
    public DnsRecord? ReadRecord(out string? malformed)
    {
        DnsName name = ReadName();
        ushort type = ReadUInt16("record type");
        ushort rawClass = ReadUInt16("record class");
        uint ttl = ReadUInt32("record TTL");
        int length = ReadUInt16("record data length");
        Need(length, $"the data of {name} type {type} ({length} bytes)");
        int end = Position + length;
        try
        {
            malformed = null;
            return ReadRecordData(name, type, rawClass, ttl, length);
        }
        catch (Exception e) when (e is DnsFormatException or ArgumentException)
        {
            Position = end;
            malformed = $"the {(DnsRecordType)type} record of {name}: {e.Message}";
            return null;
        }
    }

    private DnsRecord ReadRecordData(DnsName name, ushort type, ushort rawClass, uint ttl, int length)
    {
        int start = Position;
        int end = start + length;
        bool flush = type != (ushort)DnsRecordType.Opt && (rawClass & DnsClass.TopBit) != 0;
        ushort recordClass = type == (ushort)DnsRecordType.Opt ? rawClass : (ushort)(rawClass & ~DnsClass.TopBit);
        ReadOnlySpan<byte> data = _packet.Slice(start, length);
        DnsRecord record;
        switch ((DnsRecordType)type)
        {
            case DnsRecordType.A when length == 4:
            case DnsRecordType.Aaaa when length == 16:
                record = new DnsAddressRecord(name, ttl, new IPAddress(data));
                break;
            case DnsRecordType.A:
            case DnsRecordType.Aaaa:
                throw new DnsFormatException($"The {(DnsRecordType)type} record of {name} has {length} bytes of data.");
            case DnsRecordType.Ptr:
                record = new DnsPtrRecord(name, ttl, ReadNameWithin(end, "PTR"));
                break;
            case DnsRecordType.Srv:
                if (length < 7)
                {
                    throw new DnsFormatException($"The SRV record of {name} has {length} bytes of data; it needs at least 7.");
                }

                ushort priority = ReadUInt16("SRV priority"), weight = ReadUInt16("SRV weight"), port = ReadUInt16("SRV port");
                record = new DnsSrvRecord(name, ttl, priority, weight, port, ReadNameWithin(end, "SRV"));
                break;
            case DnsRecordType.Txt:
                record = new DnsTxtRecord(name, ttl, ReadTxtStrings(data, name));
                break;
            case DnsRecordType.Nsec:
                DnsName next = ReadNameWithin(end, "NSEC");
                record = new DnsNsecRecord(name, ttl, next, ReadTypeBitmaps(_packet[Position..end], name));
                break;
            case DnsRecordType.Opt:
                record = new DnsOptRecord(ttl, data.ToArray()) { Class = recordClass };
                break;
            default:
                record = new DnsUnknownRecord(name, ttl, type, data.ToArray());
                break;
        }

        Position = end;
        return record with { Class = recordClass, CacheFlush = flush };
    }

    private DnsName ReadNameWithin(int end, string what)
    {
        DnsName name = ReadName();
        if (Position > end)
        {
            throw new DnsFormatException($"The name in a {what} record runs past the record's data length.");
        }

        return name;
    }

    private static List<byte[]> ReadTxtStrings(ReadOnlySpan<byte> data, DnsName name)
    {
        var strings = new List<byte[]>();
        int i = 0;
        while (i < data.Length)
        {
            int length = data[i];
            if (i + 1 + length > data.Length)
            {
                throw new DnsFormatException($"A TXT string of {name} runs past the record's data length.");
            }

            strings.Add(data.Slice(i + 1, length).ToArray());
            i += 1 + length;
        }

        return strings;
    }

    private static List<DnsRecordType> ReadTypeBitmaps(ReadOnlySpan<byte> data, DnsName name)
    {
        var types = new List<DnsRecordType>();
        int i = 0;
        while (i < data.Length)
        {
            if (i + 2 > data.Length || data[i + 1] is 0 or > 32 || i + 2 + data[i + 1] > data.Length)
            {
                throw new DnsFormatException($"The NSEC type bitmap of {name} is malformed.");
            }

            int window = data[i], length = data[i + 1];
            for (int b = 0; b < length * 8; b++)
            {
                if ((data[i + 2 + (b / 8)] & (0x80 >> (b % 8))) != 0)
                {
                    types.Add((DnsRecordType)((window << 8) | b));
                }
            }

            i += 2 + length;
        }

        return types;
    }

    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static string DecodeLabel(ReadOnlySpan<byte> label, int offset)
    {
        try
        {
            // Strict: a replacement character would change the label's length when written back.
            return s_strictUtf8.GetString(label);
        }
        catch (DecoderFallbackException)
        {
            throw new DnsFormatException($"The label at offset {offset} is not valid UTF-8 (RFC 6762 §16).");
        }
    }

    private static DnsName DnsNameFromWire(List<string> labels) =>
        labels.Count == 0 ? DnsName.Root : DnsName.FromWire(labels);

    private readonly void Need(int count, string what)
    {
        if (Position + count > _packet.Length)
        {
            throw new DnsFormatException($"The packet ends before {what} (offset {Position}, {count} byte(s) needed, {_packet.Length - Position} left).");
        }
    }
}
