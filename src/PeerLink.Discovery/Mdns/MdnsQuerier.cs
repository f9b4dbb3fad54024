using System;
using System.Collections.Generic;
using System.Linq;
using PeerLink.Discovery.Dns;

namespace PeerLink.Discovery.Mdns;

/// <summary>
/// The mDNS engine's querier (RFC 6762 §5.2, §5.4, §7.1): continuous queries at 20–120 ms, 1 s, then doubling up to an
/// hour, the first one QU; one-shot queries that stop once the cache answers; known-answer lists from the cache. It
/// runs on the engine's logical thread.
/// </summary>
internal sealed class MdnsQuerier(
    MdnsScheduler scheduler,
    Random random,
    MdnsCache cache,
    Func<IEnumerable<MdnsLink>> links,
    Action<MdnsLink, List<byte[]>> sendMulticast)
{
    private readonly List<ContinuousQuery> _queries = [];

    /// <summary>Whether a query in progress wants <paramref name="record"/> kept fresh.</summary>
    public bool IsInteresting(DnsRecord record) => _queries.Any(q => q.IsInterestedIn(record));

    public void Start(ContinuousQuery query)
    {
        _queries.Add(query);
        query.Interval = TimeSpan.FromSeconds(1);
        query.Timer = scheduler.Schedule(TimeSpan.FromMilliseconds(random.Next(20, 121)), () => Step(query));
    }

    public void Stop(ContinuousQuery query)
    {
        query.Timer?.Cancel();
        _queries.Remove(query);
    }

    /// <summary>Sends <paramref name="questions"/> on every link, with the cache's known answers (§7.1).</summary>
    public void Send(List<DnsQuestion> questions, MdnsCache.Entry? ignoreKnownAnswersOf)
    {
        TimeSpan now = scheduler.Now;
        foreach (MdnsLink link in links().ToList())
        {
            // §7.1: known answers are records we hold with more than half their TTL left.
            List<DnsRecord> known = questions
                .SelectMany(cache.LiveEntries)
                .Where(e => e.LinkIndex == link.Index && e != ignoreKnownAnswersOf && (e.ExpiresAt - now) > TimeSpan.FromSeconds(e.Record.Ttl / 2.0))
                .Select(e => e.Record with { Ttl = (uint)Math.Max(1, (e.ExpiresAt - now).TotalSeconds) })
                .ToList();
            sendMulticast(link, MdnsPackets.Queries(questions, known, [], link.MaxPacketSize));
        }
    }

    private void Step(ContinuousQuery query)
    {
        if (!_queries.Contains(query))
        {
            return;
        }

        if (!query.Continuous && cache.LiveEntries(query.Question).Any())
        {
            _queries.Remove(query);
            return;
        }

        // §5.4: the first query asks for unicast answers (QU), so that responders that announced a moment ago answer
        // at once instead of waiting out their one-second multicast limit.
        Send([query.Sent == 0 ? query.Question with { UnicastResponse = true } : query.Question], ignoreKnownAnswersOf: null);
        query.Sent++;
        query.Timer = scheduler.Schedule(query.Interval, () => Step(query));
        query.Interval = TimeSpan.FromTicks(Math.Min(query.Interval.Ticks * 2, TimeSpan.FromMinutes(60).Ticks));
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
