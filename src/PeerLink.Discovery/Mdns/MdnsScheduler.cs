using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;

namespace PeerLink.Discovery.Mdns;

/// <summary>
/// The mDNS engine's logical thread: work items run one at a time in the order posted (on whichever thread posted
/// first, with no thread of its own), and timed items run on it when due, from one timer of the engine's
/// <see cref="TimeProvider"/>. Tests drive every timing of the protocol with a manual clock through it.
/// </summary>
internal sealed class MdnsScheduler : IAsyncDisposable
{
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly long _epoch;
    private readonly Lock _gate = new();
    private readonly Queue<(Action Action, bool EvenIfStopped)> _work = new();
    private readonly PriorityQueue<Scheduled, (TimeSpan Due, long Seq)> _scheduled = new();
    private readonly ITimer _timer;
    private bool _draining;
    private bool _stopped;
    private long _sequence;
    private TimeSpan _timerDue = TimeSpan.MaxValue;

    public MdnsScheduler(TimeProvider time, ILogger logger)
    {
        _time = time;
        _logger = logger;
        _epoch = time.GetTimestamp();
        _timer = time.CreateTimer(static state => ((MdnsScheduler)state!).Post(((MdnsScheduler)state!).RunDue), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Time since the scheduler started, on its clock.</summary>
    public TimeSpan Now => _time.GetElapsedTime(_epoch);

    /// <summary>Runs <paramref name="action"/> after everything posted before it, never concurrently with other work.</summary>
    public void Post(Action action) => Post(action, evenIfStopped: false);

    /// <summary>Runs <paramref name="function"/> on the logical thread and returns its result; after <see cref="Stop"/>, ObjectDisposedException.</summary>
    public Task<T> InvokeAsync<T>(Func<T> function)
    {
        var completion = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(
            () =>
            {
                if (_stopped)
                {
                    completion.TrySetException(new ObjectDisposedException("The mDNS engine has stopped."));
                    return;
                }

                try
                {
                    completion.TrySetResult(function());
                }
                catch (Exception e)
                {
                    completion.TrySetException(e);
                }
            },
            evenIfStopped: true);
        return completion.Task;
    }

    /// <summary>Runs <paramref name="action"/> on the logical thread after <paramref name="delay"/>, unless cancelled first.</summary>
    public Scheduled Schedule(TimeSpan delay, Action action)
    {
        var item = new Scheduled(action);
        TimeSpan due = Now + (delay < TimeSpan.Zero ? TimeSpan.Zero : delay);
        _scheduled.Enqueue(item, (due, _sequence++));
        ArmTimer();
        return item;
    }

    /// <summary>From now on only <see cref="InvokeAsync"/> items run (and fail); call it on the logical thread.</summary>
    public void Stop() => _stopped = true;

    public ValueTask DisposeAsync() => _timer.DisposeAsync();

    private void Post(Action action, bool evenIfStopped)
    {
        lock (_gate)
        {
            _work.Enqueue((action, evenIfStopped));
            if (_draining)
            {
                return;
            }

            _draining = true;
        }

        while (true)
        {
            (Action Action, bool EvenIfStopped) next;
            lock (_gate)
            {
                if (!_work.TryDequeue(out next))
                {
                    _draining = false;
                    return;
                }
            }

            try
            {
                if (!_stopped || next.EvenIfStopped)
                {
                    next.Action();
                }
            }
            catch (Exception e)
            {
                MdnsLog.WorkFailed(_logger, e);
            }
        }
    }

    private void ArmTimer()
    {
        while (_scheduled.TryPeek(out Scheduled? head, out _) && head.Cancelled)
        {
            _scheduled.Dequeue();
        }

        if (!_scheduled.TryPeek(out _, out (TimeSpan Due, long Seq) next))
        {
            return;
        }

        if (next.Due < _timerDue)
        {
            _timerDue = next.Due;
            TimeSpan wait = next.Due - Now;
            _timer.Change(wait < TimeSpan.Zero ? TimeSpan.Zero : wait, Timeout.InfiniteTimeSpan);
        }
    }

    private void RunDue()
    {
        _timerDue = TimeSpan.MaxValue;
        while (_scheduled.TryPeek(out Scheduled? item, out (TimeSpan Due, long Seq) key) && key.Due <= Now)
        {
            _scheduled.Dequeue();
            if (!item.Cancelled)
            {
                item.Cancelled = true;
                try
                {
                    item.Action();
                }
                catch (Exception e)
                {
                    // One failed timer must not stop the others (or leave the timer unarmed).
                    MdnsLog.WorkFailed(_logger, e);
                }
            }
        }

        ArmTimer();
    }

    /// <summary>A timed work item; cancelling it before it is due means it never runs.</summary>
    internal sealed class Scheduled(Action action)
    {
        public Action Action { get; } = action;

        public bool Cancelled { get; set; }

        public void Cancel() => Cancelled = true;
    }
}
