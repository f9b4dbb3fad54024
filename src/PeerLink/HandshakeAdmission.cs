using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace PeerLink;

/// <summary>Why an incoming connection was dropped before its handshake.</summary>
internal enum ShedReason
{
    None,
    PendingHandshakes,
    PendingFromAddress,
    Sessions,
}

/// <summary>
/// Admission of incoming connections to a handshake: at most <c>MaxPendingHandshakes</c> under way in the node, and at
/// most <c>MaxPendingHandshakesPerAddress</c> from one source (an IPv4 address, or an IPv6 /64, the block one host
/// usually holds), so that one host holding many silent connections cannot take every slot. When every slot is taken,
/// a newcomer from a source with fewer pending handshakes than the busiest source takes that source's oldest slot
/// (its handshake is aborted): an attacker spread over many addresses can fill the node, but not keep out a peer that
/// has fewer handshakes under way than the attacker's busiest address. Refusals are logged at most once per
/// <see cref="LogInterval"/>, with the number left unlogged. Thread-safe.
/// </summary>
internal sealed class HandshakeAdmission
{
    public static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(1);

    private readonly int _maxPending;
    private readonly int _maxPerSource;
    private readonly int _maxSessions;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly Dictionary<UInt128, LinkedList<Ticket>> _bySource = [];
    private int _pending;
    private long _lastLog = long.MinValue;
    private int _unlogged;

    public HandshakeAdmission(int maxPending, int maxPerSource, int maxSessions, TimeProvider time)
    {
        _maxPending = maxPending;
        _maxPerSource = maxPerSource;
        _maxSessions = maxSessions;
        _time = time;
    }

    public int Pending
    {
        get
        {
            lock (_gate)
            {
                return _pending;
            }
        }
    }

    /// <summary>Handshakes aborted so far to make room for a source with fewer under way.</summary>
    public long Evicted { get; private set; }

    /// <summary>
    /// Takes a slot for a handshake from <paramref name="remote"/>, or says why none is given. <paramref name="evict"/>
    /// aborts this handshake if a later newcomer needs its slot; null makes it one that is never evicted.
    /// </summary>
    public ShedReason TryAdmit(EndPoint? remote, int openSessions, Action? evict, out Ticket ticket)
    {
        UInt128 source = SourceOf(remote);
        ticket = new Ticket(source, evict);
        if (openSessions >= _maxSessions)
        {
            return ShedReason.Sessions;
        }

        Ticket? victim = null;
        Action? evictVictim = null;
        lock (_gate)
        {
            _bySource.TryGetValue(source, out LinkedList<Ticket>? mine);
            int own = mine?.Count ?? 0;
            if (own >= _maxPerSource)
            {
                return ShedReason.PendingFromAddress;
            }

            if (_pending >= _maxPending)
            {
                victim = OldestOfBusiestSource(own);
                if (victim is null)
                {
                    return ShedReason.PendingHandshakes;
                }

                evictVictim = victim.Evict;
                RemoveLocked(victim);
                Evicted++;
            }

            if (mine is null)
            {
                mine = new LinkedList<Ticket>();
                _bySource[source] = mine;
            }

            ticket.Node = mine.AddLast(ticket);
            _pending++;
        }

        evictVictim?.Invoke();
        return ShedReason.None;
    }

    /// <summary>Gives back the slot of a handshake that ended, however it ended (nothing if it was evicted).</summary>
    public void Release(Ticket ticket)
    {
        lock (_gate)
        {
            if (ticket.Node is not null)
            {
                RemoveLocked(ticket);
            }
        }
    }

    /// <summary>The evictable oldest handshake of the source with the most under way, if that is more than <paramref name="own"/>.</summary>
    private Ticket? OldestOfBusiestSource(int own)
    {
        LinkedList<Ticket>? busiest = null;
        foreach (LinkedList<Ticket> list in _bySource.Values)
        {
            if (list.Count > own && (busiest is null || list.Count > busiest.Count))
            {
                busiest = list;
            }
        }

        for (LinkedListNode<Ticket>? node = busiest?.First; node is not null; node = node.Next)
        {
            if (node.Value.Evict is not null)
            {
                return node.Value;
            }
        }

        return null;
    }

    private void RemoveLocked(Ticket ticket)
    {
        LinkedList<Ticket> list = ticket.Node!.List!;
        list.Remove(ticket.Node);
        ticket.Node = null;
        ticket.Forget();
        _pending--;
        if (list.Count == 0)
        {
            _bySource.Remove(ticket.Source);
        }
    }

    /// <summary>One admitted handshake's slot.</summary>
    internal sealed class Ticket(UInt128 source, Action? evict)
    {
        public UInt128 Source { get; } = source;

        /// <summary>Aborts the connection; dropped once the slot is given back, so that a long-lived connection does not keep it.</summary>
        public Action? Evict { get; private set; } = evict;

        /// <summary>Its place in its source's list while it holds a slot; null once released or evicted.</summary>
        public LinkedListNode<Ticket>? Node { get; set; }

        public void Forget() => Evict = null;
    }

    /// <summary>Whether this refusal should be logged now; if so, how many were refused without a log since the last.</summary>
    public bool ShouldLog(out int unlogged)
    {
        long now = _time.GetTimestamp();
        long last = Volatile.Read(ref _lastLog);
        if (last != long.MinValue && _time.GetElapsedTime(last, now) < LogInterval || Interlocked.CompareExchange(ref _lastLog, now, last) != last)
        {
            Interlocked.Increment(ref _unlogged);
            unlogged = 0;
            return false;
        }

        unlogged = Interlocked.Exchange(ref _unlogged, 0);
        return true;
    }

    /// <summary>The key of a source: the IPv4 address (also when IPv4-mapped), or the /64 prefix of an IPv6 address.</summary>
    internal static UInt128 SourceOf(EndPoint? remote)
    {
        if (remote is not IPEndPoint { Address: { } address })
        {
            return 0;      // in-memory and other transports without addresses share one budget
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out int written);
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            return (UInt128)1 << 64 | System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(bytes);
        }

        return (UInt128)2 << 64 | System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes[..8]);
    }
}
