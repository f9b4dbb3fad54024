using System;
using System.Collections.Concurrent;
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
/// usually holds), so that one host holding many silent connections cannot take every slot. Refusals are logged at most
/// once per <see cref="LogInterval"/>, with the number left unlogged. Thread-safe.
/// </summary>
internal sealed class HandshakeAdmission
{
    public static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(1);

    private readonly int _maxPending;
    private readonly int _maxPerSource;
    private readonly int _maxSessions;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<UInt128, int> _bySource = new();
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

    public int Pending => Volatile.Read(ref _pending);

    /// <summary>Takes a slot for a handshake from <paramref name="remote"/>, or says why none is given.</summary>
    public ShedReason TryAdmit(EndPoint? remote, int openSessions, out UInt128 source)
    {
        source = SourceOf(remote);
        if (openSessions >= _maxSessions)
        {
            return ShedReason.Sessions;
        }

        if (Interlocked.Increment(ref _pending) > _maxPending)
        {
            Interlocked.Decrement(ref _pending);
            return ShedReason.PendingHandshakes;
        }

        if (_bySource.AddOrUpdate(source, 1, static (_, n) => n + 1) > _maxPerSource)
        {
            Release(source);
            return ShedReason.PendingFromAddress;
        }

        return ShedReason.None;
    }

    /// <summary>Gives back the slot of a handshake that ended, however it ended.</summary>
    public void Release(UInt128 source)
    {
        Interlocked.Decrement(ref _pending);
        while (_bySource.TryGetValue(source, out int n))
        {
            if (n <= 1 ? _bySource.TryRemove(new(source, n)) : _bySource.TryUpdate(source, n - 1, n))
            {
                return;
            }
        }
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
