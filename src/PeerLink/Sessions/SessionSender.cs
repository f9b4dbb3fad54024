// The send side of a session (docs/protocol.md §4–7): records are appended to a batch, and a flush loop seals each batch
// as one Noise transport message into the stream, so that concurrent or pipelined small messages share an AEAD call. It
// owns send flow control, the rekey budget of the sending key and the close handshake's outgoing half.
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Security.Noise;
using PeerLink.Sessions.Framing;

namespace PeerLink.Sessions;

/// <summary>
/// Batches, seals and flushes what a session sends. The receive side reaches it only through a narrow set of calls
/// (<see cref="EnqueueControl"/> for PONG, <see cref="SendClose"/>, <see cref="OnRemoteClose"/>, <see cref="NoteReceived"/>),
/// and it reports a failed send through the callback it was given. Thread-safe.
/// </summary>
internal sealed class SessionSender
{
    private readonly PipeWriter _output;
    private readonly NoiseCipherState _cipher;
    private readonly SecureSessionOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _connectionId;
    private readonly int _sendLimit;
    private readonly ISessionLifetime _lifetime;
    private readonly FlushWorkItem _flusher;

    // Send side, guarded by _sendGate.
    private readonly object _sendGate = new();
    private readonly Queue<(byte[] Buffer, int Length)> _sealedBatches = new();
    private byte[]? _batch;
    private int _batchLength;
    private bool _flushScheduled;
    private long _queuedSendBytes;
    private TaskCompletionSource? _sendSpace;
    private TaskCompletionSource? _sendDrained;
    private bool _closeSent;
    private bool _sendBroken;
    private Exception? _failure;
    private SessionCloseCode? _remoteCloseCode;     // the peer's CLOSE arrived: nothing more may be sent

    // Flush loop state (one flush loop at a time).
    private long _messagesSinceRekey;
    private long _bytesSinceRekey;
    private long _keyCreatedAt;
    private long _lastFlushEndedAt;
    private bool _receivedSinceFlush;   // the application took a message since the last flush ended
    private long _lastSentAt;

    // Sends closer together than this after the previous flush are treated as a stream and coalesced.
    private static readonly TimeSpan InlineFlushGap = TimeSpan.FromMicroseconds(50);


    public SessionSender(PipeWriter output, NoiseCipherState cipher, int sendLimit, SecureSessionOptions options, ILogger logger, string connectionId, ISessionLifetime lifetime)
    {
        _output = output;
        _cipher = cipher;
        _sendLimit = sendLimit;
        _options = options;
        _time = options.TimeProvider;
        _logger = logger;
        _connectionId = connectionId;
        _lifetime = lifetime;
        _flusher = new FlushWorkItem(this);
        _keyCreatedAt = _lastSentAt = _time.GetTimestamp();
    }

    /// <summary>How many times the sending key was rekeyed.</summary>
    public int Rekeys { get; private set; }

    /// <summary>When this side last handed bytes to the transport (a <see cref="TimeProvider"/> timestamp).</summary>
    public long LastSentAt => Volatile.Read(ref _lastSentAt);

    /// <summary>True while a send waits for queue space (the peer does not keep up); for tests and diagnostics.</summary>
    public bool IsWaitingForSpace
    {
        get
        {
            lock (_sendGate)
            {
                return _sendSpace is not null;
            }
        }
    }

    /// <summary>True once a failure stopped the sender.</summary>
    public bool HasFailed => Volatile.Read(ref _failure) is not null;

    /// <summary>The application took a received message: the next send answers it, so it is flushed at once.</summary>
    public void NoteReceived() => Volatile.Write(ref _receivedSinceFlush, true);

    /// <summary>The peer's CLOSE arrived: later sends fail with <see cref="PeerLinkError.SessionClosed"/> and its code.</summary>
    public void OnRemoteClose(SessionCloseCode code)
    {
        lock (_sendGate)
        {
            _remoteCloseCode = code;
        }
    }

    /// <summary>Stops the sender for good: waiting senders and drains are released. False when it had failed already.</summary>
    public bool TryFail(Exception error)
    {
        lock (_sendGate)
        {
            if (_failure is not null)
            {
                return false;
            }

            _failure = error;
            _sendSpace?.TrySetResult();
            _sendDrained?.TrySetResult();
            return true;
        }
    }

    /// <summary>Gives every pooled batch back; after the session ended.</summary>
    public void Release()
    {
        lock (_sendGate)
        {
            ReturnBatches();
        }
    }

    /// <summary>Queues ACCEPT, each side's first record, and flushes it on this thread with whatever the handshake left in the pipe (no thread hop).</summary>
    public void SendAccept()
    {
        bool flush;
        lock (_sendGate)
        {
            if (_failure is not null || _closeSent || _sendBroken)
            {
                return;
            }

            AppendControl(SessionWire.Accept, default);
            flush = ClaimFlush();
        }

        if (flush)
        {
            _ = FlushLoopAsync();
        }
    }


    public ValueTask EnqueueDataAsync(ReadOnlyMemory<byte> message, byte kind, uint requestId, CancellationToken cancellationToken)
    {
        if (message.Length > _sendLimit)
        {
            throw new ArgumentOutOfRangeException(nameof(message), message.Length, $"The message is larger than the session's limit of {_sendLimit} bytes.");
        }

        long cost = message.Length + SessionWire.RecordHeaderSize + (kind != 0 ? 4 : 0);
        bool flush;
        lock (_sendGate)
        {
            ThrowIfCannotSend();
            bool fits = _queuedSendBytes == 0 || _queuedSendBytes + cost <= _options.MaxSendQueueBytes;
            if (!fits && _options.SendQueueFullMode == SendQueueFullMode.Fail)
            {
                throw new PeerLinkException(PeerLinkError.SendQueueFull, $"The send queue holds {_queuedSendBytes} bytes, the limit is {_options.MaxSendQueueBytes}: the peer does not keep up.");
            }

            if (!fits)
            {
                return WaitAndEnqueueAsync(message, kind, requestId, cost, cancellationToken);
            }

            AppendData(message.Span, kind, requestId, cost);
            flush = ClaimFlush();
        }

        if (flush)
        {
            if (Volatile.Read(ref _receivedSinceFlush) || _time.GetElapsedTime(Volatile.Read(ref _lastFlushEndedAt)) > InlineFlushGap)
            {
                // A lone message (nothing flushed just now), or an answer to something received since the last flush:
                // encrypt and hand it to the transport on this thread, with no thread hop. Sends that arrive meanwhile
                // join the batch that this flush loop picks up next.
                _ = FlushLoopAsync();
            }
            else
            {
                // A stream of sends: flush from the thread pool, so that the messages queued meanwhile share one AEAD call.
                ThreadPool.UnsafeQueueUserWorkItem(_flusher, preferLocal: false);
            }
        }

        return ValueTask.CompletedTask;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WaitAndEnqueueAsync(ReadOnlyMemory<byte> message, byte kind, uint requestId, long cost, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task space;
            lock (_sendGate)
            {
                ThrowIfCannotSend();
                if (_queuedSendBytes == 0 || _queuedSendBytes + cost <= _options.MaxSendQueueBytes)
                {
                    AppendData(message.Span, kind, requestId, cost);
                    if (ClaimFlush())
                    {
                        ThreadPool.UnsafeQueueUserWorkItem(_flusher, preferLocal: false);
                    }

                    return;
                }

                _sendSpace ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                space = _sendSpace.Task;
            }

            await space.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Throws what a send would throw now (closed, failed, the peer gone); for sends that bypass the queue.</summary>
    public void EnsureCanSend()
    {
        lock (_sendGate)
        {
            ThrowIfCannotSend();
        }
    }

    private void ThrowIfCannotSend()
    {
        if (_failure is not null)
        {
            throw new PeerLinkException(_failure is PeerLinkException p ? p.Error : PeerLinkError.ConnectionAborted, $"The session has failed: {_failure.Message}", _failure);
        }

        if (_remoteCloseCode is { } remoteCode)
        {
            throw new PeerLinkException(PeerLinkError.SessionClosed, $"The peer closed the session ({remoteCode}); nothing more can be sent.", remoteCode);
        }

        if (_closeSent)
        {
            throw new PeerLinkException(PeerLinkError.SessionClosed, "The session is closed; nothing more can be sent.");
        }

        if (_sendBroken)
        {
            throw new PeerLinkException(PeerLinkError.ConnectionReset, "The peer stopped reading; nothing more can be sent.");
        }
    }

    /// <summary>Appends a DATA message as one or more records, fragmenting across batches. Caller holds _sendGate.</summary>
    private void AppendData(ReadOnlySpan<byte> message, byte kind, uint requestId, long cost)
    {
        Diagnostics.Telemetry.CountMessage(Diagnostics.Telemetry.MessagesSent, Diagnostics.Telemetry.BytesSent, message.Length);
        Span<byte> idBytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(idBytes, requestId);
        ReadOnlySpan<byte> prefix = kind != 0 ? idBytes : default;
        bool first = true;
        do
        {
            int headerAndPrefix = SessionWire.RecordHeaderSize + (first ? prefix.Length : 0);
            int need = headerAndPrefix + Math.Min(message.Length, 1);
            Span<byte> room = Reserve(need);
            int take = Math.Min(message.Length, room.Length - headerAndPrefix);
            bool more = take < message.Length;
            int bodyLength = (first ? prefix.Length : 0) + take;
            room[0] = SessionWire.Data;
            room[1] = (byte)(kind | (more ? SessionWire.More : 0));
            BinaryPrimitives.WriteUInt16BigEndian(room[2..], (ushort)bodyLength);
            if (first)
            {
                prefix.CopyTo(room[SessionWire.RecordHeaderSize..]);
            }

            message[..take].CopyTo(room[headerAndPrefix..]);
            _batchLength += SessionWire.RecordHeaderSize + bodyLength;
            message = message[take..];
            first = false;
        }
        while (!message.IsEmpty);

        _queuedSendBytes += cost;
    }

    public void EnqueueControl(byte type, ReadOnlySpan<byte> body)
    {
        lock (_sendGate)
        {
            if (_failure is not null || _closeSent || _sendBroken)
            {
                return;
            }

            AppendControl(type, body);
            ScheduleFlush();
        }
    }

    private void AppendControl(byte type, ReadOnlySpan<byte> body)
    {
        Span<byte> room = Reserve(SessionWire.RecordHeaderSize + body.Length);
        room[0] = type;
        room[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(room[2..], (ushort)body.Length);
        body.CopyTo(room[SessionWire.RecordHeaderSize..]);
        _batchLength += SessionWire.RecordHeaderSize + body.Length;
        _queuedSendBytes += SessionWire.RecordHeaderSize + body.Length;
    }

    /// <summary>Free space in the open batch, at least <paramref name="need"/> bytes; seals the batch when it is too full.</summary>
    private Span<byte> Reserve(int need)
    {
        if (_batch is not null && SessionWire.BatchCapacity - _batchLength < need)
        {
            _sealedBatches.Enqueue((_batch, _batchLength));
            _batch = null;
        }

        if (_batch is null)
        {
            _batch = ArrayPool<byte>.Shared.Rent(SessionWire.MaxPlaintext);
            _batchLength = 0;
        }

        return _batch.AsSpan(_batchLength, SessionWire.BatchCapacity - _batchLength);
    }

    private void ScheduleFlush()
    {
        if (!_flushScheduled)
        {
            _flushScheduled = true;
            ThreadPool.UnsafeQueueUserWorkItem(_flusher, preferLocal: false);
        }
    }

    /// <summary>Caller holds _sendGate. True when the caller must run the flush loop (after releasing the lock).</summary>
    private bool ClaimFlush()
    {
        if (_flushScheduled)
        {
            return false;   // the running flush loop will pick this up
        }

        _flushScheduled = true;
        return true;
    }

    public void SendClose(SessionCloseCode code, string? reason)
    {
        lock (_sendGate)
        {
            if (_closeSent || _failure is not null || _sendBroken)
            {
                return;
            }

            int length = reason is null ? 0 : Math.Min(Encoding.UTF8.GetByteCount(reason), 200);
            Span<byte> body = stackalloc byte[1 + 200];
            body[0] = (byte)code;
            if (reason is not null)
            {
                Encoding.UTF8.GetBytes(reason.AsSpan(0, Math.Min(reason.Length, 200)), body[1..]);
            }

            AppendControl(SessionWire.Close, body[..(1 + Math.Min(length, 200))]);
            ScheduleFlush();
            _closeSent = true;
            SessionLog.CloseSent(_logger, _connectionId, code);
        }
    }

    /// <summary>The flush loop: encrypts sealed batches and the open one, one Noise message each, then flushes the pipe.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushLoopAsync()
    {
        try
        {
            while (true)
            {
                long flushed = 0;
                bool completeOutput = false;
                while (true)
                {
                    byte[] batch;
                    int length;
                    lock (_sendGate)
                    {
                        if (_failure is not null)
                        {
                            _flushScheduled = false;
                            return;
                        }

                        if (_sealedBatches.TryDequeue(out (byte[] Buffer, int Length) next))
                        {
                            (batch, length) = next;
                        }
                        else if (_batch is not null && _batchLength > 0)
                        {
                            batch = _batch;
                            length = _batchLength;
                            _batch = null;
                            _batchLength = 0;
                        }
                        else
                        {
                            completeOutput = _closeSent;
                            break;
                        }
                    }

                    flushed += length;
                    WriteMessage(batch, length);
                    ArrayPool<byte>.Shared.Return(batch);
                }

                if (flushed > 0)
                {
                    Volatile.Write(ref _lastSentAt, _time.GetTimestamp());
                    FlushResult result = await _output.FlushAsync().ConfigureAwait(false);
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        // The peer stopped reading. Its CLOSE (or the end of the connection) may still be on the way in:
                        // the receive loop decides how the session ended. Nothing more can be sent.
                        lock (_sendGate)
                        {
                            _sendBroken = true;
                            _flushScheduled = false;
                            ReturnBatches();
                            _sendSpace?.TrySetResult();
                            _sendDrained?.TrySetResult();
                        }

                        return;
                    }
                }

                TaskCompletionSource? space = null;
                TaskCompletionSource? drained = null;
                lock (_sendGate)
                {
                    _queuedSendBytes = Math.Max(0, _queuedSendBytes - flushed);
                    if (_queuedSendBytes < _options.MaxSendQueueBytes)
                    {
                        (space, _sendSpace) = (_sendSpace, null);
                    }

                    bool more = _sealedBatches.Count > 0 || _batchLength > 0;
                    if (!more)
                    {
                        _flushScheduled = false;
                        completeOutput = _closeSent;
                        (drained, _sendDrained) = (_sendDrained, null);
                    }

                    if (more)
                    {
                        space?.TrySetResult();
                        continue;
                    }
                }

                Volatile.Write(ref _lastFlushEndedAt, _time.GetTimestamp());
                Volatile.Write(ref _receivedSinceFlush, false);
                space?.TrySetResult();
                drained?.TrySetResult();
                if (completeOutput)
                {
                    // After CLOSE nothing more is sent: FIN.
                    await _output.CompleteAsync().ConfigureAwait(false);
                }

                return;
            }
        }
        catch (Exception e)
        {
            _lifetime.Fail(e as PeerLinkException ?? new PeerLinkException(PeerLinkError.ConnectionReset, $"Sending failed: {e.Message}", e), abortConnection: true);
        }
    }

    /// <summary>Encrypts one batch as a Noise transport message into the pipe, rekeying first when a budget ran out.</summary>
    private void WriteMessage(byte[] batch, int length)
    {
        // Over a transport that protects every datagram itself (UDP), the records travel as length-prefixed plaintext
        // and the transport rekeys; over a stream, each batch is one Noise message.
        bool keyed = _cipher.HasKey;
        bool rekey = keyed && (++_messagesSinceRekey >= _options.RekeyAfterMessages
            || (_bytesSinceRekey += length) >= _options.RekeyAfterBytes
            || _time.GetElapsedTime(_keyCreatedAt) >= _options.RekeyInterval);
        if (rekey)
        {
            // The REKEY record ends this message; the batch always keeps room for it.
            batch.AsSpan(length, SessionWire.RecordHeaderSize).Clear();
            batch[length] = SessionWire.Rekey;
            length += SessionWire.RecordHeaderSize;
        }

        int ciphertextLength = length + (keyed ? NoiseCipherState.TagSize : 0);
        _cipher.EncryptWithAd(default, batch.AsSpan(0, length), NoiseFrame.Begin(_output, ciphertextLength));
        NoiseFrame.Commit(_output, ciphertextLength);
        if (rekey)
        {
            _cipher.Rekey();
            Rekeys++;
            _messagesSinceRekey = 0;
            _bytesSinceRekey = 0;
            _keyCreatedAt = _time.GetTimestamp();
            SessionLog.Rekeyed(_logger, _connectionId, "send");
        }
    }


    public async Task DrainAsync()
    {
        Task drained;
        lock (_sendGate)
        {
            if (!_flushScheduled || _failure is not null)
            {
                return;
            }

            _sendDrained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            drained = _sendDrained.Task;
        }

        await drained.WaitAsync(_options.CloseTimeout, _time).ConfigureAwait(false);
    }


    private void ReturnBatches()
    {
        while (_sealedBatches.TryDequeue(out (byte[] Buffer, int Length) batch))
        {
            ArrayPool<byte>.Shared.Return(batch.Buffer);
        }

        if (_batch is not null && !_flushScheduled)
        {
            ArrayPool<byte>.Shared.Return(_batch);
            _batch = null;
            _batchLength = 0;
        }
    }

    private sealed class FlushWorkItem(SessionSender sender) : IThreadPoolWorkItem
    {
        public void Execute() => _ = sender.FlushLoopAsync();
    }
}
