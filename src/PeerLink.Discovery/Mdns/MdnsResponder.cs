using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Discovery.Dns;
using LinkState = PeerLink.Discovery.Mdns.MdnsEngine.LinkState;

namespace PeerLink.Discovery.Mdns;

/// <summary>
/// The mDNS engine's responder (RFC 6762 §6–§10): what this host publishes, probing and announcing it, answering
/// queries (unicast, legacy, delayed and aggregated shared answers, rate limits, known-answer suppression), defending
/// its names and renaming on conflict, and goodbyes. It runs on the engine's logical thread and sends through it.
/// </summary>
internal sealed class MdnsResponder(MdnsEngine engine, ILogger logger)
{
    private readonly List<Publication> _publications = [];

    /// <summary>Publishes <paramref name="publication"/>: probe, then announce.</summary>
    public void Publish(Publication publication)
    {
        _publications.Add(publication);
        StartProbing(publication);
    }

    /// <summary>RFC 6762 §8 and §13: after any change of connectivity, probe and announce everything again.</summary>
    public void ProbeAgain()
    {
        foreach (Publication publication in _publications.Where(p => p.State != PublicationState.Stopped))
        {
            StartProbing(publication);
        }
    }

    /// <summary>Goodbyes for everything announced (§10.1), as the engine stops.</summary>
    public void SayGoodbye()
    {
        foreach (Publication publication in _publications.Where(p => p.State is PublicationState.Announcing or PublicationState.Established).ToList())
        {
            foreach (LinkState link in engine.Links.Values)
            {
                List<DnsRecord> records = publication.Records(link.Link).Select(r => r with { Ttl = 0 }).ToList();
                engine.SendMulticast(link, MdnsPackets.Responses(records, [], link.Link.MaxPacketSize));
            }

            publication.Stop();
        }
    }

    public Publication AddService(string instanceLabel, DnsName serviceType, IReadOnlyList<string> subtypes, ushort port, IReadOnlyList<byte[]> txt)
    {
        var publication = new Publication(engine, PublicationKind.Service, instanceLabel)
        {
            ServiceType = serviceType,
            Subtypes = subtypes,
            Port = port,
            Txt = txt,
        };
        engine.Post(() =>
        {
            _publications.Add(publication);
            StartProbing(publication);
        });
        return publication;
    }

    public void UpdateTxt(Publication publication, IReadOnlyList<byte[]> txt) => engine.Post(() =>
    {
        publication.Txt = txt;
        if (publication.State is PublicationState.Announcing or PublicationState.Established)
        {
            Announce(publication, first: false);
        }
    });

    /// <summary>Sends goodbyes (TTL 0) for a publication's records on every link and forgets it (§10.1).</summary>
    public Task RemoveAsync(Publication publication) => engine.InvokeAsync(() =>
    {
        bool announced = publication.State is PublicationState.Announcing or PublicationState.Established;
        publication.Stop();
        _publications.Remove(publication);
        if (announced)
        {
            foreach (LinkState link in engine.Links.Values)
            {
                List<DnsRecord> records = publication.Records(link.Link).Select(r => r with { Ttl = 0 }).ToList();
                engine.SendMulticast(link, MdnsPackets.Responses(records, [], link.Link.MaxPacketSize));
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
        TimeSpan delay = engine.RandomDelay(0, 250);
        if (publication.RecentConflicts.Count(t => engine.Now - t < TimeSpan.FromSeconds(10)) >= 15)
        {
            delay = TimeSpan.FromSeconds(5);
        }

        publication.Timer = engine.Schedule(delay, () => ProbeStep(publication));
    }

    private void ProbeStep(Publication publication)
    {
        if (publication.ProbesSent == 3)
        {
            Announce(publication, first: true);
            return;
        }

        foreach (LinkState link in engine.Links.Values)
        {
            List<DnsRecord> records = publication.Records(link.Link).Where(r => publication.IsUniqueName(r.Name)).ToList();
            List<DnsQuestion> questions = publication.UniqueNames()
                .Select(name => new DnsQuestion(name, DnsRecordType.Any, UnicastResponse: publication.ProbesSent == 0))
                .ToList();
            engine.SendMulticast(link, MdnsPackets.Queries(questions, [], records, link.Link.MaxPacketSize));
        }

        publication.ProbesSent++;
        publication.Timer = engine.Schedule(TimeSpan.FromMilliseconds(250), () => ProbeStep(publication));
    }

    private void Announce(Publication publication, bool first)
    {
        publication.Timer?.Cancel();
        publication.State = PublicationState.Announcing;
        SendAnnouncement(publication);
        if (first)
        {
            MdnsLog.Announced(logger, publication.FullName.ToString());
            publication.OnProbed();
        }

        // §8.3: at least two announcements, one second apart.
        publication.Timer = engine.Schedule(TimeSpan.FromSeconds(1), () =>
        {
            SendAnnouncement(publication);
            publication.State = PublicationState.Established;
        });
    }

    private void SendAnnouncement(Publication publication)
    {
        foreach (LinkState link in engine.Links.Values)
        {
            List<DnsRecord> records = publication.Records(link.Link);
            if (publication.Kind == PublicationKind.Service)
            {
                records.AddRange(engine.Host.State is PublicationState.Announcing or PublicationState.Established ? engine.Host.Records(link.Link) : []);
            }

            foreach (DnsRecord record in records)
            {
                link.LastMulticast[record.Name.Key + "|" + record.Type] = engine.Now;
            }

            engine.SendMulticast(link, MdnsPackets.Responses(records, [], link.Link.MaxPacketSize));
        }
    }

    public void HandleQuery(DnsMessage query, IPEndPoint source, LinkState link)
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
                        MdnsLog.ProbeDeferred(logger, question.Name.ToString());
                        publication.Timer?.Cancel();
                        publication.Timer = engine.Schedule(TimeSpan.FromSeconds(1), () => StartProbing(publication));
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
                bool recentlyMulticast = link.LastMulticast.TryGetValue(key, out TimeSpan last) && engine.Now - last < TimeSpan.FromSeconds(record.Ttl / 4.0);
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
                    engine.Send(packet, link.Link, source.AddressFamily, source);
                }
            }
            else
            {
                foreach (byte[] packet in MdnsPackets.Responses(unicast, Additionals(unicast, link.Link), link.Link.MaxPacketSize))
                {
                    engine.Send(packet, link.Link, source.AddressFamily, source);
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
                TimeSpan delay = query.IsTruncated ? engine.RandomDelay(400, 500) : engine.RandomDelay(20, 120);
                link.PendingSend = engine.Schedule(delay, () =>
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
            link.LastMulticast[record.Name.Key + "|" + record.Type] = engine.Now;
        }

        engine.SendMulticast(link, MdnsPackets.Responses(answers, additionals, link.Link.MaxPacketSize));
    }

    private void RateLimit(LinkState link, List<DnsRecord> records, TimeSpan interval) =>
        records.RemoveAll(r => link.LastMulticast.TryGetValue(r.Name.Key + "|" + r.Type, out TimeSpan last) && engine.Now - last < interval);

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

    public static void SuppressPending(LinkState link, List<DnsRecord> seen)
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
    public static int CompareProbeSets(List<DnsRecord> ours, List<DnsRecord> theirs)
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

    public void CheckConflict(DnsRecord record)
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
            List<DnsRecord> ours = engine.Links.Values.SelectMany(l => publication.Records(l.Link)).Where(r => r.Name.Equals(record.Name)).ToList();
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
        publication.RecentConflicts.Add(engine.Now);
        publication.Rename();
        MdnsLog.Renamed(logger, old, reason, publication.FullName.ToString());
        StartProbing(publication);
        if (publication == engine.Host)
        {
            // The services' SRV records name the host: announce them again with the new target.
            foreach (Publication service in _publications.Where(p => p.Kind == PublicationKind.Service && p.State != PublicationState.Stopped))
            {
                StartProbing(service);
            }
        }
    }
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
