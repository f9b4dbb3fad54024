using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Discovery;
using PeerLink.Discovery.Dns;
using PeerLink.Discovery.Mdns;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Discovery;

/// <summary>The mDNS protocol logic on an in-memory link with a manual clock: every timing is exact.</summary>
public sealed class MdnsEngineTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Advertising_probes_three_times_250_ms_apart_then_announces_twice_one_second_apart()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a");
        net.Clock.Advance(TimeSpan.FromSeconds(3));   // the host name is probed and announced first
        net.Packets.Clear();
        TimeSpan start = net.Clock.Elapsed;

        Task<ServiceRegistration> advertising = a.AdvertiseAsync(Profile("Kitchen Light", ("v", "1"), ("flag", null)));
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        ServiceRegistration registration = await advertising.WaitAsync(Timeout);
        Assert.Equal("Kitchen Light", registration.InstanceName);

        var probes = net.Messages(p => true).Where(m => !m.Message.IsResponse).ToList();
        Assert.Equal(3, probes.Count);
        Assert.True(probes[0].Sent.At - start <= TimeSpan.FromMilliseconds(250), "the first probe within 250 ms");
        Assert.Equal(TimeSpan.FromMilliseconds(250), probes[1].Sent.At - probes[0].Sent.At);
        Assert.Equal(TimeSpan.FromMilliseconds(250), probes[2].Sent.At - probes[1].Sent.At);
        foreach ((var sent, DnsMessage probe) in probes)
        {
            DnsQuestion question = Assert.Single(probe.Questions);
            Assert.Equal(DnsRecordType.Any, question.Type);
            Assert.Equal("Kitchen Light", question.Name.Labels[0]);
            Assert.Contains(probe.Authorities, r => r is DnsSrvRecord { Port: 4242 });
            Assert.Contains(probe.Authorities, r => r is DnsTxtRecord);
        }

        Assert.True(probes[0].Message.Questions[0].UnicastResponse, "the first probe asks for unicast (QU)");
        Assert.False(probes[1].Message.Questions[0].UnicastResponse);

        var announcements = net.Messages().Where(m => m.Message.IsResponse).ToList();
        Assert.Equal(2, announcements.Count);
        Assert.Equal(TimeSpan.FromMilliseconds(250), announcements[0].Sent.At - probes[2].Sent.At);
        Assert.Equal(TimeSpan.FromSeconds(1), announcements[1].Sent.At - announcements[0].Sent.At);
        DnsMessage announcement = announcements[0].Message;
        Assert.Contains(announcement.Answers, r => r is DnsPtrRecord { CacheFlush: false, Ttl: 4500 } p && p.Name.ToString() == "_peerlink._tcp.local");
        Assert.Contains(announcement.Answers, r => r is DnsPtrRecord { CacheFlush: false } p && p.Name.ToString() == "_services._dns-sd._udp.local");
        Assert.Contains(announcement.Answers, r => r is DnsSrvRecord { CacheFlush: true, Ttl: 120, Port: 4242 } s && s.Target.ToString() == "host-a.local");
        Assert.Contains(announcement.Answers, r => r is DnsAddressRecord { CacheFlush: true } x && x.Address.Equals(IPAddress.Parse("10.0.0.1")));
        DnsTxtRecord txt = Assert.Single(announcement.Answers.OfType<DnsTxtRecord>());
        Assert.True(txt.CacheFlush);
        Assert.Equal(["v=1", "flag"], txt.Strings.Select(s => System.Text.Encoding.UTF8.GetString(s)));
    }

    [Fact]
    public async Task A_browser_finds_an_advertised_service_with_its_address_port_and_properties()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await AdvertiseAsync(net, a, Profile("Kitchen Light", ("v", "1"), ("mode", "on"), ("bare", null)));
        net.Clock.Advance(TimeSpan.FromSeconds(2));

        // b arrives after the announcements, so it has to ask.
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        net.Packets.Clear();
        TimeSpan start = net.Clock.Elapsed;

        await using IAsyncEnumerator<ServiceEvent> browse = await BrowseUntilFirstAsync(net, b, TimeSpan.FromMilliseconds(300));

        ServiceEvent found = browse.Current;
        Assert.Equal(ServiceEventKind.Found, found.Kind);
        Assert.Equal("Kitchen Light", found.Instance.InstanceName);
        Assert.Equal("_peerlink._tcp.local", found.Instance.ServiceType);
        Assert.Equal("host-a.local", found.Instance.HostName);
        Assert.Equal(4242, found.Instance.Port);
        Assert.Equal([IPAddress.Parse("10.0.0.1")], found.Instance.Addresses);
        Assert.Equal("1", found.Instance.Properties["V"]);
        Assert.Equal("on", found.Instance.Properties["mode"]);
        Assert.True(found.Instance.Properties.ContainsKey("bare"));
        Assert.Null(found.Instance.Properties["bare"]);

        // One query (within 20–120 ms, QU as the first query is), one unicast answer at once (the records were multicast
        // within a quarter of their TTL) carrying SRV, TXT and A as additional records: no second round trip.
        Assert.True(net.Packets.Count > 0, "nothing was sent");
        var query = net.Messages().First(m => !m.Message.IsResponse);
        Assert.InRange(query.Sent.At - start, TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(120));
        Assert.True(query.Message.Questions[0].UnicastResponse);
        var answer = net.Messages().Single(m => m.Message.IsResponse);
        Assert.Equal(query.Sent.At, answer.Sent.At);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.0.0.2"), 5353), answer.Sent.To);
        Assert.Contains(answer.Message.Additionals, r => r is DnsSrvRecord);
        Assert.Contains(answer.Message.Additionals, r => r is DnsTxtRecord);
        Assert.Contains(answer.Message.Additionals, r => r is DnsAddressRecord);
    }

    [Fact]
    public async Task Subtypes_are_browsable_and_instances_resolvable_by_name()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        ServiceProfile printer = Profile("Colour Printer", ("rp", "lab"));
        printer.Subtypes.Add("_color");
        await AdvertiseAsync(net, a, printer);
        await AdvertiseAsync(net, a, Profile("Plain Printer"));
        net.Clock.Advance(TimeSpan.FromSeconds(2));
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        net.Clock.Advance(TimeSpan.FromSeconds(3));

        // Resolve one instance by name: SRV, TXT and the address, asked for directly.
        Task<ServiceInstance> resolving = b.ResolveAsync("Colour Printer", "_peerlink._tcp");
        net.Clock.Advance(TimeSpan.FromMilliseconds(300));
        ServiceInstance resolved = await resolving.WaitAsync(Timeout);
        Assert.Equal(4242, resolved.Port);
        Assert.Equal("lab", resolved.Properties["rp"]);
        Assert.Equal([IPAddress.Parse("10.0.0.1")], resolved.Addresses);

        // A subtype browse sees only the instance that has the subtype.
        using var stop = new CancellationTokenSource();
        await using IAsyncEnumerator<ServiceEvent> browse = await BrowseUntilFirstAsync(net, b, TimeSpan.FromSeconds(3), "_color._sub._peerlink._tcp", stop.Token);
        Assert.Equal("Colour Printer", browse.Current.Instance.InstanceName);
        ValueTask<bool> next = browse.MoveNextAsync();
        net.Clock.Advance(TimeSpan.FromSeconds(5));
        Assert.False(next.IsCompleted, "the plain printer has no _color subtype");
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => next.AsTask().WaitAsync(Timeout));
    }

    [Fact]
    public async Task Resolving_an_absent_instance_ends_with_the_callers_cancellation()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        using var cancel = new CancellationTokenSource();
        Task<ServiceInstance> resolving = b.ResolveAsync("Nobody", "_peerlink._tcp", cancel.Token);
        net.Clock.Advance(TimeSpan.FromSeconds(10));
        Assert.False(resolving.IsCompleted);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => resolving.WaitAsync(Timeout));
    }

    [Fact]
    public async Task Browse_queries_back_off_from_one_second_doubling_and_carry_known_answers()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await AdvertiseAsync(net, a, Profile("Kitchen Light"));
        net.Clock.Advance(TimeSpan.FromSeconds(2));
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        net.Packets.Clear();

        await using IAsyncEnumerator<ServiceEvent> browse = await BrowseUntilFirstAsync(net, b, TimeSpan.FromSeconds(40));

        var queries = net.Messages(p => p.From.Equals(IPAddress.Parse("10.0.0.2")))
            .Where(m => !m.Message.IsResponse && m.Message.Questions.Any(q => q.Type == DnsRecordType.Ptr)).ToList();
        TimeSpan[] gaps = queries.Zip(queries.Skip(1), (x, y) => y.Sent.At - x.Sent.At).ToArray();
        Assert.Equal([TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(16)], gaps.Take(5));

        // After the first answer every query lists the PTR as a known answer, and nobody answers again.
        Assert.All(queries.Skip(1), q => Assert.Contains(q.Message.Answers, r => r is DnsPtrRecord));
        Assert.Single(PeerLinkPtrResponsesFrom(net, "10.0.0.1"));
    }

    [Fact]
    public async Task Two_nodes_claiming_one_name_end_with_one_renamed_and_both_visible()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        await using ServiceDiscovery c = net.Node("10.0.0.3", "host-c", seed: 3);
        net.Clock.Advance(TimeSpan.FromSeconds(3));

        // Both at once: the probes meet and the tie-break decides (RFC 6762 §8.2).
        Task<ServiceRegistration> first = a.AdvertiseAsync(Profile("Sensor"));
        Task<ServiceRegistration> second = b.AdvertiseAsync(Profile("Sensor"));
        net.Clock.Advance(TimeSpan.FromSeconds(6));
        ServiceRegistration ra = await first.WaitAsync(Timeout), rb = await second.WaitAsync(Timeout);
        Assert.Equal(["Sensor", "Sensor (2)"], new[] { ra.InstanceName, rb.InstanceName }.Order());

        // Later, a third claims the name of an established one: it learns of the conflict while probing.
        Task<ServiceRegistration> third = c.AdvertiseAsync(Profile("Sensor"));
        net.Clock.Advance(TimeSpan.FromSeconds(6));
        ServiceRegistration rc = await third.WaitAsync(Timeout);
        Assert.Equal("Sensor (3)", rc.InstanceName);

        List<ServiceEvent> events = await BrowseForAsync(net, c, TimeSpan.FromSeconds(2), expected: 3);
        Assert.Equal(["Sensor", "Sensor (2)", "Sensor (3)"], events.Where(e => e.Kind == ServiceEventKind.Found).Select(e => e.Instance.InstanceName).Order());
    }

    [Fact]
    public async Task A_host_name_conflict_renames_the_host_and_moves_the_services()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "same", seed: 1);
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        await using ServiceDiscovery b = net.Node("10.0.0.2", "same", seed: 2);
        await AdvertiseAsync(net, b, Profile("B"));

        Assert.Equal("same.local", a.HostName);
        Assert.Equal("same-2.local", b.HostName);
        List<ServiceEvent> events = await BrowseForAsync(net, a, TimeSpan.FromSeconds(2), expected: 1);
        ServiceInstance found = Assert.Single(events).Instance;
        Assert.Equal("same-2.local", found.HostName);
        Assert.Equal([IPAddress.Parse("10.0.0.2")], found.Addresses);
    }

    [Fact]
    public async Task A_goodbye_removes_the_service_from_browsers_within_a_second()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        ServiceRegistration registration = await AdvertiseAsync(net, a, Profile("Lamp"));

        await using IAsyncEnumerator<ServiceEvent> browse = await BrowseUntilFirstAsync(net, b, TimeSpan.FromMilliseconds(300));
        Assert.Equal(ServiceEventKind.Found, browse.Current.Kind);

        ValueTask<bool> next = browse.MoveNextAsync();
        await registration.DisposeAsync();
        DnsMessage goodbye = net.Messages().Last().Message;
        Assert.True(goodbye.IsResponse);
        Assert.All(goodbye.Answers, r => Assert.Equal(0u, r.Ttl));
        Assert.False(next.IsCompleted, "the record lives one more second (RFC 6762 §10.1)");

        net.Clock.Advance(TimeSpan.FromSeconds(1));
        Assert.True(await next.AsTask().WaitAsync(Timeout));
        Assert.Equal(ServiceEventKind.Lost, browse.Current.Kind);
        Assert.Equal("Lamp", browse.Current.Instance.InstanceName);
    }

    [Fact]
    public async Task Txt_updates_are_announced_and_reported_as_updates()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        ServiceRegistration registration = await AdvertiseAsync(net, a, Profile("Lamp", ("state", "off")));

        await using IAsyncEnumerator<ServiceEvent> browse = await BrowseUntilFirstAsync(net, b, TimeSpan.FromMilliseconds(300));
        Assert.Equal("off", browse.Current.Instance.Properties["state"]);

        ValueTask<bool> next = browse.MoveNextAsync();
        registration.UpdateProperties([new("state", "on")]);
        net.Clock.Advance(TimeSpan.FromSeconds(2));   // the cache-flush bit retires the old TXT one second later
        Assert.True(await next.AsTask().WaitAsync(Timeout));
        Assert.Equal(ServiceEventKind.Updated, browse.Current.Kind);
        Assert.Equal("on", browse.Current.Instance.Properties["state"]);
    }

    [Fact]
    public async Task Known_answers_suppress_the_response_and_unique_answers_are_immediate()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await AdvertiseAsync(net, a, Profile("Lamp"));
        MdnsTestNetwork.Member raw = net.Raw("10.0.0.9");
        DnsName type = DnsName.Parse("_peerlink._tcp.local"), instance = type.Prepend("Lamp");

        // A PTR question with the PTR as a known answer (TTL above half): no answer at all.
        net.Packets.Clear();
        Send(raw, new DnsMessage { Questions = [new DnsQuestion(type, DnsRecordType.Ptr)], Answers = [new DnsPtrRecord(type, 4000, instance)] });
        net.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.DoesNotContain(net.Messages(), m => m.Message.IsResponse);

        // The same known answer at under half its TTL does not suppress.
        Send(raw, new DnsMessage { Questions = [new DnsQuestion(type, DnsRecordType.Ptr)], Answers = [new DnsPtrRecord(type, 2000, instance)] });
        net.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Single(net.Messages(), m => m.Message.IsResponse);

        // A unique record (SRV) is answered at once, with the address as an additional record.
        net.Packets.Clear();
        Send(raw, new DnsMessage { Questions = [new DnsQuestion(instance, DnsRecordType.Srv)] });
        var answer = Assert.Single(net.Messages(), m => m.Message.IsResponse);
        Assert.Equal(net.Clock.Elapsed, answer.Sent.At);
        Assert.IsType<DnsSrvRecord>(Assert.Single(answer.Message.Answers));
        Assert.Contains(answer.Message.Additionals, r => r is DnsAddressRecord);

        // Asked again at once: the per-record rate limit (one multicast a second) holds it back.
        net.Packets.Clear();
        Send(raw, new DnsMessage { Questions = [new DnsQuestion(instance, DnsRecordType.Srv)] });
        Assert.DoesNotContain(net.Messages(), m => m.Message.IsResponse);
    }

    [Fact]
    public async Task An_answer_from_another_responder_suppresses_our_pending_duplicate()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await AdvertiseAsync(net, a, Profile("Lamp"));
        net.Clock.Advance(TimeSpan.FromSeconds(2));
        MdnsTestNetwork.Member raw = net.Raw("10.0.0.9");
        DnsName type = DnsName.Parse("_peerlink._tcp.local"), instance = type.Prepend("Lamp");
        net.Packets.Clear();

        Send(raw, new DnsMessage { Questions = [new DnsQuestion(type, DnsRecordType.Ptr)] });
        Send(raw, new DnsMessage { Flags = DnsMessage.ResponseFlags, Answers = [new DnsPtrRecord(type, 4500, instance)] });
        net.Clock.Advance(TimeSpan.FromSeconds(1));

        Assert.DoesNotContain(net.Messages(p => p.From.Equals(IPAddress.Parse("10.0.0.1"))), m => m.Message.IsResponse);
    }

    [Fact]
    public async Task Qu_and_legacy_unicast_questions_get_unicast_answers()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await AdvertiseAsync(net, a, Profile("Lamp"));
        MdnsTestNetwork.Member raw = net.Raw("10.0.0.9");
        DnsName instance = DnsName.Parse("_peerlink._tcp.local").Prepend("Lamp");
        net.Packets.Clear();

        // QU for a record multicast within a quarter of its TTL: a unicast answer to the asker's port 5353.
        Send(raw, new DnsMessage { Questions = [new DnsQuestion(instance, DnsRecordType.Txt, UnicastResponse: true)] });
        var unicast = Assert.Single(net.Messages(), m => m.Message.IsResponse);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.0.0.9"), 5353), unicast.Sent.To);

        // A legacy querier (source port 40000): unicast to that port, its ID and question echoed, TTL at most 10 s.
        net.Packets.Clear();
        raw.SendFrom(new DnsMessage { Id = 0x1234, Questions = [new DnsQuestion(instance, DnsRecordType.Srv)] }.ToArray(), 40000, null);
        var legacy = Assert.Single(net.Messages(), m => m.Message.IsResponse);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.0.0.9"), 40000), legacy.Sent.To);
        Assert.Equal(0x1234, legacy.Message.Id);
        Assert.Equal(instance, Assert.Single(legacy.Message.Questions).Name);
        DnsRecord srv = Assert.Single(legacy.Message.Answers);
        Assert.Equal(10u, srv.Ttl);
        Assert.False(srv.CacheFlush);
    }

    [Fact]
    public async Task A_legacy_unicast_answer_carries_the_same_additional_records_as_a_multicast_one()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await AdvertiseAsync(net, a, Profile("Lamp"));
        net.Clock.Advance(TimeSpan.FromSeconds(2));
        MdnsTestNetwork.Member raw = net.Raw("10.0.0.9");
        DnsName type = DnsName.Parse("_peerlink._tcp.local"), instance = type.Prepend("Lamp");

        // A legacy PTR browse (source port 40000): the answer names the instance, and the SRV, TXT and address that a
        // multicast answer carries come with it, TTLs capped at 10 s and no cache-flush bits (RFC 6762 §6.7).
        net.Packets.Clear();
        raw.SendFrom(new DnsMessage { Id = 7, Questions = [new DnsQuestion(type, DnsRecordType.Ptr)] }.ToArray(), 40000, null);
        net.Clock.Advance(TimeSpan.FromSeconds(1));
        var legacy = Assert.Single(net.Messages(), m => m.Message.IsResponse);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.0.0.9"), 40000), legacy.Sent.To);
        Assert.Contains(legacy.Message.Answers, r => r is DnsPtrRecord p && p.Target.Equals(instance));
        Assert.Contains(legacy.Message.Additionals, r => r is DnsSrvRecord { Port: 4242 });
        Assert.Contains(legacy.Message.Additionals, r => r is DnsTxtRecord);
        Assert.Contains(legacy.Message.Additionals, r => r is DnsAddressRecord x && x.Address.Equals(IPAddress.Parse("10.0.0.1")));
        Assert.All(legacy.Message.AllRecords(), r => Assert.True(r.Ttl <= 10 && !r.CacheFlush, $"{r.Type}: TTL {r.Ttl}, flush {r.CacheFlush}"));
    }

    [Fact]
    public async Task A_conflicting_record_without_the_cache_flush_bit_is_still_a_conflict()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        ServiceRegistration registration = await AdvertiseAsync(net, a, Profile("Lamp"));
        net.Clock.Advance(TimeSpan.FromSeconds(2));
        MdnsTestNetwork.Member raw = net.Raw("10.0.0.9");
        DnsName instance = DnsName.Parse("_peerlink._tcp.local").Prepend("Lamp");

        // Another host answers for our established instance name with its own SRV, without the cache-flush bit, and
        // keeps defending it: we probe again, meet its answer, and rename (RFC 6762 §9), as Avahi does.
        var theirs = new DnsSrvRecord(instance, 120, 0, 0, 9999, DnsName.Parse("other.local"));
        net.Packets.Clear();
        Send(raw, new DnsMessage { Flags = DnsMessage.ResponseFlags, Answers = [theirs] });
        net.Clock.Advance(TimeSpan.FromMilliseconds(300));
        Assert.Contains(net.Messages(p => p.From.Equals(IPAddress.Parse("10.0.0.1"))), m => !m.Message.IsResponse && m.Message.Authorities.Count > 0);   // a probe
        Send(raw, new DnsMessage { Flags = DnsMessage.ResponseFlags, Answers = [theirs] });
        net.Clock.Advance(TimeSpan.FromSeconds(5));

        Assert.Equal("Lamp (2)", registration.InstanceName);
    }

    [Fact]
    public async Task One_malformed_record_does_not_hide_the_valid_records_of_its_packet()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        MdnsTestNetwork.Member raw = net.Raw("10.0.0.9");
        DnsName type = DnsName.Parse("_http._tcp.local"), instance = type.Prepend("Printer"), host = DnsName.Parse("printer.local");

        // A deployed responder's answer: PTR, SRV, TXT and A, with a malformed NSEC record among them (its type bitmap
        // claims a window longer than the record's data).
        byte[] packet = new DnsMessage
        {
            Flags = DnsMessage.ResponseFlags,
            Answers = [new DnsPtrRecord(type, 4500, instance), new DnsSrvRecord(instance, 120, 0, 0, 631, host) { CacheFlush = true }],
            Additionals = [new DnsNsecRecord(instance, 120, instance, [DnsRecordType.Srv, DnsRecordType.Txt]), new DnsTxtRecord(instance, 4500, [[.. "rp=ipp"u8]]) { CacheFlush = true }, new DnsAddressRecord(host, 120, IPAddress.Parse("10.0.0.9")) { CacheFlush = true }],
        }.ToArray();
        int nsec = IndexOfNsecBitmapLength(packet);
        packet[nsec] = 0x20;   // the bitmap length: 32 bytes, where the record has 1

        Assert.True(DnsMessage.TryParse(packet, out DnsMessage? parsed, out string? error), error);
        Assert.Equal(1, parsed!.MalformedRecords);
        Assert.Contains("NSEC", parsed.MalformedReason, StringComparison.Ordinal);
        Assert.Equal(4, parsed.AllRecords().Count());

        using var cancel = new CancellationTokenSource(Timeout);
        IAsyncEnumerator<ServiceEvent> browse = b.BrowseAsync("_http._tcp", cancel.Token).GetAsyncEnumerator(cancel.Token);
        ValueTask<bool> next = browse.MoveNextAsync();
        raw.SendFrom(packet, 5353, null);
        net.Clock.Advance(TimeSpan.FromSeconds(1));
        Assert.True(await next.AsTask().WaitAsync(Timeout));
        Assert.Equal(ServiceEventKind.Found, browse.Current.Kind);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.0.0.9"), 631), Assert.Single(browse.Current.Instance.EndPoints));
        Assert.Equal("ipp", browse.Current.Instance.Properties["rp"]);
        await browse.DisposeAsync();
    }

    /// <summary>The offset of the NSEC record's first bitmap length byte: after its RDATA's next-domain name.</summary>
    private static int IndexOfNsecBitmapLength(byte[] packet)
    {
        Assert.True(DnsMessage.TryParse(packet, out DnsMessage? message, out _));
        // Walk the records by hand: the NSEC is the first additional; its data is a compressed name (2 bytes), then
        // window 0 and the bitmap length.
        var reader = new DnsReader(packet) { Position = DnsMessage.HeaderSize };
        foreach (DnsRecord answer in message!.Answers)
        {
            reader.ReadRecord(out _);
        }

        reader.ReadName();
        reader.Position += 8;   // type, class, TTL
        int dataLength = reader.ReadUInt16("length");
        int start = reader.Position;
        reader.ReadName();
        Assert.True(reader.Position < start + dataLength);
        return reader.Position + 1;   // window number, then the length
    }

    [Fact]
    public async Task Cached_records_are_refreshed_at_80_to_95_percent_and_dropped_at_expiry()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        MdnsTestNetwork.Member raw = net.Raw("10.0.0.9");
        DnsName type = DnsName.Parse("_peerlink._tcp.local"), instance = type.Prepend("Short"), host = DnsName.Parse("short.local");

        await using IAsyncEnumerator<ServiceEvent> browse = b.BrowseAsync("_peerlink._tcp").GetAsyncEnumerator();
        ValueTask<bool> next = browse.MoveNextAsync();
        Send(raw, new DnsMessage
        {
            Flags = DnsMessage.ResponseFlags,
            Answers =
            [
                new DnsPtrRecord(type, 100, instance),
                new DnsSrvRecord(instance, 100, 0, 0, 7, host) { CacheFlush = true },
                new DnsTxtRecord(instance, 100, []) { CacheFlush = true },
                new DnsAddressRecord(host, 100, IPAddress.Parse("10.0.0.9")) { CacheFlush = true },
            ],
        });
        Assert.True(await next.AsTask().WaitAsync(Timeout));
        TimeSpan received = net.Clock.Elapsed;
        net.Packets.Clear();

        next = browse.MoveNextAsync();
        net.Clock.Advance(TimeSpan.FromSeconds(99));
        Assert.False(next.IsCompleted);
        var ptrRefreshes = net.Messages(p => p.From.Equals(IPAddress.Parse("10.0.0.2")))
            .Where(m => m.Message.Questions.Any(q => q.Type == DnsRecordType.Ptr && q.Name.Equals(type)))
            .Select(m => (m.Sent.At - received).TotalSeconds).Where(s => s >= 80).ToList();
        Assert.Equal(4, ptrRefreshes.Count);
        Assert.InRange(ptrRefreshes[0], 80, 82);
        Assert.InRange(ptrRefreshes[3], 95, 97);
        Assert.Contains(net.Messages(), m => m.Message.Questions.Any(q => q.Type == DnsRecordType.Srv && q.Name.Equals(instance)));

        net.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.True(await next.AsTask().WaitAsync(Timeout));
        Assert.Equal(ServiceEventKind.Lost, browse.Current.Kind);
    }

    [Fact]
    public async Task Many_services_are_split_into_packets_that_fit_the_mtu_and_all_are_found()
    {
        var net = new MdnsTestNetwork(mtu: 600);
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        var advertising = Enumerable.Range(1, 20).Select(i => a.AdvertiseAsync(Profile($"Device number {i:D2}", ("padding", new string('x', 40))))).ToList();
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        await Task.WhenAll(advertising).WaitAsync(Timeout);
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        Assert.All(net.Packets, p => Assert.True(p.Data.Length <= 600 - 48, $"{p.Data.Length} bytes"));

        // b arrives later and asks: the answers need several packets.
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        net.Packets.Clear();
        List<ServiceEvent> events = await BrowseForAsync(net, b, TimeSpan.FromSeconds(3), expected: 20);
        Assert.Equal(20, events.Count(e => e.Kind == ServiceEventKind.Found));
        Assert.All(net.Packets, p => Assert.True(p.Data.Length <= 600 - 48, $"{p.Data.Length} bytes"));
        Assert.True(net.Messages(p => p.From.Equals(IPAddress.Parse("10.0.0.1"))).Count(m => m.Message.IsResponse) > 1, "the answers needed several packets");

        // Browsing again, b already holds all 20 instances: its known-answer list spans several packets, all but the last
        // marked TC (RFC 6762 §7.2), and a answers none of them.
        net.Packets.Clear();
        await BrowseForAsync(net, b, TimeSpan.FromSeconds(2), expected: 20);
        var bQueries = net.Messages(p => p.From.Equals(IPAddress.Parse("10.0.0.2"))).Where(m => !m.Message.IsResponse).ToList();
        Assert.True(bQueries.Count >= 2, "the known answers needed more than one packet");
        Assert.True(bQueries[0].Message.IsTruncated, "the first packet says more known answers follow");
        Assert.Equal(20, bQueries.TakeWhile(q => q.Message.IsTruncated).Concat(bQueries.SkipWhile(q => q.Message.IsTruncated).Take(1)).Sum(q => q.Message.Answers.Count(r => r is DnsPtrRecord)));
        Assert.Empty(PeerLinkPtrResponsesFrom(net, "10.0.0.1"));
    }

    [Fact]
    public async Task Hostile_packets_are_dropped_and_the_engine_carries_on()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a", seed: 1);
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        await AdvertiseAsync(net, a, Profile("Lamp"));
        MdnsTestNetwork.Member raw = net.Raw("10.0.0.9");

        raw.SendFrom([0, 0, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1], 5353, null);   // a pointer loop
        raw.SendFrom([0, 0, 0x84, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], 5353, null);          // counts that lie
        raw.SendFrom([1, 2, 3], 5353, null);                                                       // not even a header

        List<ServiceEvent> events = await BrowseForAsync(net, b, TimeSpan.FromSeconds(1), expected: 1);
        Assert.Equal("Lamp", Assert.Single(events).Instance.InstanceName);
    }

    [Fact]
    public async Task A_flood_of_records_is_bounded_by_the_cache_limit()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b", seed: 2);
        MdnsTestNetwork.Member raw = net.Raw("10.0.0.9");
        for (int i = 0; i < 200; i++)
        {
            Send(raw, new DnsMessage
            {
                Flags = DnsMessage.ResponseFlags,
                Answers = [.. Enumerable.Range(0, 50).Select(j => new DnsAddressRecord(DnsName.Parse($"flood-{i}-{j}.local"), 4500, IPAddress.Parse("10.9.9.9")))],
            });
        }

        int cached = await b.Engine.InvokeAsync(() => b.Engine.CachedRecords);
        Assert.Equal(4096, cached);
        Assert.InRange(await b.Engine.InvokeAsync(() => b.Engine.CachedKeys), 1, 4096);   // no empty slot per refused name
    }

    [Fact]
    public void The_probe_tie_break_compares_class_type_then_data()
    {
        DnsName name = DnsName.Parse("x._peerlink._tcp.local"), host = DnsName.Parse("h.local");
        var low = new List<DnsRecord> { new DnsSrvRecord(name, 120, 0, 0, 1000, host) };
        var high = new List<DnsRecord> { new DnsSrvRecord(name, 120, 0, 0, 2000, host) };
        var withTxt = new List<DnsRecord> { new DnsSrvRecord(name, 120, 0, 0, 1000, host), new DnsTxtRecord(name, 4500, []) };
        var longer = new List<DnsRecord> { new DnsSrvRecord(name, 120, 0, 0, 1000, host), new DnsUnknownRecord(name, 120, 99, [1]) };

        Assert.True(MdnsEngine.CompareProbeSets(low, high) < 0);
        Assert.True(MdnsEngine.CompareProbeSets(high, low) > 0);
        Assert.Equal(0, MdnsEngine.CompareProbeSets(low, [.. low]));
        Assert.True(MdnsEngine.CompareProbeSets(withTxt, low) < 0, "TXT (16) sorts before SRV (33)");
        Assert.True(MdnsEngine.CompareProbeSets(longer, low) > 0, "equal up to the shorter set: the longer wins");
    }

    [Theory]
    [InlineData("", "_x._tcp", 1, "service")]
    [InlineData("ok", "http", 1, "service")]
    [InlineData("ok", "_http._xyz", 1, "service")]
    [InlineData("ok", "_http._tcp", 0, "service")]
    [InlineData("ok", "_http._tcp", 70000, "service")]
    public async Task Invalid_profiles_are_argument_errors(string name, string type, int port, string param)
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a");
        ArgumentException e = await Assert.ThrowsAsync<ArgumentException>(() => a.AdvertiseAsync(new ServiceProfile(name, type, port)));
        Assert.Equal(param, e.ParamName);
    }

    [Fact]
    public async Task Invalid_txt_keys_and_browse_types_are_argument_errors()
    {
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a");
        var profile = Profile("Lamp", ("a=b", "c"));
        Assert.Equal("service", (await Assert.ThrowsAsync<ArgumentException>(() => a.AdvertiseAsync(profile))).ParamName);
        Assert.Equal("serviceType", Assert.Throws<ArgumentException>(() => a.BrowseAsync("nope")).ParamName);
    }

    internal static ServiceProfile Profile(string name, params (string Key, string? Value)[] properties)
    {
        var profile = new ServiceProfile(name, "_peerlink._tcp", 4242);
        foreach ((string key, string? value) in properties)
        {
            profile.Properties.Add(new(key, value));
        }

        return profile;
    }

    /// <summary>Starts a browse on this thread, moves the clock, and returns the enumerator positioned on its first event.</summary>
    private static async Task<IAsyncEnumerator<ServiceEvent>> BrowseUntilFirstAsync(MdnsTestNetwork net, ServiceDiscovery node, TimeSpan advance, string type = "_peerlink._tcp", CancellationToken cancellationToken = default)
    {
        IAsyncEnumerator<ServiceEvent> browse = node.BrowseAsync(type, cancellationToken).GetAsyncEnumerator(cancellationToken);
        ValueTask<bool> first = browse.MoveNextAsync();
        net.Clock.Advance(advance);
        Assert.True(await first.AsTask().WaitAsync(Timeout), "the browse ended before its first event");
        return browse;
    }

    private static async Task<ServiceRegistration> AdvertiseAsync(MdnsTestNetwork net, ServiceDiscovery node, ServiceProfile profile)
    {
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        Task<ServiceRegistration> advertising = node.AdvertiseAsync(profile);
        net.Clock.Advance(TimeSpan.FromSeconds(3));
        return await advertising.WaitAsync(Timeout);
    }

    /// <summary>
    /// Browses while the clock moves <paramref name="duration"/> in 50 ms steps, then waits (real time, bounded) until
    /// <paramref name="expected"/> events have arrived; events reach the reader on the thread pool.
    /// </summary>
    private static async Task<List<ServiceEvent>> BrowseForAsync(MdnsTestNetwork net, ServiceDiscovery node, TimeSpan duration, int expected)
    {
        var events = new List<ServiceEvent>();
        var arrived = new SemaphoreSlim(0);
        using var stop = new CancellationTokenSource();
        IAsyncEnumerator<ServiceEvent> browse = node.BrowseAsync("_peerlink._tcp", stop.Token).GetAsyncEnumerator();
        ValueTask<bool> first = browse.MoveNextAsync();   // starts the browser on this thread, before the clock moves
        Task collecting = Task.Run(async () =>
        {
            try
            {
                for (bool more = await first; more; more = await browse.MoveNextAsync())
                {
                    lock (events)
                    {
                        events.Add(browse.Current);
                    }

                    arrived.Release();
                }
            }
            catch (OperationCanceledException)
            {
            }
        });

        for (TimeSpan t = TimeSpan.Zero; t < duration; t += TimeSpan.FromMilliseconds(50))
        {
            net.Clock.Advance(TimeSpan.FromMilliseconds(50));
        }

        for (int i = 0; i < expected; i++)
        {
            Assert.True(await arrived.WaitAsync(Timeout), $"only {i} of {expected} events arrived");
        }

        await stop.CancelAsync();
        await collecting.WaitAsync(Timeout);
        await browse.DisposeAsync();
        lock (events)
        {
            return [.. events];
        }
    }

    /// <summary>The responses <paramref name="address"/> sent that answer with a _peerlink PTR record.</summary>
    private static IEnumerable<(MdnsTestNetwork.Sent Sent, DnsMessage Message)> PeerLinkPtrResponsesFrom(MdnsTestNetwork net, string address) =>
        net.Messages(p => p.From.Equals(IPAddress.Parse(address)))
            .Where(m => m.Message.IsResponse && m.Message.Answers.Any(r => r is DnsPtrRecord p && p.Name.Labels[0] == "_peerlink"));

    private static void Send(MdnsTestNetwork.Member raw, DnsMessage message) => raw.SendFrom(message.ToArray(), 5353, null);
}
