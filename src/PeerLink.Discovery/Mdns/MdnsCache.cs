using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.Extensions.Logging;
using PeerLink.Discovery.Dns;

namespace PeerLink.Discovery.Mdns;

/// <summary>
/// The mDNS engine's record cache (RFC 6762 §5.2, §10): records by name and type per interface, expiry at TTL (a goodbye
/// or a flushed record one second later), refresh queries at 80–95 % of the TTL for records someone is interested in,
/// and a bound on the number of records so that a flood cannot grow memory. It runs on the engine's logical thread.
/// </summary>
internal sealed class MdnsCache(
    MdnsScheduler scheduler,
    Random random,
    ILogger logger,
    int maxRecords,
    Func<DnsRecord, bool> isInteresting,
    Action<DnsRecord, MdnsCache.Entry> refresh,
    Action expired)
{
    private readonly Dictionary<string, List<Entry>> _entries = new(StringComparer.Ordinal);
    private int _count;

    private TimeSpan Now => scheduler.Now;

    /// <summary>Records held now (at most the bound given).</summary>
    public int Count => _count;

    /// <summary>Names and types indexed now: never more than the records held (no empty slots are kept).</summary>
    public int Keys => _entries.Count;

    /// <summary>Adds or renews a received record; true when what a browser sees changed.</summary>
    public bool Add(DnsRecord record, int linkIndex)
    {
        string key = Key(record.Name, record.Type);
        if (!_entries.TryGetValue(key, out List<Entry>? entries))
        {
            if (record.Ttl == 0)
            {
                return false;   // a goodbye for something we never held
            }

            if (_count >= maxRecords)
            {
                // Full: a new name is not even given an empty slot (a flood of names must not grow the index).
                MdnsLog.CacheFull(logger, maxRecords);
                return false;
            }

            entries = [];
            _entries[key] = entries;
        }

        bool changed = false;
        if (record.CacheFlush)
        {
            // §10.2: other records of this set that arrived more than a second ago expire in one second.
            foreach (Entry old in entries.Where(e => e.LinkIndex == linkIndex && !e.Record.IsSameRecord(record) && Now - e.Received > TimeSpan.FromSeconds(1)).ToList())
            {
                SetExpiry(old, TimeSpan.FromSeconds(1));
            }
        }

        Entry? entry = entries.Find(e => e.LinkIndex == linkIndex && e.Record.IsSameRecord(record));
        if (entry is null)
        {
            if (record.Ttl == 0)
            {
                return changed;
            }

            if (_count >= maxRecords)
            {
                MdnsLog.CacheFull(logger, maxRecords);
                return changed;
            }

            entry = new Entry(record, linkIndex);
            entries.Add(entry);
            _count++;
            changed = true;
        }
        else if (!entry.Record.DataEquals(record) || entry.Record.Ttl != record.Ttl)
        {
            changed = true;
        }

        entry.Record = record;
        entry.Received = Now;
        entry.RefreshesSent = 0;
        SetExpiry(entry, record.Ttl == 0 ? TimeSpan.FromSeconds(1) : TimeSpan.FromSeconds(record.Ttl));   // §10.1: a goodbye leaves one second
        return changed;
    }

    /// <summary>The cached records of a name and type, newest first, goodbyes last.</summary>
    public List<(DnsRecord Record, int LinkIndex)> Lookup(DnsName name, DnsRecordType type) =>
        _entries.TryGetValue(Key(name, type), out List<Entry>? entries)
            ? entries.OrderBy(e => e.Goodbye).ThenByDescending(e => e.Received).Select(e => (e.Record, e.LinkIndex)).ToList()
            : [];

    /// <summary>The live (not departing) entries that answer a question, for known-answer lists.</summary>
    public IEnumerable<Entry> LiveEntries(DnsQuestion question) =>
        (_entries.TryGetValue(Key(question.Name, question.Type), out List<Entry>? entries) ? entries : [])
            .Where(e => !e.Goodbye);

    /// <summary>Forgets everything learned on an interface that went away.</summary>
    public void RemoveLink(int linkIndex)
    {
        foreach (Entry entry in _entries.Values.SelectMany(e => e).Where(e => e.LinkIndex == linkIndex).ToList())
        {
            Remove(entry);
        }
    }

    private void SetExpiry(Entry entry, TimeSpan lifetime)
    {
        entry.Expiry?.Cancel();
        entry.ExpiresAt = Now + lifetime;
        if (lifetime <= TimeSpan.FromSeconds(1))
        {
            entry.Goodbye = true;
            entry.Expiry = scheduler.Schedule(lifetime, () =>
            {
                Remove(entry);
                expired();
            });
            return;
        }

        ScheduleRefresh(entry, lifetime);
    }

    /// <summary>§5.2: refresh queries at 80, 85, 90 and 95% of the TTL (plus up to 2%) for records someone is interested in.</summary>
    private void ScheduleRefresh(Entry entry, TimeSpan lifetime)
    {
        if (entry.RefreshesSent >= 4)
        {
            entry.Expiry = scheduler.Schedule(entry.ExpiresAt - Now, () =>
            {
                Remove(entry);
                expired();
            });
            return;
        }

        double fraction = 0.80 + (0.05 * entry.RefreshesSent) + (random.NextDouble() * 0.02);
        TimeSpan at = entry.ExpiresAt - lifetime + (lifetime * fraction);
        entry.Expiry = scheduler.Schedule(at - Now, () =>
        {
            entry.RefreshesSent++;
            if (isInteresting(entry.Record))
            {
                refresh(entry.Record, entry);
            }

            ScheduleRefresh(entry, lifetime);
        });
    }

    private void Remove(Entry entry)
    {
        entry.Expiry?.Cancel();
        string key = Key(entry.Record.Name, entry.Record.Type);
        if (_entries.TryGetValue(key, out List<Entry>? entries) && entries.Remove(entry))
        {
            _count--;
            if (entries.Count == 0)
            {
                _entries.Remove(key);
            }
        }
    }

    private static string Key(DnsName name, DnsRecordType type) => name.Key + "|" + (ushort)type;

    /// <summary>One cached record on one interface.</summary>
    internal sealed class Entry(DnsRecord record, int linkIndex)
    {
        public DnsRecord Record { get; set; } = record;

        public int LinkIndex { get; } = linkIndex;

        public TimeSpan Received { get; set; }

        public TimeSpan ExpiresAt { get; set; }

        public int RefreshesSent { get; set; }

        public bool Goodbye { get; set; }

        public MdnsScheduler.Scheduled? Expiry { get; set; }
    }
}
