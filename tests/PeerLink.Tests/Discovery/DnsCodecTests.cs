using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Text;
using System.Text.Json;
using PeerLink.Discovery.Dns;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Discovery;

public sealed class DnsCodecTests
{
    public static TheoryData<string, int> RealPackets()
    {
        var data = new TheoryData<string, int>();
        foreach ((string file, string list) in new[] { ("mdns/esp-mdns-real-packets.json", "vectors"), ("mdns/avahi-lab-capture.json", "frames") })
        {
            using JsonDocument document = TestFiles.Json(file);
            for (int i = 0; i < document.RootElement.GetProperty(list).GetArrayLength(); i++)
            {
                data.Add(file, i);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(RealPackets))]
    public void Real_packets_decode_as_dns_packet_decodes_them(string file, int index)
    {
        (byte[] packet, JsonElement expected) = LoadPacket(file, index);

        Assert.True(DnsMessage.TryParse(packet, out DnsMessage? message, out string? error), error);
        AssertDecodedAs(expected, message!);
    }

    [Theory]
    [MemberData(nameof(RealPackets))]
    public void Real_packets_survive_a_write_and_read_with_our_compression(string file, int index)
    {
        (byte[] packet, JsonElement expected) = LoadPacket(file, index);
        Assert.True(DnsMessage.TryParse(packet, out DnsMessage? message, out _));

        byte[] written = message!.ToArray();

        Assert.True(DnsMessage.TryParse(written, out DnsMessage? again, out string? error), error);
        AssertDecodedAs(expected, again!);
        Assert.True(written.Length <= packet.Length + 8, $"ours {written.Length} bytes, theirs {packet.Length}: compression should be as good");
    }

    [Theory]
    [MemberData(nameof(RealPackets))]
    public void Every_truncation_of_a_real_packet_is_refused_or_keeps_only_whole_records_with_the_rest_counted(string file, int index)
    {
        (byte[] packet, _) = LoadPacket(file, index);
        Assert.True(DnsMessage.TryParse(packet, out DnsMessage? whole, out _));
        int promised = whole!.AllRecords().Count();
        for (int length = 0; length < packet.Length; length++)
        {
            if (DnsMessage.TryParse(packet.AsSpan(0, length), out DnsMessage? message, out string? error))
            {
                // The records before the cut stand; the ones the header promised but the packet did not hold are counted.
                Assert.True(message!.MalformedRecords > 0, $"prefix of {length} bytes parsed as if whole");
                Assert.Equal(promised, message.AllRecords().Count() + message.MalformedRecords);
                Assert.False(string.IsNullOrEmpty(message.MalformedReason));
                Assert.All(message.AllRecords().Zip(whole.AllRecords()), pair => Assert.True(pair.First.IsSameRecord(pair.Second)));
            }
            else
            {
                Assert.Null(message);
                Assert.False(string.IsNullOrEmpty(error));
            }
        }
    }

    [Fact]
    public void Random_corruption_of_real_packets_never_throws()
    {
        var random = new Random(6762);
        var packets = RealPackets().Select(row => LoadPacket((string)row[0], (int)row[1]).Packet).ToArray();
        int parsed = 0, refused = 0;
        for (int round = 0; round < 20_000; round++)
        {
            byte[] packet = (byte[])packets[random.Next(packets.Length)].Clone();
            int flips = random.Next(1, 6);
            for (int f = 0; f < flips; f++)
            {
                packet[random.Next(packet.Length)] = (byte)random.Next(256);
            }

            if (DnsMessage.TryParse(packet, out DnsMessage? message, out string? error))
            {
                parsed++;
                _ = message!.ToArray();   // what we accept, we can also write
            }
            else
            {
                refused++;
                Assert.False(string.IsNullOrEmpty(error));
            }
        }

        Assert.True(parsed > 0 && refused > 0, $"parsed {parsed}, refused {refused}");
    }

    [Fact]
    public void A_pointer_to_itself_is_refused()
    {
        // Header with one question whose name is a pointer to offset 12, where the pointer itself sits.
        byte[] packet = [.. Header(questions: 1), 0xC0, 12, 0, 1, 0, 1];
        AssertRefused(packet, "forward or to itself");
    }

    [Fact]
    public void A_two_pointer_loop_is_refused()
    {
        // Offset 12: label "a" then a pointer to 17; offset 17: a pointer back to 12. The second pointer points forward.
        byte[] packet = [.. Header(questions: 1), 1, (byte)'a', 0xC0, 17, 0, 0xC0, 12, 0, 1, 0, 1];
        Assert.False(DnsMessage.TryParse(packet, out _, out string? error));
        Assert.Contains("points forward", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pointer_outside_the_packet_is_refused() =>
        AssertRefused([.. Header(questions: 1), 0xFF, 0xFF, 0, 1, 0, 1], "outside the packet");

    [Fact]
    public void A_cut_off_pointer_is_refused() =>
        AssertRefused([.. Header(questions: 1), 4, (byte)'a', (byte)'b', (byte)'c', (byte)'d', 0xC0], "cut off");

    [Theory]
    [InlineData(0x40)]
    [InlineData(0x80)]
    [InlineData(0x7F)]
    public void Label_lengths_over_63_are_refused(byte length)
    {
        byte[] packet = [.. Header(questions: 1), length, .. Enumerable.Repeat((byte)'a', 130), 0, 0, 1, 0, 1];
        AssertRefused(packet, "reserved type bits");
    }

    [Fact]
    public void A_name_over_255_bytes_is_refused_even_when_made_of_pointers()
    {
        // 40 labels of 6 bytes ("abcdef") written once, then a name that repeats it through a pointer would exceed 255.
        var body = new List<byte>();
        for (int i = 0; i < 50; i++)
        {
            body.Add(5);
            body.AddRange("abcde"u8.ToArray());
        }

        body.Add(0);
        AssertRefused([.. Header(questions: 1), .. body, 0, 1, 0, 1], "longer than 255");
    }

    [Fact]
    public void Counts_that_lie_are_refused_before_anything_is_sized_from_them()
    {
        byte[] packet = Header(questions: 0, answers: 65535, authorities: 65535, additionals: 65535);
        long before = GC.GetAllocatedBytesForCurrentThread();

        AssertRefused(packet, "announces");

        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 * 1024, "no list was sized from the counts");
    }

    [Fact]
    public void A_count_one_higher_than_the_records_is_skipped()
    {
        byte[] valid = new DnsMessage { Flags = DnsMessage.ResponseFlags, Answers = [new DnsAddressRecord(DnsName.Parse("a.local"), 120, IPAddress.Parse("10.0.0.1"))] }.ToArray();
        valid[7] = 2;
        AssertSkipped(valid, "past the end of the packet");
    }

    [Fact]
    public void Rdlength_beyond_the_packet_is_refused()
    {
        byte[] packet = [.. Header(answers: 1), 1, (byte)'a', 0, 0, 1, 0, 1, 0, 0, 0, 120, 0xFF, 0xF0, 10, 0, 0, 1];
        AssertRefused(packet, "packet ends before the data");
    }

    [Fact]
    public void A_name_inside_rdata_that_runs_past_rdlength_is_skipped()
    {
        // PTR with rdlength 2 whose name is 3 bytes.
        byte[] packet = [.. Header(answers: 1), 1, (byte)'a', 0, 0, 12, 0, 1, 0, 0, 0, 120, 0, 2, 1, (byte)'b', 0];
        AssertSkipped(packet, "past the record's data length");
    }

    [Theory]
    [InlineData(1, 5)]
    [InlineData(28, 4)]
    public void Address_records_of_the_wrong_size_are_skipped(ushort type, byte length)
    {
        byte[] packet = [.. Header(answers: 1), 1, (byte)'a', 0, 0, (byte)type, 0, 1, 0, 0, 0, 120, 0, length, .. new byte[length]];
        AssertSkipped(packet, "bytes of data");
    }

    [Fact]
    public void A_txt_string_past_rdlength_is_skipped()
    {
        byte[] packet = [.. Header(answers: 1), 1, (byte)'a', 0, 0, 16, 0, 1, 0, 0, 0, 120, 0, 3, 5, (byte)'x', (byte)'y'];
        AssertSkipped(packet, "TXT string");
    }

    [Fact]
    public void A_malformed_nsec_bitmap_is_skipped()
    {
        byte[] packet = [.. Header(answers: 1), 1, (byte)'a', 0, 0, 47, 0, 1, 0, 0, 0, 120, 0, 4, 0xC0, 12, 0, 33];
        AssertSkipped(packet, "NSEC type bitmap");
    }

    [Fact]
    public void Invalid_utf8_in_a_label_is_refused()
    {
        byte[] packet = [.. Header(questions: 1), 2, 0xC3, 0x28, 0, 0, 1, 0, 1];
        AssertRefused(packet, "UTF-8");
    }

    [Fact]
    public void Every_record_type_round_trips_with_the_mdns_bits()
    {
        DnsName instance = DnsName.FromLabels(["Kitchen. Light \\ 2", "_peerlink", "_tcp", "local"]);
        DnsName host = DnsName.Parse("kitchen.local");
        var message = new DnsMessage
        {
            Id = 0,
            Flags = DnsMessage.ResponseFlags,
            Questions = [new DnsQuestion(instance, DnsRecordType.Any, UnicastResponse: true)],
            Answers =
            [
                new DnsPtrRecord(DnsName.Parse("_peerlink._tcp.local"), 4500, instance),
                new DnsSrvRecord(instance, 120, 0, 0, 4242, host) { CacheFlush = true },
                new DnsTxtRecord(instance, 4500, ["v=1"u8.ToArray(), "flag"u8.ToArray(), "empty="u8.ToArray()]) { CacheFlush = true },
                new DnsTxtRecord(DnsName.Parse("other.local"), 4500, []),
                new DnsAddressRecord(host, 120, IPAddress.Parse("192.168.1.20")) { CacheFlush = true },
                new DnsAddressRecord(host, 120, IPAddress.Parse("fe80::1")) { CacheFlush = true },
            ],
            Authorities = [new DnsUnknownRecord(host, 60, 99, [1, 2, 3])],
            Additionals =
            [
                new DnsNsecRecord(host, 120, host, [DnsRecordType.A, DnsRecordType.Aaaa, DnsRecordType.Srv, (DnsRecordType)1234]) { CacheFlush = true },
                new DnsOptRecord(0, [0, 4, 0, 2, 0xAB, 0xCD]) { Class = 1440 },
            ],
        };

        byte[] packet = message.ToArray();
        Assert.True(DnsMessage.TryParse(packet, out DnsMessage? read, out string? error), error);

        Assert.Equal(DnsMessage.ResponseFlags, read!.Flags);
        Assert.True(read.IsResponse);
        DnsQuestion question = Assert.Single(read.Questions);
        Assert.Equal(instance, question.Name);
        Assert.Equal("Kitchen. Light \\ 2", question.Name.Labels[0]);
        Assert.True(question.UnicastResponse);
        Assert.Equal(message.Answers.Count, read.Answers.Count);
        for (int i = 0; i < message.Answers.Count; i++)
        {
            Assert.True(message.Answers[i].IsSameRecord(read.Answers[i]), $"{message.Answers[i]} != {read.Answers[i]}");
            Assert.Equal(message.Answers[i].CacheFlush, read.Answers[i].CacheFlush);
            Assert.Equal(message.Answers[i].Ttl, read.Answers[i].Ttl);
        }

        Assert.True(message.Authorities[0].IsSameRecord(read.Authorities[0]));
        Assert.Equal((DnsRecordType)99, read.Authorities[0].Type);
        DnsNsecRecord nsec = Assert.IsType<DnsNsecRecord>(read.Additionals[0]);
        Assert.Equal([DnsRecordType.A, DnsRecordType.Aaaa, DnsRecordType.Srv, (DnsRecordType)1234], nsec.Types.Order());
        DnsOptRecord opt = Assert.IsType<DnsOptRecord>(read.Additionals[1]);
        Assert.Equal(1440, opt.Class);
        Assert.False(opt.CacheFlush);
        Assert.Equal([0, 4, 0, 2, 0xAB, 0xCD], opt.Options);

        // The empty TXT went out as one empty string (RFC 6763 §6.1) and reads back as such.
        Assert.Equal([[]], ((DnsTxtRecord)read.Answers[3]).Strings);
    }

    [Fact]
    public void Names_are_compressed_and_case_is_ignored_when_matching()
    {
        var message = new DnsMessage
        {
            Answers =
            [
                new DnsPtrRecord(DnsName.Parse("_peerlink._tcp.local"), 4500, DnsName.Parse("a._peerlink._tcp.local")),
                new DnsPtrRecord(DnsName.Parse("_PEERLINK._tcp.LOCAL"), 4500, DnsName.Parse("b._peerlink._tcp.local")),
            ],
        };

        byte[] packet = message.ToArray();

        // Uncompressed the two records would need 2 × (22 + 10 + 24) bytes; every repeat must be a 2-byte pointer.
        Assert.Equal(12 + (22 + 10 + 2 + 2) + (2 + 10 + 2 + 2), packet.Length);
        Assert.Equal(DnsName.Parse("_peerlink._tcp.local"), DnsName.Parse("_PeerLink._TCP.local"));
        Assert.NotEqual(DnsName.Parse("a.local"), DnsName.FromLabels(["a.local"]));
    }

    [Fact]
    public void A_rewound_record_leaves_no_pointer_behind()
    {
        var writer = new DnsWriter();
        writer.WriteBytes(new byte[DnsMessage.HeaderSize]);
        writer.WriteQuestion(new DnsQuestion(DnsName.Parse("x.local"), DnsRecordType.A));
        var mark = writer.Mark();
        writer.WriteQuestion(new DnsQuestion(DnsName.Parse("gone._peerlink._tcp.local"), DnsRecordType.Ptr));
        writer.Rewind(mark);
        writer.WriteQuestion(new DnsQuestion(DnsName.Parse("_peerlink._tcp.local"), DnsRecordType.Ptr));
        byte[] packet = writer.WrittenSpan.ToArray();
        packet[5] = 2;

        Assert.True(DnsMessage.TryParse(packet, out DnsMessage? message, out string? error), error);
        Assert.Equal(DnsName.Parse("_peerlink._tcp.local"), message!.Questions[1].Name);
    }

    [Theory]
    [InlineData("a..local")]
    [InlineData("this-label-is-far-too-long-for-dns-because-it-has-more-than-sixty-three-bytes.local")]
    public void Invalid_names_from_the_caller_are_argument_errors(string text) =>
        Assert.Equal("text", Assert.Throws<ArgumentException>(() => DnsName.Parse(text)).ParamName);

    [Fact]
    public void A_name_over_255_bytes_from_the_caller_is_an_argument_error() =>
        Assert.Throws<ArgumentException>(() => DnsName.FromLabels(Enumerable.Repeat("abcdefghij", 25)));

    [Fact]
    public void Escaped_names_print_and_parse_back() =>
        Assert.Equal(["My.Device\\1", "_peerlink", "_tcp", "local"], DnsName.Parse(DnsName.FromLabels(["My.Device\\1", "_peerlink", "_tcp", "local"]).ToString()).Labels);

    private static (byte[] Packet, JsonElement Expected) LoadPacket(string file, int index)
    {
        using JsonDocument document = TestFiles.Json(file);
        JsonElement item = document.RootElement.GetProperty(file.Contains("avahi", StringComparison.Ordinal) ? "frames" : "vectors")[index];
        byte[] packet = Convert.FromHexString(item.GetProperty("hex").GetString()!);
        Assert.Equal(item.GetProperty("length").GetInt32(), packet.Length);
        return (packet, item.GetProperty("decoded_by_dns_packet_5_6_1").Clone());
    }

    private static void AssertDecodedAs(JsonElement expected, DnsMessage message)
    {
        Assert.Equal(expected.GetProperty("id").GetInt32(), message.Id);
        Assert.Equal(expected.GetProperty("flags").GetInt32(), message.Flags & 0x7FFF & ~0x8000);
        Assert.Equal(expected.GetProperty("type").GetString() == "response", message.IsResponse);

        JsonElement questions = expected.GetProperty("questions");
        Assert.Equal(questions.GetArrayLength(), message.Questions.Count);
        for (int i = 0; i < message.Questions.Count; i++)
        {
            JsonElement q = questions[i];
            Assert.Equal(q.GetProperty("name").GetString(), NameText(message.Questions[i].Name));
            Assert.Equal(q.GetProperty("type").GetString(), TypeText(message.Questions[i].Type));
            string cls = q.GetProperty("class").GetString()!;
            Assert.Equal(cls == "UNKNOWN_32769", message.Questions[i].UnicastResponse);
        }

        AssertRecords(expected.GetProperty("answers"), message.Answers);
        AssertRecords(expected.GetProperty("authorities"), message.Authorities);
        AssertRecords(expected.GetProperty("additionals"), message.Additionals);
    }

    private static void AssertRecords(JsonElement expected, List<DnsRecord> records)
    {
        Assert.Equal(expected.GetArrayLength(), records.Count);
        for (int i = 0; i < records.Count; i++)
        {
            JsonElement e = expected[i];
            DnsRecord r = records[i];
            string type = e.GetProperty("type").GetString()!;
            Assert.Equal(type, TypeText(r.Type));
            if (r is DnsOptRecord opt)
            {
                Assert.Equal(e.GetProperty("udpPayloadSize").GetInt32(), opt.Class);
                JsonElement option = e.GetProperty("options")[0];
                Assert.Equal(option.GetProperty("code").GetInt32(), (opt.Options[0] << 8) | opt.Options[1]);
                Assert.Equal(option.GetProperty("data").GetProperty("hex").GetString(), Convert.ToHexStringLower(opt.Options.AsSpan(4)));
                continue;
            }

            Assert.Equal(e.GetProperty("name").GetString(), NameText(r.Name));
            Assert.Equal((uint)e.GetProperty("ttl").GetInt64(), r.Ttl);
            Assert.Equal(e.GetProperty("flush").GetBoolean(), r.CacheFlush);
            Assert.Equal("IN", e.GetProperty("class").GetString());
            JsonElement data = e.GetProperty("data");
            switch (r)
            {
                case DnsAddressRecord a:
                    Assert.Equal(IPAddress.Parse(data.GetString()!), a.Address);
                    break;
                case DnsPtrRecord p:
                    Assert.Equal(data.GetString(), NameText(p.Target));
                    break;
                case DnsSrvRecord s:
                    Assert.Equal(data.GetProperty("priority").GetInt32(), s.Priority);
                    Assert.Equal(data.GetProperty("weight").GetInt32(), s.Weight);
                    Assert.Equal(data.GetProperty("port").GetInt32(), s.Port);
                    Assert.Equal(data.GetProperty("target").GetString(), NameText(s.Target));
                    break;
                case DnsTxtRecord t:
                    Assert.Equal(data.EnumerateArray().Select(x => x.GetProperty("hex").GetString()).ToArray(), t.Strings.Select(s => Convert.ToHexStringLower(s)).ToArray());
                    break;
                case DnsNsecRecord n:
                    Assert.Equal(data.GetProperty("nextDomain").GetString(), NameText(n.NextName));
                    Assert.Equal(data.GetProperty("rrtypes").EnumerateArray().Select(x => x.GetString()).Order(), n.Types.Select(TypeText).Order());
                    break;
                default:
                    Assert.Fail($"Unexpected record {r}");
                    break;
            }
        }
    }

    // dns-packet prints names with plain dots (no escaping) and types in upper case.
    private static string NameText(DnsName name) => name.LabelCount == 0 ? "." : string.Join('.', name.Labels);

    private static string TypeText(DnsRecordType type) => type switch
    {
        DnsRecordType.Aaaa => "AAAA",
        DnsRecordType.Ptr => "PTR",
        DnsRecordType.Srv => "SRV",
        DnsRecordType.Txt => "TXT",
        DnsRecordType.Nsec => "NSEC",
        DnsRecordType.Opt => "OPT",
        DnsRecordType.Any => "ANY",
        DnsRecordType.A => "A",
        _ => "UNKNOWN_" + (int)type,
    };

    private static byte[] Header(int questions = 0, int answers = 0, int authorities = 0, int additionals = 0) => unchecked(
        [0, 0, 0, 0, (byte)(questions >> 8), (byte)questions, (byte)(answers >> 8), (byte)answers, (byte)(authorities >> 8), (byte)authorities, (byte)(additionals >> 8), (byte)additionals]);

    /// <summary>The packet parses, and its one malformed record is left out and counted with the reason.</summary>
    private static void AssertSkipped(byte[] packet, string reason)
    {
        Assert.True(DnsMessage.TryParse(packet, out DnsMessage? message, out string? error), error);
        Assert.Equal(1, message!.MalformedRecords);
        Assert.Contains(reason, message.MalformedReason, StringComparison.Ordinal);
    }

    private static void AssertRefused(byte[] packet, string reason)
    {
        Assert.False(DnsMessage.TryParse(packet, out DnsMessage? message, out string? error));
        Assert.Null(message);
        Assert.True(error!.Contains(reason, StringComparison.Ordinal), error);
    }
}
