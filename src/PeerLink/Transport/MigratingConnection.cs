// A connection whose path can change under the session (docs/nat-traversal.md §5): the session's byte stream is
// numbered by offset, every path carries it in frames, and the sender keeps what the receiver has not acknowledged.
// Moving to a new path (make-before-break) or falling back from a dead one therefore loses, duplicates and reorders
// nothing. The bytes carried are the session's Noise ciphertext; these frames add no secrecy and need none.
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Linq;
using System.Net;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Transport;

/// <summary>
/// A <see cref="PeerConnection"/> over one or more paths to the same peer (relayed, direct TCP), of which one carries
/// the data at a time. Frames on a path: DATA(bytes), ACK(offset), MOVE(offset), RESUME(offset), RESEND(offset),
/// FIN(offset); see docs/nat-traversal.md.
/// </summary>
internal sealed class MigratingConnection : PeerConnection, IDuplexPipe
{
    internal const byte Data = 1;
    internal const byte Ack = 2;
    internal const byte Move = 3;
    internal const byte Resume = 4;
    internal const byte Resend = 5;
    internal const byte Fin = 6;

    private const int ChunkSize = 32 * 1024;
    private const int MaxBatch = 4 * ChunkSize;   // what one send-loop turn frames and flushes at most
    private const int AckEvery = 256 * 1024;   // an ACK costs the receiver a send and the sender a wake-up
    private const int HeaderLength = 1 + 8;    // type and offset, or type and 4-byte length (DATA) padded to the same parse

    private static long s_next;
    private readonly Pipe _toNetwork;
    private readonly Pipe _fromNetwork;
    private readonly TimeProvider _time;
    private readonly TimeSpan _keepAlive;
    private readonly TimeSpan _pathTimeout;
    private readonly long _window;
    private readonly long _ackEvery;
    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _stream = new(1, 1);
    private readonly List<Path> _paths = [];
    private readonly Queue<Chunk> _unacked = new();
    private readonly Chunk[] _batch = new Chunk[MaxBatch / ChunkSize];   // the send loop's, for one turn
    private readonly Stack<byte[]> _freeChunks = new();   // this connection's own: a full window is more than ArrayPool keeps
    private bool _chunksUsed;
    private readonly CancellationTokenSource _closed = new();
    private readonly ITimer _timer;
    private readonly Task _sendLoop;
    // Made by a waiter, under _gate, and taken by whoever signals: nothing is allocated per frame or per ACK when nobody waits.
    private TaskCompletionSource? _receiveChanged;
    private TaskCompletionSource? _sendWake;
    private Path _sendPath;
    private Path? _active;          // the path whose DATA is delivered now
    private Path? _switchTo;        // a path the sender should move to at the next frame boundary
    private long _resendFrom = -1;  // the peer asked for everything from here again
    private long _sent;             // bytes taken from the session and framed
    private long _acked;            // bytes the peer confirmed
    private long _received;         // bytes delivered to the session
    private long _lastAckSent;
    private volatile bool _sourceDone;       // the session completed its output: FIN follows the last byte
    private bool _finReceived;
    private Exception? _failure;
    private TaskCompletionSource? _frameWatch;   // only while a test waits for frames
    private long _framesReceived;
    private int _disposed;

    /// <summary>Starts with one path, which carries the data until another is added and chosen.</summary>
    /// <param name="first">The first path, already connected; owned from now on.</param>
    /// <param name="kind">What the path is, for diagnostics ("relayed", "direct-tcp").</param>
    /// <param name="time">The clock of the keepalives and path timeouts.</param>
    /// <param name="keepAlive">How often an ACK goes out on every path; a path silent for three of these is dead.</param>
    /// <param name="window">
    /// A safety bound on the unacknowledged bytes kept before the session waits. What is kept is what the path took, and
    /// a path takes only what its TCP windows let through, so in practice the path bounds it. The window must not be
    /// what stops a sender: ACKs travel behind data, and an application that reads only after it wrote (an echo) would
    /// then wait for an ACK that waits for it.
    /// </param>
    public MigratingConnection(PeerConnection first, string kind, TimeProvider time, TimeSpan keepAlive, long window = 16 * 1024 * 1024)
    {
        ConnectionId = "path-" + Interlocked.Increment(ref s_next).ToString(System.Globalization.CultureInfo.InvariantCulture);
        _time = time;
        _keepAlive = keepAlive;
        _pathTimeout = keepAlive * 3;
        _window = window;
        _ackEvery = Math.Min(AckEvery, Math.Max(1, window / 4));   // a small window must not wait for the keepalive's ACK
        // As small as the socket transport's: what waits here is also held as pooled buffers, and ArrayPool keeps only a few per size.
        // Inline continuations, as the socket transport: the session's flush runs the path sender, and a delivery runs the
        // session's receive loop, without a thread hop each (a hop costs 25-30 us on two cores, PERF-NOTES).
        var options = new PipeOptions(pauseWriterThreshold: 128 * 1024, resumeWriterThreshold: 64 * 1024, readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false);
        _toNetwork = new Pipe(options);
        _fromNetwork = new Pipe(options);
        _sendPath = AddPathCore(first, kind);
        _sendLoop = Task.Run(SendLoopAsync);
        _timer = time.CreateTimer(static s => ((MigratingConnection)s!).OnTimer(), this, keepAlive, keepAlive);
    }

    private Sessions.SessionPath _pathInfo = new(Sessions.SessionPathKind.Relayed, "relayed", []);

    /// <summary>Raised when the path that carries this side's data changes (new path, fallback); the argument is its kind.</summary>
    public event Action<string>? PathChanged;

    /// <summary>Raised when a path dies and others remain (the data moves to one of them); the argument is its kind.</summary>
    public event Action<string>? PathDied;

    /// <summary>Raised when <see cref="PathInfo"/> changes.</summary>
    public event Action<Sessions.SessionPath>? PathInfoChanged;

    /// <summary>The path in words, kept by whoever manages the paths (the rendezvous client).</summary>
    public Sessions.SessionPath PathInfo
    {
        get => Volatile.Read(ref _pathInfo);
        set
        {
            Volatile.Write(ref _pathInfo, value);
            PathInfoChanged?.Invoke(value);
        }
    }

    public override string ConnectionId { get; }

    public override IDuplexPipe Transport => this;

    public PipeReader Input => _fromNetwork.Reader;

    public PipeWriter Output => _toNetwork.Writer;

    public override EndPoint? LocalEndPoint => Volatile.Read(ref _sendPath).Connection.LocalEndPoint;

    public override EndPoint? RemoteEndPoint => Volatile.Read(ref _sendPath).Connection.RemoteEndPoint;

    public override CancellationToken ConnectionClosed => _closed.Token;

    /// <summary>The kind of the path this side sends on now.</summary>
    public string CurrentPath => Volatile.Read(ref _sendPath).Kind;

    /// <summary>Live paths, for diagnostics and tests.</summary>
    public IReadOnlyList<string> Paths
    {
        get
        {
            lock (_gate)
            {
                return _paths.Where(p => !p.Dead).Select(p => p.Kind).ToArray();
            }
        }
    }

    /// <summary>Bytes sent and not yet acknowledged (for tests).</summary>
    internal long Unacknowledged
    {
        get
        {
            lock (_gate)
            {
                return _sent - _acked;
            }
        }
    }

    /// <summary>Frames received on all paths so far (for tests that step a fake clock).</summary>
    internal long FramesReceived => Interlocked.Read(ref _framesReceived);

    /// <summary>Completes once at least <paramref name="count"/> frames have been received (for tests).</summary>
    internal async Task WhenFramesReceivedAsync(long count)
    {
        while (Interlocked.Read(ref _framesReceived) < count)
        {
            Task wait;
            lock (_gate)
            {
                _frameWatch ??= NewSignal();
                wait = _frameWatch.Task;
            }

            if (Interlocked.Read(ref _framesReceived) >= count)
            {
                return;
            }

            await wait.ConfigureAwait(false);
        }
    }

    /// <summary>Adds a connected path and moves this side's data to it (make-before-break: the old path stays as a fallback).</summary>
    /// <param name="connection">The new path, authenticated by the caller as belonging to this session; owned from now on.</param>
    /// <param name="kind">What the path is.</param>
    public void AddPathAndMove(PeerConnection connection, string kind)
    {
        Path path;
        lock (_gate)
        {
            if (_failure is not null || _disposed != 0)
            {
                connection.Abort();
                _ = connection.DisposeAsync();
                return;
            }

            path = AddPathCore(connection, kind);
            _switchTo = path;
        }

        WakeSender();
    }

    /// <summary>Drops a path on purpose (the caller knows it is gone); the data moves to another path.</summary>
    public void DropPath(string kind)
    {
        Path[] matching;
        lock (_gate)
        {
            matching = _paths.Where(p => p.Kind == kind && !p.Dead).ToArray();
        }

        foreach (Path path in matching)
        {
            MarkDead(path, new PeerLinkException(PeerLinkError.ConnectionAborted, $"The {kind} path was dropped."));
        }
    }

    public override void Abort(Exception? reason = null)
    {
        Exception error = reason ?? new PeerLinkException(PeerLinkError.ConnectionAborted, "The connection was aborted.");
        Fail(error);
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _toNetwork.Writer.CompleteAsync().ConfigureAwait(false);
        WakeSender();
        try
        {
            await _sendLoop.WaitAsync(TimeSpan.FromSeconds(5), _time).ConfigureAwait(false);   // the FIN goes out
        }
        catch (TimeoutException)
        {
        }

        await _timer.DisposeAsync().ConfigureAwait(false);
        await _fromNetwork.Reader.CompleteAsync().ConfigureAwait(false);
        Path[] paths;
        lock (_gate)
        {
            paths = [.. _paths];
        }

        foreach (Path path in paths)
        {
            await path.Connection.DisposeAsync().ConfigureAwait(false);
        }

        await Task.WhenAll(paths.Select(p => p.Loop)).ConfigureAwait(false);
        lock (_gate)
        {
            while (_unacked.TryDequeue(out Chunk chunk))
            {
                ReturnChunk(chunk.Buffer);
            }

            _freeChunks.Clear();
        }

        Cancel();
    }

    /// <summary>
    /// A chunk for the kept bytes. A window holds up to 128 of them at once, more than the shared ArrayPool keeps per core,
    /// so this connection keeps its own (no more than can be out at once) and gives them back after a quiet keepalive.
    /// </summary>
    private byte[] RentChunk()
    {
        lock (_gate)
        {
            _chunksUsed = true;
            if (_freeChunks.TryPop(out byte[]? chunk))
            {
                return chunk;
            }
        }

        return GC.AllocateUninitializedArray<byte>(ChunkSize);
    }

    private void ReturnChunk(byte[] chunk)
    {
        // Called under _gate.
        // As many as can be out at once: the pool does not raise the peak (those chunks exist while in flight anyway),
        // it only spares the GC their churn; a quiet keepalive gives them all back.
        if (_freeChunks.Count < _window / ChunkSize)
        {
            _freeChunks.Push(chunk);
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private Path AddPathCore(PeerConnection connection, string kind)
    {
        var path = new Path(connection, kind, _time.GetTimestamp());
        lock (_gate)
        {
            _paths.Add(path);
        }

        path.Loop = Task.Run(() => ReceiveLoopAsync(path));
        return path;
    }

    /// <summary>A path event: the send loop looks again, whether it waits for the session's bytes or for the window.</summary>
    private void WakeSender()
    {
        _toNetwork.Reader.CancelPendingRead();
        ReleaseSendWaiter();
    }

    /// <summary>Ends the send loop's wait for the window or an event, if it waits; a wait for the session's bytes goes on.</summary>
    private void ReleaseSendWaiter()
    {
        TaskCompletionSource? wake;
        lock (_gate)
        {
            wake = _sendWake;
            _sendWake = null;
        }

        wake?.TrySetResult();
    }

    private void SignalReceive()
    {
        TaskCompletionSource? changed;
        lock (_gate)
        {
            changed = _receiveChanged;
            _receiveChanged = null;
        }

        changed?.TrySetResult();
    }

    // ---- sending --------------------------------------------------------------------------------------------------

    private async Task SendLoopAsync()
    {
        PipeReader source = _toNetwork.Reader;
        Path? announced = _sendPath;
        try
        {
            // Every path's stream starts with RESUME: the first path's at offset 0.
            await WriteControlAsync(_sendPath, Resume, 0).ConfigureAwait(false);
            while (_failure is null)
            {
                await HandleSendEventsAsync().ConfigureAwait(false);
                if (!ReferenceEquals(announced, _sendPath))
                {
                    announced = _sendPath;
                    PathChanged?.Invoke(announced.Kind);
                }

                Task? wake = null;
                lock (_gate)
                {
                    if (_sent - _acked >= _window)
                    {
                        wake = (_sendWake ??= NewSignal()).Task;
                    }
                }

                if (wake is not null)
                {
                    await wake.ConfigureAwait(false);   // the window is full: wait for an ACK (or a path event)
                    continue;
                }

                if (_sourceDone)
                {
                    if (_disposed != 0)
                    {
                        return;
                    }

                    await WaitForEventAsync().ConfigureAwait(false);
                    continue;
                }

                ReadResult result = await source.ReadAsync().ConfigureAwait(false);
                if (result.IsCanceled)
                {
                    continue;   // a path event woke us
                }

                ReadOnlySequence<byte> buffer = result.Buffer;
                if (buffer.IsEmpty && result.IsCompleted)
                {
                    source.AdvanceTo(buffer.End);
                    _sourceDone = true;
                    await WriteControlAsync(_sendPath, Fin, Interlocked.Read(ref _sent)).ConfigureAwait(false);
                    await source.CompleteAsync().ConfigureAwait(false);
                    if (_disposed != 0)
                    {
                        return;
                    }

                    continue;
                }

                // Everything the session wrote, up to a batch and what the window allows, framed as chunks and sent with
                // one flush: the socket then sends the batch in one call, as it would the session's own.
                long room;
                lock (_gate)
                {
                    room = _window - (_sent - _acked);
                }

                long take = Math.Min(Math.Min(buffer.Length, room), MaxBatch);
                int count = 0;
                while (take > 0)
                {
                    int length = (int)Math.Min(take, ChunkSize);
                    byte[] chunk = RentChunk();
                    buffer.Slice(0, length).CopyTo(chunk);
                    buffer = buffer.Slice(length);
                    take -= length;
                    lock (_gate)
                    {
                        _batch[count++] = new Chunk(_sent, chunk, length);
                        _unacked.Enqueue(_batch[count - 1]);
                        _sent += length;
                    }
                }

                source.AdvanceTo(buffer.Start);
                await WriteDataAsync(_sendPath, _batch.AsMemory(0, count)).ConfigureAwait(false);
                Array.Clear(_batch, 0, count);
            }
        }
        catch (Exception e) when (e is InvalidOperationException or OperationCanceledException or ObjectDisposedException)
        {
            // The connection is ending.
        }
    }

    private async Task WaitForEventAsync()
    {
        Task wake;
        lock (_gate)
        {
            wake = (_sendWake ??= NewSignal()).Task;
        }

        await wake.ConfigureAwait(false);
    }

    /// <summary>Path events, at a frame boundary: the send path died, the peer asked for a resend, or a new path is chosen.</summary>
    private async Task HandleSendEventsAsync()
    {
        while (true)
        {
            Path current = _sendPath;
            if (current.Dead)
            {
                Path? fallback;
                lock (_gate)
                {
                    fallback = _paths.LastOrDefault(p => !p.Dead);
                    _switchTo = null;
                }

                if (fallback is null)
                {
                    return;   // Fail() has run or will
                }

                Volatile.Write(ref _sendPath, fallback);
                await ResumeAsync(fallback, Interlocked.Read(ref _acked)).ConfigureAwait(false);
                continue;
            }

            long resendFrom = Interlocked.Exchange(ref _resendFrom, -1);
            if (resendFrom >= 0)
            {
                await ResumeAsync(current, resendFrom).ConfigureAwait(false);
                continue;
            }

            Path? next;
            lock (_gate)
            {
                next = _switchTo;
                _switchTo = null;
            }

            if (next is not null && !next.Dead && !ReferenceEquals(next, current))
            {
                long offset = Interlocked.Read(ref _sent);
                await WriteControlAsync(current, Move, offset).ConfigureAwait(false);
                Volatile.Write(ref _sendPath, next);
                await WriteControlAsync(next, Resume, offset).ConfigureAwait(false);
                if (_sourceDone)
                {
                    await WriteControlAsync(next, Fin, offset).ConfigureAwait(false);
                }

                continue;
            }

            return;
        }
    }

    /// <summary>RESUME(from) on <paramref name="path"/>, then every kept byte from there on, then FIN if the stream ended.</summary>
    private async Task ResumeAsync(Path path, long from)
    {
        Chunk[] chunks;
        lock (_gate)
        {
            from = Math.Max(from, _acked);
            chunks = [.. _unacked];
        }

        await WriteControlAsync(path, Resume, from).ConfigureAwait(false);
        foreach (Chunk chunk in chunks)
        {
            long end = chunk.Start + chunk.Length;
            if (end <= from)
            {
                continue;
            }

            int skip = (int)Math.Max(0, from - chunk.Start);
            await WriteAsync(path, Data, chunk.Length - skip, chunk.Buffer.AsMemory(skip, chunk.Length - skip)).ConfigureAwait(false);
        }

        if (_sourceDone)
        {
            await WriteControlAsync(path, Fin, Interlocked.Read(ref _sent)).ConfigureAwait(false);
        }
    }

    private ValueTask WriteControlAsync(Path path, byte type, long value)
    {
        return WriteAsync(path, type, value, default);
    }

    /// <summary>DATA frames for a batch of chunks, with one flush; a path that fails to take them is dead.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteDataAsync(Path path, ReadOnlyMemory<Chunk> chunks)
    {
        if (path.Dead)
        {
            return;
        }

        await path.WriteLock.WaitAsync().ConfigureAwait(false);
        try
        {
            // All the frames in one span: the socket sends a span with one call, as it does the session's own batches.
            PipeWriter output = path.Connection.Transport.Output;
            int total = 0;
            foreach (Chunk chunk in chunks.Span)
            {
                total += HeaderLength + chunk.Length;
            }

            Span<byte> frames = output.GetSpan(total);
            foreach (Chunk chunk in chunks.Span)
            {
                frames[0] = Data;
                BinaryPrimitives.WriteInt64BigEndian(frames[1..], chunk.Length);
                chunk.Buffer.AsSpan(0, chunk.Length).CopyTo(frames[HeaderLength..]);
                frames = frames[(HeaderLength + chunk.Length)..];
            }

            output.Advance(total);

            CheckFlush(path, await output.FlushAsync().ConfigureAwait(false));
        }
        catch (Exception e) when (e is PeerLinkException or InvalidOperationException or ObjectDisposedException or System.IO.IOException)
        {
            MarkDead(path, e as PeerLinkException ?? new PeerLinkException(PeerLinkError.ConnectionReset, $"The {path.Kind} path failed.", e));
        }
        finally
        {
            path.WriteLock.Release();
        }
    }

    /// <summary>
    /// One frame in one span of the path's pipe: written piecewise, a 32 KiB chunk would spread over the pipe's 4 KiB
    /// segments, and the socket sends each segment with its own call.
    /// </summary>
    private static void WriteFrame(PipeWriter output, byte type, long value, ReadOnlySpan<byte> data)
    {
        Span<byte> frame = output.GetSpan(HeaderLength + data.Length);
        frame[0] = type;
        BinaryPrimitives.WriteInt64BigEndian(frame[1..], value);
        data.CopyTo(frame[HeaderLength..]);
        output.Advance(HeaderLength + data.Length);
    }

    private void CheckFlush(Path path, FlushResult flush)
    {
        if (flush.IsCompleted || flush.IsCanceled)
        {
            MarkDead(path, new PeerLinkException(PeerLinkError.ConnectionReset, $"The {path.Kind} path closed."));
        }
    }

    /// <summary>Writes one frame; a path that fails to take it is dead (its data moves elsewhere).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]   // per chunk: no allocation when the flush waits
    private async ValueTask WriteAsync(Path path, byte type, long value, ReadOnlyMemory<byte> data)
    {
        if (path.Dead)
        {
            return;
        }

        await path.WriteLock.WaitAsync().ConfigureAwait(false);
        try
        {
            PipeWriter output = path.Connection.Transport.Output;
            WriteFrame(output, type, value, data.Span);
            CheckFlush(path, await output.FlushAsync().ConfigureAwait(false));
        }
        catch (Exception e) when (e is PeerLinkException or InvalidOperationException or ObjectDisposedException or System.IO.IOException)
        {
            MarkDead(path, e as PeerLinkException ?? new PeerLinkException(PeerLinkError.ConnectionReset, $"The {path.Kind} path failed.", e));
        }
        finally
        {
            path.WriteLock.Release();
        }
    }

    // ---- receiving ------------------------------------------------------------------------------------------------

    private async Task ReceiveLoopAsync(Path path)
    {
        PipeReader input = path.Connection.Transport.Input;
        try
        {
            while (!path.Dead)
            {
                ReadResult result = await input.ReadAsync().ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                path.LastReceived = _time.GetTimestamp();
                path.Busy = true;
                try
                {
                    while (TryReadFrame(ref buffer, out byte type, out long value, out ReadOnlySequence<byte> data))
                    {
                        Interlocked.Increment(ref _framesReceived);
                        switch (type)
                        {
                            case Data:
                                await DeliverAsync(path, data).ConfigureAwait(false);
                                break;
                            case Ack:
                                OnAck(value);
                                break;
                            case Resend:
                                OnAck(value);
                                Interlocked.Exchange(ref _resendFrom, value);
                                WakeSender();
                                break;
                            case Resume:
                                await OnResumeAsync(path, value).ConfigureAwait(false);
                                break;
                            case Move:
                                await OnMoveAsync(path).ConfigureAwait(false);
                                break;
                            case Fin:
                                await OnFinAsync(path, value).ConfigureAwait(false);
                                break;
                            default:
                                throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"Unknown path frame type {type}.");
                        }
                    }
                }
                finally
                {
                    input.AdvanceTo(buffer.Start, buffer.End);

                    // While this loop waited for the session to take what it delivered, nothing was read: that
                    // silence was ours, not the path's, so its clock starts again now.
                    path.LastReceived = _time.GetTimestamp();
                    path.Busy = false;
                }

                if (_frameWatch is not null)
                {
                    TaskCompletionSource? watch;
                    lock (_gate)
                    {
                        watch = _frameWatch;
                        _frameWatch = null;
                    }

                    watch?.TrySetResult();
                }

                if (result.IsCompleted)
                {
                    MarkDead(path, new PeerLinkException(PeerLinkError.ConnectionReset, $"The {path.Kind} path ended."));
                    return;
                }
            }
        }
        catch (PeerLinkException e) when (e.Error == PeerLinkError.ProtocolViolation)
        {
            Fail(e);
        }
        catch (Exception e) when (e is PeerLinkException or InvalidOperationException or ObjectDisposedException or OperationCanceledException or System.IO.IOException)
        {
            MarkDead(path, e as PeerLinkException ?? new PeerLinkException(PeerLinkError.ConnectionReset, $"The {path.Kind} path failed.", e));
        }
    }

    private static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, out byte type, out long value, out ReadOnlySequence<byte> data)
    {
        data = default;
        type = 0;
        value = 0;
        if (buffer.Length < HeaderLength)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[HeaderLength];
        buffer.Slice(0, HeaderLength).CopyTo(header);
        type = header[0];
        value = BinaryPrimitives.ReadInt64BigEndian(header[1..]);
        if (value < 0 || (type == Data && value > ChunkSize))
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "A path frame carries an impossible offset or length.");
        }

        if (type == Data)
        {
            if (buffer.Length < HeaderLength + value)
            {
                return false;
            }

            data = buffer.Slice(HeaderLength, value);
            buffer = buffer.Slice(HeaderLength + value);
            return true;
        }

        buffer = buffer.Slice(HeaderLength);
        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DeliverAsync(Path path, ReadOnlySequence<byte> data)
    {
        await _stream.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!ReferenceEquals(path, _active) || _finReceived || _failure is not null)
            {
                return;   // a path that is not the current one: stale, or waiting for its turn after a RESEND
            }

            if (path.Skip > 0)
            {
                long skip = Math.Min(path.Skip, data.Length);
                data = data.Slice(skip);
                path.Skip -= skip;
            }

            if (data.IsEmpty)
            {
                return;
            }

            // In one span, so that the session finds its Noise messages whole rather than across 4 KiB segments.
            PipeWriter writer = _fromNetwork.Writer;
            int length = (int)data.Length;
            data.CopyTo(writer.GetSpan(length));
            writer.Advance(length);

            long received = Interlocked.Add(ref _received, data.Length);
            await writer.FlushAsync().ConfigureAwait(false);
            if (received - _lastAckSent >= _ackEvery)
            {
                _lastAckSent = received;
                _ = WriteControlAsync(path, Ack, received);
            }
        }
        finally
        {
            _stream.Release();
        }

        SignalReceive();
    }

    /// <summary>
    /// RESUME(x): the sender continues on this path from offset x. At or below what arrived, this path becomes the one
    /// (the overlap is skipped). Above it, the path waits while the current one still delivers (make-before-break); if
    /// none does, the bytes in between are lost and the sender is asked to send them again.
    /// </summary>
    private async Task OnResumeAsync(Path path, long offset)
    {
        while (true)
        {
            Task changed;
            await _stream.WaitAsync().ConfigureAwait(false);
            try
            {
                if (path.Dead)
                {
                    return;   // (set before its death is handled under this lock: a dead path never becomes current)
                }

                long received = Interlocked.Read(ref _received);
                if (offset <= received)
                {
                    _active = path;
                    path.Skip = received - offset;
                    return;
                }

                if (_active is null || _active.Dead || ReferenceEquals(_active, path))
                {
                    if (ReferenceEquals(_active, path))
                    {
                        _active = null;
                    }

                    _ = WriteControlAsync(path, Resend, received);
                    return;
                }

                lock (_gate)
                {
                    changed = (_receiveChanged ??= NewSignal()).Task;
                }
            }
            finally
            {
                _stream.Release();
            }

            await changed.ConfigureAwait(false);
            if (_failure is not null || path.Dead)
            {
                return;
            }
        }
    }

    /// <summary>
    /// A path died. If its data was the data delivered, nothing comes on the others until their sender's next RESUME, and
    /// the RESUME that made this path current may have been an old one (sent before the sender fell back elsewhere, read
    /// after that fallback's RESUME): RESEND(received) on every live path, so that the sender resumes on the path it uses.
    /// </summary>
    private async Task OnPathDeadAsync(Path path)
    {
        long received;
        await _stream.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!ReferenceEquals(_active, path) || _finReceived || _failure is not null)
            {
                return;
            }

            _active = null;
            received = Interlocked.Read(ref _received);
        }
        finally
        {
            _stream.Release();
        }

        Path[] others;
        lock (_gate)
        {
            others = _paths.Where(p => !p.Dead).ToArray();
        }

        foreach (Path other in others)
        {
            await WriteControlAsync(other, Resend, received).ConfigureAwait(false);
        }
    }

    private async Task OnMoveAsync(Path path)
    {
        await _stream.WaitAsync().ConfigureAwait(false);
        try
        {
            if (ReferenceEquals(_active, path))
            {
                _active = null;
            }
        }
        finally
        {
            _stream.Release();
        }

        SignalReceive();
    }

    private async Task OnFinAsync(Path path, long offset)
    {
        await _stream.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!ReferenceEquals(path, _active) || _finReceived || _failure is not null || offset != Interlocked.Read(ref _received))
            {
                return;   // bytes are still missing: the FIN comes again after them
            }

            _finReceived = true;
            await _fromNetwork.Writer.CompleteAsync().ConfigureAwait(false);
        }
        finally
        {
            _stream.Release();
        }
    }

    private void OnAck(long offset)
    {
        lock (_gate)
        {
            if (offset > _sent)
            {
                return;   // cannot acknowledge what was never sent; ignore rather than trust it
            }

            if (offset > _acked)
            {
                _acked = offset;
                while (_unacked.TryPeek(out Chunk chunk) && chunk.Start + chunk.Length <= offset)
                {
                    _unacked.Dequeue();
                    ReturnChunk(chunk.Buffer);
                }
            }
        }

        ReleaseSendWaiter();   // only a sender waiting for the window cares; one reading the session's bytes reads on
    }

    // ---- liveness -------------------------------------------------------------------------------------------------

    /// <summary>Every keepalive: an ACK on every live path (it keeps NAT mappings open and tells the sender what arrived); a path silent for three keepalives is dead.</summary>
    private void OnTimer()
    {
        if (_failure is not null || _disposed != 0)
        {
            return;
        }

        Path[] paths;
        lock (_gate)
        {
            paths = _paths.Where(p => !p.Dead).ToArray();
            if (!_chunksUsed)
            {
                _freeChunks.Clear();   // quiet for a keepalive: an idle connection keeps no chunks
            }

            _chunksUsed = false;
        }

        long received = Interlocked.Read(ref _received);
        foreach (Path path in paths)
        {
            if (!path.Busy && _time.GetElapsedTime(path.LastReceived) > _pathTimeout)
            {
                MarkDead(path, new PeerLinkException(PeerLinkError.PeerTimeout, $"Nothing arrived on the {path.Kind} path for {_pathTimeout.TotalSeconds} s."));
                continue;
            }

            _lastAckSent = Math.Max(_lastAckSent, received);
            _ = WriteControlAsync(path, Ack, received);
        }
    }

    private void MarkDead(Path path, Exception reason)
    {
        reason = path.Connection.AbortReason ?? reason;   // a relay ended by its node says why, whichever side noticed first
        bool last;
        lock (_gate)
        {
            if (path.Dead)
            {
                return;
            }

            path.Dead = true;
            path.Failure = reason;
            last = _paths.All(p => p.Dead);
        }

        path.Connection.Abort(reason);
        if (last)
        {
            Fail(reason);
            return;
        }

        _ = OnPathDeadAsync(path);
        SignalReceive();
        WakeSender();
        PathDied?.Invoke(path.Kind);
    }

    private void Fail(Exception error)
    {
        Path[] paths;
        lock (_gate)
        {
            if (_failure is not null)
            {
                return;
            }

            _failure = error;
            paths = [.. _paths];
            foreach (Path path in paths)
            {
                path.Dead = true;
            }
        }

        foreach (Path path in paths)
        {
            path.Connection.Abort(error);
        }

        // The session's input ends with the error; the writer belongs to whoever holds the stream lock, so the
        // completion waits for it (a flush stuck on a session that does not read is cancelled first).
        _fromNetwork.Writer.CancelPendingFlush();
        _ = Task.Run(async () =>
        {
            await _stream.WaitAsync().ConfigureAwait(false);
            try
            {
                await _fromNetwork.Writer.CompleteAsync(error).ConfigureAwait(false);
            }
            finally
            {
                _stream.Release();
            }
        });
        _toNetwork.Reader.CancelPendingRead();
        SignalReceive();
        WakeSender();
        Cancel();
    }

    private void Cancel()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private readonly record struct Chunk(long Start, byte[] Buffer, int Length);

    private sealed class Path(PeerConnection connection, string kind, long timestamp)
    {
        public PeerConnection Connection { get; } = connection;

        public string Kind { get; } = kind;

        public SemaphoreSlim WriteLock { get; } = new(1, 1);

        public volatile bool Dead;

        public long LastReceived = timestamp;

        /// <summary>The receive loop is handling what it read (it may wait for the session to take data): not silent.</summary>
        public volatile bool Busy;

        public long Skip;

        public Exception? Failure;

        public Task Loop = Task.CompletedTask;
    }
}
