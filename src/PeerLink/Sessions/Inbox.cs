using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using System.Threading.Tasks.Sources;

namespace PeerLink.Sessions;

/// <summary>
/// The received-message queue of one session: one writer (the receive loop), one reader at a time. Smaller than a
/// channel when idle (an empty queue holds no array), and waiting allocates nothing but a token's registration: the
/// reader's wait is one reusable value-task source.
/// </summary>
/// <remarks>A waiting reader is resumed on the thread pool, never on the receive loop's thread.</remarks>
internal sealed class Inbox : IValueTaskSource<bool>
{
    private readonly object _gate = new();
    private readonly Queue<PeerMessage> _queue = new();
    private ManualResetValueTaskSourceCore<bool> _waiter = new() { RunContinuationsAsynchronously = true };
    private CancellationTokenRegistration _registration;   // the waiting reader's token, held here rather than in an async frame
    private bool _waiting;
    private bool _completed;
    private Exception? _error;

    public bool TryWrite(PeerMessage message)
    {
        lock (_gate)
        {
            if (_completed)
            {
                return false;
            }

            _queue.Enqueue(message);
            if (!_waiting)
            {
                return true;
            }

            _waiting = false;
        }

        _waiter.SetResult(true);
        return true;
    }

    /// <summary>No more messages: the reader sees the end (or <paramref name="error"/>) once the queue is empty.</summary>
    public void Complete(Exception? error = null)
    {
        lock (_gate)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            _error = error;
            if (!_waiting)
            {
                return;
            }

            _waiting = false;
        }

        _waiter.SetResult(false);
    }

    /// <summary>The next message; false at the end. Throws the completion error after the queued messages.</summary>
    public bool TryRead(out PeerMessage message, out Exception? error, out bool ended)
    {
        lock (_gate)
        {
            error = null;
            ended = false;
            if (_queue.TryDequeue(out message))
            {
                return true;
            }

            if (_completed)
            {
                ended = true;
                error = _error;
            }

            return false;
        }
    }

    /// <summary>Waits until a message or the end is available. One waiter at a time. Allocates nothing but a token's registration.</summary>
    public ValueTask<bool> WaitAsync(CancellationToken cancellationToken)
    {
        ValueTask<bool> wait;
        lock (_gate)
        {
            if (_queue.Count > 0 || _completed)
            {
                return new ValueTask<bool>(true);
            }

            if (_waiting)
            {
                throw new InvalidOperationException("Only one receive may wait at a time.");
            }

            _waiter.Reset();
            _waiting = true;
            wait = new ValueTask<bool>(this, _waiter.Version);

            // Registered under the gate, so that the wait cannot end before the registration is stored (GetResult
            // disposes it); a token already cancelled runs Cancel here, on this thread (the gate is re-entrant).
            if (cancellationToken.CanBeCanceled)
            {
                _registration = cancellationToken.UnsafeRegister(static (state, token) => ((Inbox)state!).Cancel(token), this);
            }
        }

        return wait;
    }

    /// <summary>Removes everything still queued (on dispose).</summary>
    public IEnumerable<PeerMessage> Drain()
    {
        lock (_gate)
        {
            PeerMessage[] left = _queue.ToArray();
            _queue.Clear();
            return left;
        }
    }

    bool IValueTaskSource<bool>.GetResult(short token)
    {
        CancellationTokenRegistration registration;
        lock (_gate)
        {
            registration = _registration;
            _registration = default;
        }

        registration.Dispose();   // outside the gate: it waits for a Cancel that is running
        return _waiter.GetResult(token);
    }

    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _waiter.GetStatus(token);

    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _waiter.OnCompleted(continuation, state, token, flags);

    private void Cancel(CancellationToken token)
    {
        lock (_gate)
        {
            if (!_waiting)
            {
                return;
            }

            _waiting = false;
        }

        _waiter.SetException(new OperationCanceledException(token));
    }
}
