using System;
using System.Threading.Tasks;
using System.Threading.Tasks.Sources;

namespace PeerLink.Internal;

/// <summary>
/// A reusable signal for one waiter at a time: waiting allocates nothing (unlike a TaskCompletionSource per wait). A
/// <see cref="Set"/> with nobody waiting is remembered for the next wait. The waiter resumes on the thread pool.
/// </summary>
internal sealed class AsyncSignal : IValueTaskSource
{
    private readonly object _gate = new();
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private bool _waiting;
    private bool _signaled;

    public ValueTask WaitAsync()
    {
        lock (_gate)
        {
            if (_signaled)
            {
                _signaled = false;
                return ValueTask.CompletedTask;
            }

            _core.Reset();
            _waiting = true;
            return new ValueTask(this, _core.Version);
        }
    }

    public void Set()
    {
        lock (_gate)
        {
            if (!_waiting)
            {
                _signaled = true;
                return;
            }

            _waiting = false;
        }

        _core.SetResult(true);
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
