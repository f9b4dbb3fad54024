using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Sessions;

/// <summary>
/// Correlates requests with responses (by a u32 id, docs/protocol.md §4) and the one ping in flight with its PONG. It
/// only keeps the pending waits: the session sends and receives. Thread-safe.
/// </summary>
internal sealed class RequestTracker(TimeProvider time)
{
    private ConcurrentDictionary<uint, TaskCompletionSource<byte[]>>? _requests;   // created by the first request
    private int _nextRequestId;
    private TaskCompletionSource<TimeSpan>? _ping;
    private long _pingSentAt;

    /// <summary>Registers a new request; returns its id and the wait for its response.</summary>
    public (uint Id, TaskCompletionSource<byte[]> Response) StartRequest()
    {
        uint id = (uint)Interlocked.Increment(ref _nextRequestId);
        var pending = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        LazyInitializer.EnsureInitialized(ref _requests, static () => new())[id] = pending;
        return (id, pending);
    }

    /// <summary>Forgets a request, answered or not.</summary>
    public void EndRequest(uint id) => _requests?.TryRemove(id, out _);

    /// <summary>Completes the request <paramref name="id"/> with a copy of <paramref name="body"/>; a late or unknown response is dropped.</summary>
    public void OnResponse(uint id, ReadOnlySpan<byte> body)
    {
        if (_requests is { } requests && requests.TryRemove(id, out TaskCompletionSource<byte[]>? pending))
        {
            pending.TrySetResult(body.ToArray());
        }
    }

    /// <summary>Starts a ping; false when one is already in flight.</summary>
    public bool TryStartPing(out TaskCompletionSource<TimeSpan> ping)
    {
        ping = new TaskCompletionSource<TimeSpan>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (Interlocked.CompareExchange(ref _ping, ping, null) is not null)
        {
            return false;
        }

        Volatile.Write(ref _pingSentAt, time.GetTimestamp());
        return true;
    }

    /// <summary>Ends a ping, answered or not.</summary>
    public void EndPing(TaskCompletionSource<TimeSpan> ping) => Interlocked.CompareExchange(ref _ping, null, ping);

    /// <summary>A PONG arrived: the ping in flight, if any, completes with the round trip.</summary>
    public void OnPong()
    {
        if (Volatile.Read(ref _ping) is { } ping)
        {
            ping.TrySetResult(time.GetElapsedTime(Volatile.Read(ref _pingSentAt)));
        }
    }

    /// <summary>The session ended: every pending request and the ping fail with <paramref name="error"/>.</summary>
    public void FailAll(Exception error)
    {
        foreach (KeyValuePair<uint, TaskCompletionSource<byte[]>> pending in _requests ?? [])
        {
            pending.Value.TrySetException(error);
        }

        Volatile.Read(ref _ping)?.TrySetException(error);
    }
}
