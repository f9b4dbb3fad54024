using System;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Hosting;

/// <summary>
/// The hosted PeerLink node, from dependency injection: the host starts it with the application and disposes it at
/// shutdown. Services that run before the node is up await <see cref="WaitForStartAsync"/>.
/// </summary>
public sealed class PeerLinkNode
{
    private readonly TaskCompletionSource<PeerNode> _started = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The running node.</summary>
    /// <exception cref="InvalidOperationException">The host has not started the node (yet), or it failed to start.</exception>
    public PeerNode Node => _started.Task.IsCompletedSuccessfully
        ? _started.Task.Result
        : throw new InvalidOperationException("The PeerLink node is not running: the host has not started it, or it failed to start.");

    /// <summary>True once the node runs, until the host stops it.</summary>
    public bool IsRunning => _started.Task.IsCompletedSuccessfully && !Stopped;

    /// <summary>Why the node failed to start, if it did.</summary>
    public Exception? StartFailure => _started.Task.Exception?.InnerException;

    internal bool Stopped { get; set; }

    /// <summary>The node, once the host has started it.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="Exception">The node failed to start: the failure itself (a <see cref="PeerLinkException"/>, say).</exception>
    public Task<PeerNode> WaitForStartAsync(CancellationToken cancellationToken = default) => _started.Task.WaitAsync(cancellationToken);

    internal void SetStarted(PeerNode node) => _started.TrySetResult(node);

    internal void SetFailed(Exception error) => _started.TrySetException(error);
}
