// RFC 6762: probing and announcing (§8), conflict resolution (§9), responding (§6: delays, rate limits, QU and legacy
// unicast), known-answer and duplicate-answer suppression (§7), continuous querying (§5.2), the cache with its
// cache-flush handling, goodbyes and refresh queries (§10), interface changes (§13-§15).
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
/// The mDNS responder and querier over one <see cref="IMdnsTransport"/>. All state is touched by one logical thread:
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
    private long _malformedRecords;

    /// <summary>Received packets waiting for the logical thread at most; more are dropped (a flood must not grow memory).</summary>
    internal const int MaxQueuedPackets = 256;
    private int _queuedPackets;
    private long _droppedPackets;
    private readonly List<Publication> _publications = [];
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
            _publications.Add(Host);
            StartProbing(Host);
        });
    }

    // ---------------------------------------------------------------- the logical thread (MdnsScheduler)

    /// <summary>Runs <paramref name="action"/> after everything posted before it, never concurrently with other work.</summary>
    public void Post(Action action) => _scheduler.Post(action);

    /// <summary>Runs <paramref name="function"/> on the logical thread and returns its result.</summary>
    public Task<T> InvokeAsync<T>(Func<T> function) => _scheduler.InvokeAsync(function);

    public MdnsScheduler.Scheduled Schedule(TimeSpan delay, Action action) => _scheduler.Schedule(delay, action);

    private TimeSpan RandomDelay(int minMs, int maxMs) => TimeSpan.FromMilliseconds(_random.Next(minMs, maxMs + 1));

    // ---------------------------------------------------------------- links

    private void OnLinksChanged()
    {
        SyncLinks();
        MdnsLog.InterfacesChanged(_logger);

        // RFC 6762 §8 and §13: after any change of connectivity, probe and announce again.
        foreach (Publication publication in _publications.Where(p => p.State != PublicationState.Stopped))
        {
            StartProbing(publication);
        }
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
    private void Send(byte[] packet, MdnsLink link, AddressFamily family, IPEndPoint? destination)
    {
        _transport.Send(packet, link, family, destination);
        DiscoveryTelemetry.Count(sent: true, response: packet.Length > 2 && (packet[2] & 0x80) != 0);
    }

    private void SendMulticast(LinkState link, List<byte[]> packets)
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
                HandleQuery(message, source, state);
            }
        });
    }

    // ---------------------------------------------------------------- responder

    public Publication AddService(string instanceLabel, DnsName serviceType, IReadOnlyList<string> subtypes, ushort port, IReadOnlyList<byte[]> txt)
    {
        var publication = new Publication(this, PublicationKind.Service, instanceLabel)
        {
            ServiceType = serviceType,
            Subtypes = subtypes,
            Port = port,
            Txt = txt,
        };
        Post(() =>
        {
            _publications.Add(publication);
            StartProbing(publication);
        });
        return publication;
    }

    public void UpdateTxt(Publication publication, IReadOnlyList<byte[]> txt) => Post(() =>
    {
        publication.Txt = txt;
        if (publication.State is PublicationState.Announcing or PublicationState.Established)
        {
            Announce(publication, first: false);
        }
    });

    /// <summary>Sends goodbyes (TTL 0) for a publication's records on every link and forgets it (§10.1).</summary>
    public Task RemoveAsync(Publication publication) => InvokeAsync(() =>
    {
        bool announced = publication.State is PublicationState.Announcing or PublicationState.Established;
        publication.Stop();
        _publications.Remove(publication);
        if (announced)
        {
            foreach (LinkState link in _links.Values)
            {
                List<DnsRecord> records = publication.Records(link.Link).Select(r => r with { Ttl = 0 }).ToList();
                SendMulticast(link, MdnsPackets.Responses(records, [], link.Link.MaxPacketSize));
            }
        }

        return true;
    });

    private void StartProbing(Publication publication)
    {
        publication.Timer?.Cancel();
        publication.State = PublicationState.Probing;
        publication.ProbesSent = 0;

        // §8.1: a random 0–250 ms before the first probe; after 15 conflicts within 10 s, 5 s between attempts (§8.1).
        TimeSpan delay = RandomDelay(0, 250);
        if (publication.RecentConflicts.Count(t => Now - t < TimeSpan.FromSeconds(10)) >= 15)
        {
            delay = TimeSpan.FromSeconds(5);
        }

        publication.Timer = Schedule(delay, () => ProbeStep(publication));
    }

    private void ProbeStep(Publication publication)
    {
        if (publication.ProbesSent == 3)
        {
            Announce(publication, first: true);
            return;
        }

        foreach (LinkState link in _links.Values)
        {
            List<DnsRecord> records = publication.Records(link.Link).Where(r => publication.IsUniqueName(r.Name)).ToList();
            List<DnsQuestion> questions = publication.UniqueNames()
                .Select(name => new DnsQuestion(name, DnsRecordType.Any, UnicastResponse: publication.ProbesSent == 0))
                .ToList();
            SendMulticast(link, MdnsPackets.Queries(questions, [], records, link.Link.MaxPacketSize));
        }

        publication.ProbesSent++;
        publication.Timer = Schedule(TimeSpan.FromMilliseconds(250), () => ProbeStep(publication));
    }

    private void Announce(Publication publication, bool first)
    {
        publication.Timer?.Cancel();
        publication.State = PublicationState.Announcing;
        SendAnnouncement(publication);
        if (first)
        {
            MdnsLog.Announced(_logger, publication.FullName.ToString());
            publication.OnProbed();
        }

        // §8.3: at least two announcements, one second apart.
        publication.Timer = Schedule(TimeSpan.FromSeconds(1), () =>
        {
            SendAnnouncement(publication);
            publication.State = PublicationState.Established;
        });
    }

    private void SendAnnouncement(Publication publication)
    {
        foreach (LinkState link in _links.Values)
        {
            List<DnsRecord> records = publication.Records(link.Link);
            if (publication.Kind == PublicationKind.Service)
            {
                records.AddRange(Host.State is PublicationState.Announcing or PublicationState.Established ? Host.Records(link.Link) : []);
            }

            foreach (DnsRecord record in records)
            {
                link.LastMulticast[record.Name.Key + "|" + record.Type] = Now;
            }

            SendMulticast(link, MdnsPackets.Responses(records, [], link.Link.MaxPacketSize));
        }
    }

    private void HandleQuery(DnsMessage query, IPEndPoint source, LinkState link)
    {
        // Known answers (§7.1) also cancel our pending answers that the querier already has.
        SuppressPending(link, query.Answers);

        // A probe for a name we are probing too: the tie-break of §8.2.
        if (query.Authorities.Count > 0)
        {
            foreach (Publication publication in _publications.Where(p => p.State == PublicationState.Probing).ToList())
            {
                foreach (DnsQuestion question in query.Questions.Where(q => publication.IsUniqueName(q.Name)))
                {
                    List<DnsRecord> theirs = query.Authorities.Where(r => r.Name.Equals(question.Name)).ToList();
                    List<DnsRecord> proposed = publication.Records(link.Link).Where(r => r.Name.Equals(question.Name)).ToList();
                    int comparison = CompareProbeSets(proposed, theirs);
                    if (comparison < 0)
                    {
                        MdnsLog.ProbeDeferred(_logger, question.Name.ToString());
                        publication.Timer?.Cancel();
                        publication.Timer = Schedule(TimeSpan.FromSeconds(1), () => StartProbing(publication));
                        break;
                    }
                }
            }
        }

        bool legacy = source.Port != UdpMdnsTransport.Port;
        var multicastNow = new List<DnsRecord>();
        var multicastLater = new List<DnsRecord>();
        var unicast = new List<DnsRecord>();
        List<(DnsRecord Record, bool Shared)> ours = AnswerableRecords(link.Link);
        foreach (DnsQuestion question in query.Questions)
        {
            foreach ((DnsRecord record, bool shared) in ours)
            {
                if (!question.IsAnsweredBy(record) || IsKnownAnswer(record, query.Answers))
                {
                    continue;
                }

                string key = record.Name.Key + "|" + record.Type;
                bool recentlyMulticast = link.LastMulticast.TryGetValue(key, out TimeSpan last) && Now - last < TimeSpan.FromSeconds(record.Ttl / 4.0);
                // With TC set, more known answers follow (§7.2): answer only after the wait, like a QM question.
                if (legacy || (question.UnicastResponse && recentlyMulticast && !query.IsTruncated))
                {
                    AddOnce(unicast, record);
                }
                else if (shared)
                {
                    AddOnce(multicastLater, record);
                }
                else
                {
                    AddOnce(multicastNow, record);
                }
            }
        }

        if (unicast.Count > 0)
        {
            if (legacy)
            {
                // §6.7: echo the ID and question, cap TTLs at 10 s, no cache-flush bits; the same additional records
                // (SRV, TXT, addresses) as a multicast answer carries (§12, RFC 6763 §12), so that a legacy resolver
                // needs no second query.
                DnsQuestion? echo = query.Questions.Count == 1 ? query.Questions[0] : null;
                static List<DnsRecord> Legacy(IEnumerable<DnsRecord> records) => records.Select(r => r with { Ttl = Math.Min(r.Ttl, 10u), CacheFlush = false }).ToList();
                foreach (byte[] packet in MdnsPackets.Responses(Legacy(unicast), Legacy(Additionals(unicast, link.Link)), link.Link.MaxPacketSize, query.Id, echo))
                {
                    Send(packet, link.Link, source.AddressFamily, source);
                }
            }
            else
            {
                foreach (byte[] packet in MdnsPackets.Responses(unicast, Additionals(unicast, link.Link), link.Link.MaxPacketSize))
                {
                    Send(packet, link.Link, source.AddressFamily, source);
                }
            }
        }

        // Unique answers go out at once (§6); a probe of one of our names is answered even if we just sent it (250 ms).
        bool isProbe = query.Authorities.Count > 0;
        RateLimit(link, multicastNow, isProbe ? TimeSpan.FromMilliseconds(250) : TimeSpan.FromSeconds(1));
        if (multicastNow.Count > 0)
        {
            SendAnswers(link, multicastNow);
        }

        // Shared answers wait 20–120 ms (400–500 ms when more known answers follow), so that answers aggregate and
        // duplicates can be suppressed (§6, §7.2, §7.4).
        RateLimit(link, multicastLater, TimeSpan.FromSeconds(1));
        if (multicastLater.Count > 0)
        {
            foreach (DnsRecord record in multicastLater)
            {
                AddOnce(link.Pending, record);
            }

            if (link.PendingSend is null || link.PendingSend.Cancelled)
            {
                TimeSpan delay = query.IsTruncated ? RandomDelay(400, 500) : RandomDelay(20, 120);
                link.PendingSend = Schedule(delay, () =>
                {
                    List<DnsRecord> pending = [.. link.Pending];
                    link.Pending.Clear();
                    RateLimit(link, pending, TimeSpan.FromSeconds(1));
                    if (pending.Count > 0)
                    {
                        SendAnswers(link, pending);
                    }
                });
            }
        }
    }

    private void SendAnswers(LinkState link, List<DnsRecord> answers)
    {
        List<DnsRecord> additionals = Additionals(answers, link.Link);
        foreach (DnsRecord record in answers.Concat(additionals))
        {
            link.LastMulticast[record.Name.Key + "|" + record.Type] = Now;
        }

        SendMulticast(link, MdnsPackets.Responses(answers, additionals, link.Link.MaxPacketSize));
    }

    private void RateLimit(LinkState link, List<DnsRecord> records, TimeSpan interval) =>
        records.RemoveAll(r => link.LastMulticast.TryGetValue(r.Name.Key + "|" + r.Type, out TimeSpan last) && Now - last < interval);

    /// <summary>DNS-SD §12: with a PTR, its SRV, TXT and addresses; with an SRV, the addresses.</summary>
    private List<DnsRecord> Additionals(List<DnsRecord> answers, MdnsLink link)
    {
        var additionals = new List<DnsRecord>();
        List<(DnsRecord Record, bool Shared)> ours = AnswerableRecords(link);
        void AddFor(DnsName name, params DnsRecordType[] types)
        {
            foreach ((DnsRecord record, _) in ours)
            {
                if (record.Name.Equals(name) && types.Contains(record.Type) && !answers.Any(a => a.IsSameRecord(record)))
                {
                    AddOnce(additionals, record);
                }
            }
        }

        foreach (DnsRecord answer in answers)
        {
            if (answer is DnsPtrRecord ptr)
            {
                AddFor(ptr.Target, DnsRecordType.Srv, DnsRecordType.Txt);
            }
        }

        foreach (DnsSrvRecord srv in answers.Concat(additionals).OfType<DnsSrvRecord>().ToList())
        {
            AddFor(srv.Target, DnsRecordType.A, DnsRecordType.Aaaa);
        }

        return additionals;
    }

    private List<(DnsRecord Record, bool Shared)> AnswerableRecords(MdnsLink link)
    {
        var records = new List<(DnsRecord, bool)>();
        foreach (Publication publication in _publications)
        {
            if (publication.State is PublicationState.Announcing or PublicationState.Established)
            {
                foreach (DnsRecord record in publication.Records(link))
                {
                    records.Add((record, !record.CacheFlush));
                }
            }
        }

        return records;
    }

    private static bool IsKnownAnswer(DnsRecord record, List<DnsRecord> knownAnswers) =>
        knownAnswers.Any(k => k.IsSameRecord(record) && k.Ttl >= record.Ttl / 2);

    private static void SuppressPending(LinkState link, List<DnsRecord> seen)
    {
        if (link.Pending.Count > 0 && seen.Count > 0)
        {
            link.Pending.RemoveAll(p => IsKnownAnswer(p, seen));
        }
    }

    private static void AddOnce(List<DnsRecord> list, DnsRecord record)
    {
        if (!list.Any(r => r.IsSameRecord(record)))
        {
            list.Add(record);
        }
    }

    /// <summary>RFC 6762 §8.2: compare the sorted record sets by class, type, then data bytes; negative when ours loses.</summary>
    internal static int CompareProbeSets(List<DnsRecord> ours, List<DnsRecord> theirs)
    {
        static int Compare(DnsRecord a, DnsRecord b)
        {
            int c = a.Class.CompareTo(b.Class);
            if (c == 0)
            {
                c = ((ushort)a.Type).CompareTo((ushort)b.Type);
            }

            return c != 0 ? c : a.CanonicalData().AsSpan().SequenceCompareTo(b.CanonicalData());
        }

        List<DnsRecord> a = [.. ours.Order(Comparer<DnsRecord>.Create(Compare))];
        List<DnsRecord> b = [.. theirs.Order(Comparer<DnsRecord>.Create(Compare))];
        for (int i = 0; i < Math.Min(a.Count, b.Count); i++)
        {
            int c = Compare(a[i], b[i]);
            if (c != 0)
            {
                return c;
            }
        }

        return a.Count.CompareTo(b.Count);
    }

    // ---------------------------------------------------------------- responses: conflicts and the cache

    private void HandleResponse(DnsMessage response, LinkState link)
    {
        List<DnsRecord> records = [.. response.Answers, .. response.Additionals];
        SuppressPending(link, records);   // §7.4: someone else answered already

        foreach (DnsRecord record in records)
        {
            CheckConflict(record);
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

    private void CheckConflict(DnsRecord record)
    {
        if (record.Ttl == 0)
        {
            return;
        }

        foreach (Publication publication in _publications.ToList())
        {
            if (publication.State == PublicationState.Stopped || !publication.IsUniqueName(record.Name))
            {
                continue;
            }

            // Our own packets come back through multicast loopback: a record we publish on any link is no conflict.
            List<DnsRecord> ours = _links.Values.SelectMany(l => publication.Records(l.Link)).Where(r => r.Name.Equals(record.Name)).ToList();
            if (ours.Any(r => r.IsSameRecord(record)))
            {
                continue;
            }

            bool conflict = publication.State == PublicationState.Probing
                ? true                                                 // §8.1: any answer for the name while probing
                : ours.Any(r => r.Type == record.Type);   // §9: a unique record of ours contradicted, cache-flush bit or not
            if (!conflict)
            {
                continue;
            }

            if (publication.State == PublicationState.Probing)
            {
                Rename(publication, $"{record.Type} record from another host");
            }
            else
            {
                // §9: probe again; if the other host defends the name, the probe finds the conflict and renames.
                StartProbing(publication);
            }
        }
    }

    private void Rename(Publication publication, string reason)
    {
        string old = publication.FullName.ToString();
        publication.RecentConflicts.Add(Now);
        publication.Rename();
        MdnsLog.Renamed(_logger, old, reason, publication.FullName.ToString());
        StartProbing(publication);
        if (publication == Host)
        {
            // The services' SRV records name the host: announce them again with the new target.
            foreach (Publication service in _publications.Where(p => p.Kind == PublicationKind.Service && p.State != PublicationState.Stopped))
            {
                StartProbing(service);
            }
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
            // Goodbyes for everything we announced (§10.1).
            foreach (Publication publication in _publications.Where(p => p.State is PublicationState.Announcing or PublicationState.Established).ToList())
            {
                foreach (LinkState link in _links.Values)
                {
                    List<DnsRecord> records = publication.Records(link.Link).Select(r => r with { Ttl = 0 }).ToList();
                    SendMulticast(link, MdnsPackets.Responses(records, [], link.Link.MaxPacketSize));
                }

                publication.Stop();
            }

            _scheduler.Stop();
            return true;
        }).ConfigureAwait(false);
        await _scheduler.DisposeAsync().ConfigureAwait(false);
        await _transport.DisposeAsync().ConfigureAwait(false);
    }

    // ---------------------------------------------------------------- state types

    private sealed class LinkState(MdnsLink link)
    {
        public MdnsLink Link { get; set; } = link;

        public Dictionary<string, TimeSpan> LastMulticast { get; } = new(StringComparer.Ordinal);

        public List<DnsRecord> Pending { get; } = [];

        public MdnsScheduler.Scheduled? PendingSend { get; set; }
    }
}

/// <summary>A question the querier keeps asking.</summary>
internal sealed class ContinuousQuery(DnsQuestion question, bool continuous, Func<DnsRecord, bool>? interest)
{
    public DnsQuestion Question { get; } = question;

    public bool Continuous { get; } = continuous;

    public TimeSpan Interval { get; set; }

    public int Sent { get; set; }

    public MdnsScheduler.Scheduled? Timer { get; set; }

    public bool IsInterestedIn(DnsRecord record) => Question.IsAnsweredBy(record) || (interest?.Invoke(record) ?? false);
}

internal enum PublicationKind
{
    Host,
    Service,
}

internal enum PublicationState
{
    Probing,
    Announcing,
    Established,
    Stopped,
}

/// <summary>A set of records this host owns: the host name with its addresses, or one service instance.</summary>
internal sealed class Publication
{
    private readonly MdnsEngine _engine;
    private readonly string _baseLabel;
    private readonly TaskCompletionSource<string> _probed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _renames;

    public Publication(MdnsEngine engine, PublicationKind kind, string label)
    {
        _engine = engine;
        Kind = kind;
        _baseLabel = label;
        Label = label;
    }

    public PublicationKind Kind { get; }

    public string Label { get; private set; }

    public DnsName ServiceType { get; init; } = DnsName.Root;

    public IReadOnlyList<string> Subtypes { get; init; } = [];

    public ushort Port { get; init; }

    public IReadOnlyList<byte[]> Txt { get; set; } = [];

    public PublicationState State { get; set; }

    public int ProbesSent { get; set; }

    public MdnsScheduler.Scheduled? Timer { get; set; }

    public List<TimeSpan> RecentConflicts { get; } = [];

    /// <summary>Completes with the final name when probing first succeeds.</summary>
    public Task<string> Probed => _probed.Task;

    /// <summary>Raised with the new label after a rename.</summary>
    public event Action<string>? Renamed;

    public DnsName FullName => Kind == PublicationKind.Host ? DnsName.FromLabels([Label, "local"]) : ServiceType.Prepend(Label);

    public bool IsUniqueName(DnsName name) => name.Equals(FullName);

    public IEnumerable<DnsName> UniqueNames() => [FullName];

    public void OnProbed() => _probed.TrySetResult(Label);

    public void Stop()
    {
        Timer?.Cancel();
        State = PublicationState.Stopped;
        _probed.TrySetCanceled();
    }

    public void Rename()
    {
        _renames++;
        Label = Kind == PublicationKind.Host ? $"{_baseLabel}-{_renames + 1}" : $"{_baseLabel} ({_renames + 1})";
        Renamed?.Invoke(Label);
    }

    /// <summary>The records as published on <paramref name="link"/> (addresses differ per interface).</summary>
    public List<DnsRecord> Records(MdnsLink link)
    {
        var records = new List<DnsRecord>();
        if (Kind == PublicationKind.Host)
        {
            DnsName host = FullName;
            foreach (IPAddress address in link.Addresses)
            {
                records.Add(new DnsAddressRecord(host, MdnsEngine.HostTtl, address) { CacheFlush = true });
            }

            return records;
        }

        DnsName instance = FullName;
        records.Add(new DnsPtrRecord(ServiceType, MdnsEngine.OtherTtl, instance));
        records.Add(new DnsPtrRecord(MdnsEngine.ServicesName, MdnsEngine.OtherTtl, ServiceType));
        foreach (string subtype in Subtypes)
        {
            records.Add(new DnsPtrRecord(ServiceType.Prepend("_sub").Prepend(subtype), MdnsEngine.OtherTtl, instance));
        }

        records.Add(new DnsSrvRecord(instance, MdnsEngine.HostTtl, 0, 0, Port, _engine.Host.FullName) { CacheFlush = true });
        records.Add(new DnsTxtRecord(instance, MdnsEngine.OtherTtl, Txt) { CacheFlush = true });
        return records;
    }
}
