using System;
using System.Buffers;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Transport;

namespace PeerLink.Nat.Rendezvous;

/// <summary>How one direction of a relay ended.</summary>
internal enum RelayPumpOutcome
{
    /// <summary>The sender finished (FIN); the end was passed on.</summary>
    Finished,

    /// <summary>The byte limit was reached; the bytes beyond it were not forwarded.</summary>
    ByteLimit,

    /// <summary>A connection failed or was aborted.</summary>
    Failed,
}

/// <summary>
/// One relayed pair: the caller's and the callee's relay connections to the node, joined by their tokens, then spliced
/// byte for byte. What flows is the devices' own Noise session: ciphertext the node cannot read or forge.
/// </summary>
/// <remarks>
/// Each direction copies at most <see cref="MaxBytesPerTurn"/> before it flushes and awaits the other side's socket, so a
/// busy pair gives the thread pool back after every turn and cannot starve the node's other pairs.
/// </remarks>
internal sealed class RelayCircuit
{
    public const int MaxBytesPerTurn = 128 * 1024;

    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private PeerConnection? _callerConnection;
    private PeerConnection? _calleeConnection;
    private long _bytes;
    private int _ended;

    public RelayCircuit(long id, PeerId caller, PeerId callee)
    {
        Id = id;
        Caller = caller;
        Callee = callee;
        CallerToken = RendezvousWire.NewToken();
        CalleeToken = RendezvousWire.NewToken();
    }

    public long Id { get; }

    public PeerId Caller { get; }

    public PeerId Callee { get; }

    public byte[] CallerToken { get; }

    public byte[] CalleeToken { get; }

    /// <summary>Bytes forwarded so far, both directions.</summary>
    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>The join timeout, then the duration limit.</summary>
    public ITimer? Timer { get; set; }

    public bool IsEnded => Volatile.Read(ref _ended) != 0;

    /// <summary>Both sides have joined.</summary>
    public bool IsJoined
    {
        get
        {
            lock (_gate)
            {
                return _callerConnection is not null && _calleeConnection is not null;
            }
        }
    }

    /// <summary>Records one side's relay connection; true when both sides are now present.</summary>
    public bool Join(bool isCaller, PeerConnection connection)
    {
        lock (_gate)
        {
            if (isCaller)
            {
                _callerConnection = connection;
            }
            else
            {
                _calleeConnection = connection;
            }

            return _callerConnection is not null && _calleeConnection is not null;
        }
    }

    /// <summary>True for the one caller that ends the circuit.</summary>
    public bool TryEnd() => Interlocked.Exchange(ref _ended, 1) == 0;

    /// <summary>Copies both directions until both finish or one fails or the byte limit is reached.</summary>
    public async Task<RelayPumpOutcome> SpliceAsync(long maxBytes)
    {
        PeerConnection caller = _callerConnection!;
        PeerConnection callee = _calleeConnection!;
        Task<RelayPumpOutcome> forward = PumpAsync(caller.Transport.Input, callee.Transport.Output, maxBytes);
        Task<RelayPumpOutcome> backward = PumpAsync(callee.Transport.Input, caller.Transport.Output, maxBytes);
        RelayPumpOutcome first = await await Task.WhenAny(forward, backward).ConfigureAwait(false);
        if (first != RelayPumpOutcome.Finished)
        {
            await _stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(forward, backward).ConfigureAwait(false);
            return first;
        }

        RelayPumpOutcome second = await (forward.IsCompleted ? backward : forward).ConfigureAwait(false);
        return second;
    }

    /// <summary>Stops the copying and resets both connections.</summary>
    public void Abort()
    {
        try
        {
            _stop.Cancel();
        }
        catch (ObjectDisposedException)
        {
            return;   // ended and released already (a join timeout racing the node's shutdown): nothing left to stop
        }

        PeerConnection? caller;
        PeerConnection? callee;
        lock (_gate)
        {
            caller = _callerConnection;
            callee = _calleeConnection;
        }

        caller?.Abort();
        callee?.Abort();
    }

    /// <summary>Releases both connections (gracefully: what was forwarded is flushed first).</summary>
    public async ValueTask DisposeConnectionsAsync()
    {
        PeerConnection? caller;
        PeerConnection? callee;
        lock (_gate)
        {
            caller = _callerConnection;
            callee = _calleeConnection;
        }

        if (caller is not null)
        {
            await caller.DisposeAsync().ConfigureAwait(false);
        }

        if (callee is not null)
        {
            await callee.DisposeAsync().ConfigureAwait(false);
        }

        Timer?.Dispose();
        _stop.Dispose();
    }

    private async Task<RelayPumpOutcome> PumpAsync(PipeReader from, PipeWriter to, long maxBytes)
    {
        CancellationToken stop = _stop.Token;
        try
        {
            while (true)
            {
                ReadResult result = await from.ReadAsync(stop).ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                if (buffer.Length > MaxBytesPerTurn)
                {
                    buffer = buffer.Slice(0, MaxBytesPerTurn);
                }

                if (Interlocked.Add(ref _bytes, buffer.Length) > maxBytes)
                {
                    from.AdvanceTo(buffer.Start);
                    return RelayPumpOutcome.ByteLimit;
                }

                // One span for the turn (at most MaxBytesPerTurn): written piecewise, it would spread over the pipe's 4 KiB
                // segments, and the socket sends each segment with its own call.
                int length = (int)buffer.Length;
                if (length > 0)
                {
                    buffer.CopyTo(to.GetSpan(length));
                    to.Advance(length);
                }

                if (NatTelemetry.RelayedBytes.Enabled)
                {
                    NatTelemetry.RelayedBytes.Add(buffer.Length);
                }

                from.AdvanceTo(buffer.End);
                bool drained = buffer.Length == result.Buffer.Length;
                if (!buffer.IsEmpty)
                {
                    FlushResult flush = await to.FlushAsync(stop).ConfigureAwait(false);
                    if (flush.IsCompleted)
                    {
                        return RelayPumpOutcome.Failed;   // the other side's connection is gone
                    }
                }

                if (result.IsCompleted && drained)
                {
                    await to.CompleteAsync().ConfigureAwait(false);   // pass the FIN on
                    return RelayPumpOutcome.Finished;
                }
            }
        }
        catch (Exception e) when (e is PeerLinkException or OperationCanceledException or InvalidOperationException or System.IO.IOException)
        {
            return RelayPumpOutcome.Failed;
        }
    }
}
