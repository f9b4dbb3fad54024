// RFC 6762 engine: the interfaces and their changes (§13-§15), receiving and sending packets, and the four parts it
// composes: MdnsScheduler (the logical thread), MdnsResponder (§6-§10: probing, announcing, answering, conflicts,
// goodbyes), MdnsCache (§10: expiry, cache flush, refresh) and MdnsQuerier (§5, §7.1: continuous queries, known answers).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Discovery.Dns;

namespace PeerLink.Discovery.Mdns;

/// <summary>
/// mDNS over one <see cref="IMdnsTransport"/>: the composition of the scheduler, responder, cache and querier, and the
/// interfaces and packets they share. All state is touched by one logical thread:
/// packets, timer expiries and API calls are posted as work items and run one at a time, on whichever thread posted
/// when nothing else runs (so that a test clock's <c>Advance</c> and an in-memory network finish their work before
/// returning). Time comes only from the <see cref="TimeProvider"/>, randomness only from the given <see cref="Random"/>.
/// </summary>
internal sealed class MdnsEngine : IAsyncDisposable
{
    public const uint HostTtl = 120;
    public const uint OtherTtl = 4500;
    public static readonly DnsName Local = DnsName.Parse("local");
    public static readonly DnsName ServicesName = DnsName.Parse("_services._dns-sd._udp.local");

    private readonly IMdnsTransport _transport;
    private readonly Random _random;
    private readonly ILogger _logger;

    private readonly MdnsScheduler _scheduler;

    private readonly Dictionary<int, LinkState> _links = [];

    /// <summary>The interfaces in use, for the responder (on the logical thread).</summary>
    internal Dictionary<int, LinkState> Links => _links;
    private long _malformedRecords;

    /// <summary>Received packets waiting for the logical thread at most; more are dropped (a flood must not grow memory).</summary>
    internal const int MaxQueuedPackets = 256;
    private int _queuedPackets;
    private long _droppedPackets;
    private readonly MdnsResponder _responder;
    private readonly MdnsCache _cache;
    private readonly MdnsQuerier _querier;

    public MdnsEngine(IMdnsTransport transport, string hostLabel, TimeProvider time, Random random, ILogger logger, int maxCachedRecords = 4096)
    {
        _transport = transport;
        _random = random;
        _logger = logger;
        _scheduler = new MdnsScheduler(time, logger);
        _cache = new MdnsCache(_scheduler, random, logger, maxCachedRecords, record => _querier!.IsInteresting(record),
            refresh: (record, entry) => _querier!.Send([new DnsQuestion(record.Name, record.Type)], ignoreKnownAnswersOf: entry),
            expired: () => CacheChanged?.Invoke());
        _querier = new MdnsQuerier(_scheduler, random, _cache, () => _links.Values.Select(l => l.Link), (link, packets) => SendMulticast(_links[link.Index], packets));
        Host = new Publication(this, PublicationKind.Host, hostLabel);
        _responder = new MdnsResponder(this, logger);
    }

    /// <summary>Raised (on the engine's logical thread) after the cache changed.</summary>
    public event Action? CacheChanged;

    /// <summary>This host's address records' owner, "host.local".</summary>
    public Publication Host { get; }

    public TimeSpan Now => _scheduler.Now;

    /// <summary>Starts the transport, probes the host name and begins answering.</summary>
    public void Start()
    {
        _transport.Start(OnPacket, () => Post(OnLinksChanged));
        Post(() =>
        {
            SyncLinks();
            _responder.Publish(Host);
        });
    }

    // ---------------------------------------------------------------- the logical thread (MdnsScheduler)

    /// <summary>Runs <paramref name="action"/> after everything posted before it, never concurrently with other work.</summary>
    public void Post(Action action) => _scheduler.Post(action);

    /// <summary>Runs <paramref name="function"/> on the logical thread and returns its result.</summary>
    public Task<T> InvokeAsync<T>(Func<T> function) => _scheduler.InvokeAsync(function);

    public MdnsScheduler.Scheduled Schedule(TimeSpan delay, Action action) => _scheduler.Schedule(delay, action);

    internal TimeSpan RandomDelay(int minMs, int maxMs) => TimeSpan.FromMilliseconds(_random.Next(minMs, maxMs + 1));

    // ---------------------------------------------------------------- links

    private void OnLinksChanged()
    {
        SyncLinks();
        MdnsLog.InterfacesChanged(_logger);

        // RFC 6762 §8 and §13: after any change of connectivity, probe and announce again.
        _responder.ProbeAgain();
    }

    private void SyncLinks()
    {
        IReadOnlyList<MdnsLink> current = _transport.Links;
        foreach (int gone in _links.Keys.Where(index => !current.Any(l => l.Index == index)).ToList())
        {
            _links.Remove(gone);
            _cache.RemoveLink(gone);
            CacheChanged?.Invoke();
        }

        foreach (MdnsLink link in current)
        {
            if (_links.TryGetValue(link.Index, out LinkState? state))
            {
                state.Link = link;
            }
            else
            {
                _links[link.Index] = new LinkState(link);
            }
        }
    }

    /// <summary>Every packet leaves here, counted as a query or a response by its QR bit ("peerlink.mdns.messages").</summary>
    internal void Send(byte[] packet, MdnsLink link, AddressFamily family, IPEndPoint? destination)
    {
        _transport.Send(packet, link, family, destination);
        DiscoveryTelemetry.Count(sent: true, response: packet.Length > 2 && (packet[2] & 0x80) != 0);
    }

    internal void SendMulticast(LinkState link, List<byte[]> packets)
    {
        foreach (byte[] packet in packets)
        {
            if (link.Link.HasIPv4)
            {
                Send(packet, link.Link, AddressFamily.InterNetwork, null);
            }

            if (link.Link.HasIPv6)
            {
                Send(packet, link.Link, AddressFamily.InterNetworkV6, null);
            }
        }
    }

    // ---------------------------------------------------------------- receiving

    private void OnPacket(ReadOnlyMemory<byte> packet, IPEndPoint source, MdnsLink link)
    {
        if (!DnsMessage.TryParse(packet.Span, out DnsMessage? message, out string? error))
        {
            MdnsLog.PacketDropped(_logger, packet.Length, source.ToString(), link.Name, error!);
            return;
        }

        if (message!.Opcode != 0 || message.ResponseCode != 0)
        {
            return;   // RFC 6762 §18.3 and §18.11: ignore other opcodes and non-zero rcodes
        }

        DiscoveryTelemetry.Count(sent: false, response: message.IsResponse);
        if (message.MalformedRecords > 0)
        {
            Interlocked.Add(ref _malformedRecords, message.MalformedRecords);
            DiscoveryTelemetry.MalformedRecords.Add(message.MalformedRecords);
            MdnsLog.RecordsSkipped(_logger, message.MalformedRecords, source.ToString(), link.Name, message.MalformedReason!);
        }

        // The logical thread may be busy on another thread while packets keep arriving: past a bound, packets are dropped
        // here (counted, logged at a bounded rate) rather than queued, so that a flood cannot grow memory.
        if (Interlocked.Increment(ref _queuedPackets) > MaxQueuedPackets)
        {
            Interlocked.Decrement(ref _queuedPackets);
            Interlocked.Increment(ref _droppedPackets);
            DiscoveryTelemetry.DroppedPackets.Add(1);
            return;
        }

        Post(() =>
        {
            Interlocked.Decrement(ref _queuedPackets);
            if (!_links.TryGetValue(link.Index, out LinkState? state))
            {
                return;
            }

            if (message.IsResponse)
            {
                if (source.Port == UdpMdnsTransport.Port)
                {
                    HandleResponse(message, state);   // §6: responses must come from port 5353
                }
            }
            else
            {
                _responder.HandleQuery(message, source, state);
            }
        });
    }

    // ---------------------------------------------------------------- responder

    public Publication AddService(string instanceLabel, DnsName serviceType, IReadOnlyList<string> subtypes, ushort port, IReadOnlyList<byte[]> txt) =>
        _responder.AddService(instanceLabel, serviceType, subtypes, port, txt);

    public void UpdateTxt(Publication publication, IReadOnlyList<byte[]> txt) => _responder.UpdateTxt(publication, txt);

    /// <summary>Sends goodbyes (TTL 0) for a publication's records on every link and forgets it (§10.1).</summary>
    public Task RemoveAsync(Publication publication) => _responder.RemoveAsync(publication);

    internal static int CompareProbeSets(List<DnsRecord> ours, List<DnsRecord> theirs) => MdnsResponder.CompareProbeSets(ours, theirs);

    // ---------------------------------------------------------------- responses: conflicts and the cache

    private void HandleResponse(DnsMessage response, LinkState link)
    {
        List<DnsRecord> records = [.. response.Answers, .. response.Additionals];
        MdnsResponder.SuppressPending(link, records);   // §7.4: someone else answered already

        foreach (DnsRecord record in records)
        {
            _responder.CheckConflict(record);
        }

        bool changed = false;
        foreach (DnsRecord record in records)
        {
            if (record.Type is not (DnsRecordType.Opt or DnsRecordType.Nsec))
            {
                changed |= AddToCache(record, link);
            }
        }

        if (changed)
        {
            CacheChanged?.Invoke();
        }
    }

    private bool AddToCache(DnsRecord record, LinkState link) => _cache.Add(record, link.Link.Index);

    /// <summary>Records in the cache now; read it on the logical thread.</summary>
    public int CachedRecords => _cache.Count;

    /// <summary>Names and types the cache indexes now; read it on the logical thread.</summary>
    public int CachedKeys => _cache.Keys;

    /// <summary>
    /// The cached records of a name and type, newest first. A goodbye or a flushed record stays for its last second
    /// (RFC 6762 §10.1, §10.2), so that a correction in that second is not lost.
    /// </summary>
    public List<(DnsRecord Record, int LinkIndex)> Lookup(DnsName name, DnsRecordType type) => _cache.Lookup(name, type);

    // ---------------------------------------------------------------- querier (MdnsQuerier)

    /// <summary>
    /// Starts asking <paramref name="question"/>: at once (after 20–120 ms), then after 1 s, doubling up to an hour
    /// (§5.2). A query that is not continuous stops once the cache answers it. Returns a handle for <see cref="StopQuery"/>.
    /// </summary>
    public ContinuousQuery StartQuery(DnsQuestion question, bool continuous, Func<DnsRecord, bool>? interest = null)
    {
        var query = new ContinuousQuery(question, continuous, interest);
        Post(() => _querier.Start(query));
        return query;
    }

    public void StopQuery(ContinuousQuery query) => Post(() => _querier.Stop(query));

    // ---------------------------------------------------------------- lifetime

    /// <summary>Packets dropped since start because <see cref="MaxQueuedPackets"/> were already waiting (a flood).</summary>
    public long DroppedPackets => Interlocked.Read(ref _droppedPackets);

    /// <summary>Records skipped since start because their data was malformed (the rest of their packets was used).</summary>
    public long MalformedRecords => Interlocked.Read(ref _malformedRecords);

    public async ValueTask DisposeAsync()
    {
        await InvokeAsync(() =>
        {
            _responder.SayGoodbye();   // §10.1
            _scheduler.Stop();
            return true;
        }).ConfigureAwait(false);
        await _scheduler.DisposeAsync().ConfigureAwait(false);
        await _transport.DisposeAsync().ConfigureAwait(false);
    }

    // ---------------------------------------------------------------- state types

    internal sealed class LinkState(MdnsLink link)
    {
        public MdnsLink Link { get; set; } = link;

        public Dictionary<string, TimeSpan> LastMulticast { get; } = new(StringComparer.Ordinal);

        public List<DnsRecord> Pending { get; } = [];

        public MdnsScheduler.Scheduled? PendingSend { get; set; }
    }
}
