// An established PeerLink session: Noise transport messages over a PeerConnection, each carrying one or more records
// (docs/protocol.md). One receive loop decrypts and dispatches; sends append records to a batch that a flush work item
// encrypts as one Noise message, so that concurrent or pipelined small messages share an AEAD call.
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Internal;
using PeerLink.Messaging;
using PolyType;
using PeerLink.Security.Noise;
using PeerLink.Sessions.Framing;
using PeerLink.Transport;

namespace PeerLink.Sessions;

/// <summary>
/// A mutually authenticated, encrypted session with one peer. Create one with <see cref="ConnectAsync"/> or
/// <see cref="AcceptAsync"/> over any <see cref="PeerConnection"/>, or let a PeerNode do it.
/// </summary>
/// <remarks>
/// Sends are thread-safe and may run concurrently; messages of one sender arrive in the order it sent them. Receives
/// must come from one reader at a time. A graceful <see cref="CloseAsync"/> delivers every message whose send completed
/// before it; <see cref="Abort"/> drops what is queued, and both sides see an abort.
/// </remarks>
public sealed class SecureSession : IAsyncDisposable
{
    private readonly PeerConnection _connection;
    private readonly PipeWriter _output;
    private readonly PipeReader _input;
    private readonly NoiseTransport _noise;
    private readonly SecureSessionOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly int _sendLimit;
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

    // Flush loop state (one flush loop at a time).
    private long _messagesSinceRekey;
    private long _bytesSinceRekey;
    private long _keyCreatedAt;
    private long _lastFlushEndedAt;
    private bool _receivedSinceFlush;   // the application took a message since the last flush ended

    // Sends closer together than this after the previous flush are treated as a stream and coalesced.
    private static readonly TimeSpan InlineFlushGap = TimeSpan.FromMicroseconds(50);

    // Receive side.
    private readonly Inbox _inbox = new();
    private readonly DeliveryBuffers _deliveryBuffers;
    private readonly object _receiveGate = new();
    private long _queuedReceiveBytes;
    private TaskCompletionSource? _receiveSpace;
    private byte[]? _lastDelivered;
    private readonly Reassembler _reassembler = new();
    private bool _remoteClosed;
    private SessionCloseCode _remoteCloseCode;
    private Task _receiveLoop = Task.CompletedTask;
    private readonly TaskCompletionSource _accepted = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Requests and pings.
    private readonly RequestTracker _requests;

    // Lifetime.
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ITimer _keepAlive;
    private readonly SessionKeepAlive _keepAlivePolicy;
    private long _lastReceivedAt;
    private long _lastSentAt;
    private int _disposed;

    internal SecureSession(PeerConnection connection, NoiseTransport noise, NoiseProtocol protocol, PeerId remotePeerId, SessionHello remote, bool isInitiator, byte[] handshakeHash, SecureSessionOptions options, ILogger logger)
    {
        _connection = connection;
        _output = connection.Transport.Output;
        _input = connection.Transport.Input;
        _noise = noise;
        _options = options;
        _logger = logger;
        _time = options.TimeProvider;
        Protocol = protocol;
        RemotePeerId = remotePeerId;
        RemoteApplicationId = remote.ApplicationId;
        RemoteHasAesHardware = remote.AesHardware;
        IsInitiator = isInitiator;
        HandshakeHash = handshakeHash;
        _sendLimit = Math.Min(options.MaxMessageSize, remote.MaxMessageSize);
        _flusher = new FlushWorkItem(this);
        _deliveryBuffers = new DeliveryBuffers(options.MaxReceiveQueueBytes);
        _requests = new RequestTracker(_time);
        _keyCreatedAt = _lastReceivedAt = _lastSentAt = _time.GetTimestamp();
        _keepAlivePolicy = new SessionKeepAlive(options.KeepAliveInterval, options.IdleTimeout);
        _keepAlive = _time.CreateTimer(static state => ((SecureSession)state!).OnKeepAliveTimer(), this, _keepAlivePolicy.TimerPeriod, _keepAlivePolicy.TimerPeriod);
    }

    /// <summary>How many times each direction was rekeyed (for tests and diagnostics).</summary>
    internal int SendRekeys { get; private set; }

    internal int ReceiveRekeys { get; private set; }

    /// <summary>The authenticated peer.</summary>
    public PeerId RemotePeerId { get; }

    /// <summary>The Noise protocol this session was established with.</summary>
    public NoiseProtocol Protocol { get; }

    /// <summary>The application id the peer announced.</summary>
    public string RemoteApplicationId { get; }

    /// <summary>The peer announced AES instructions (hello feature "aes-hw"); a node then prefers AES-GCM for it.</summary>
    internal bool RemoteHasAesHardware { get; }

    /// <summary>True on the side that opened the session.</summary>
    public bool IsInitiator { get; }

    /// <summary>The Noise handshake hash: the same on both sides, unique to this session (channel binding).</summary>
    public ReadOnlyMemory<byte> HandshakeHash { get; }

    /// <summary>The largest message this session sends: the smaller of both peers' limits.</summary>
    public int MaxMessageSize => _sendLimit;

    /// <summary>The local endpoint of the underlying connection, if it has one.</summary>
    public System.Net.EndPoint? LocalEndPoint => _connection.LocalEndPoint;

    /// <summary>The remote endpoint of the underlying connection, if it has one.</summary>
    public System.Net.EndPoint? RemoteEndPoint => _connection.RemoteEndPoint;

    /// <summary>
    /// Completes when the session has ended: successfully after a graceful close from either side, faulted with a
    /// <see cref="PeerLinkException"/> after an abort, a protocol error or a dead peer.
    /// </summary>
    public Task Completion => _completion.Task;

    /// <summary>
    /// Opens a session as the initiator over <paramref name="connection"/>, which the session then owns: IK when
    /// <paramref name="expectedPeer"/> is given (one round trip), XX otherwise; the psk variants with a network key.
    /// </summary>
    /// <param name="connection">A fresh connection; disposed if the handshake fails.</param>
    /// <param name="options">Identity and settings.</param>
    /// <param name="expectedPeer">The responder's PeerId when known.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the handshake.</param>
    /// <exception cref="PeerLinkException">The handshake failed, timed out, or the peer refused or was refused.</exception>
    /// <exception cref="ArgumentException"><paramref name="options"/> are incomplete or inconsistent.</exception>
    /// <exception cref="ObjectDisposedException">The options' network key was disposed.</exception>
    public static Task<SecureSession> ConnectAsync(PeerConnection connection, SecureSessionOptions options, PeerId? expectedPeer = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(options);
        return EstablishAsync(connection, options.Validate(nameof(options)), initiator: true, expectedPeer, loggerFactory, cancellationToken);
    }

    /// <summary>Accepts a session as the responder over <paramref name="connection"/>, which the session then owns.</summary>
    /// <param name="connection">A fresh incoming connection; disposed if the handshake fails.</param>
    /// <param name="options">Identity and settings.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the handshake.</param>
    /// <exception cref="PeerLinkException">The handshake failed or timed out, or the peer was refused.</exception>
    /// <exception cref="ArgumentException"><paramref name="options"/> are incomplete or inconsistent.</exception>
    /// <exception cref="ObjectDisposedException">The options' network key was disposed.</exception>
    public static Task<SecureSession> AcceptAsync(PeerConnection connection, SecureSessionOptions options, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(options);
        return EstablishAsync(connection, options.Validate(nameof(options)), initiator: false, expectedPeer: null, loggerFactory, cancellationToken);
    }

    /// <summary>
    /// Runs the handshake, builds the session from its outcome, and confirms with ACCEPT both ways (docs/protocol.md §3);
    /// a responder that refused the peer sends CLOSE(refused) instead. The handshake's deadline covers the ACCEPT too.
    /// </summary>
    private static async Task<SecureSession> EstablishAsync(PeerConnection connection, SecureSessionOptions options, bool initiator, PeerId? expectedPeer, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        using var scope = new HandshakeScope(options, loggerFactory, cancellationToken);
        HandshakeOutcome outcome = initiator
            ? await SessionHandshake.InitiateAsync(connection, options, expectedPeer, scope, cancellationToken).ConfigureAwait(false)
            : await SessionHandshake.RespondAsync(connection, options, scope, cancellationToken).ConfigureAwait(false);
        var session = new SecureSession(connection, outcome.Transport, outcome.Protocol, outcome.RemoteId, outcome.Remote, initiator, outcome.HandshakeHash, options, scope.Logger);
        if (outcome.Refused)
        {
            // The refused peer learns only "refused", inside the encrypted channel; the connection ends gracefully, so
            // that it reads the CLOSE rather than a reset.
            SessionLog.Refused(scope.Logger, connection.ConnectionId, outcome.RemoteId.ToFingerprint());
            session.SendRefusal();
            await session.DrainAsync().ConfigureAwait(false);
            await session.DisposeAsync().ConfigureAwait(false);
            throw new PeerLinkException(PeerLinkError.PeerRefused, $"Peer {outcome.RemoteId.ToFingerprint()}… was refused (authorization or application id '{outcome.Remote.ApplicationId}').");
        }

        try
        {
            session.SendAccept();
            await session.StartAsync(scope.Timeout).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Exception error = SessionHandshake.Translate(e, options, cancellationToken);
            SessionHandshake.LogFailure(scope.Logger, connection, error);
            session.Abort();
            await session.DisposeAsync().ConfigureAwait(false);
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
            throw;   // not reached
        }

        SessionLog.Established(scope.Logger, connection.ConnectionId, outcome.RemoteId.ToFingerprint(), outcome.Protocol.Name);
        return session;
    }

    /// <summary>Sends one message. Completes when the message is queued in order; the session then delivers it unless aborted.</summary>
    /// <param name="message">Up to <see cref="MaxMessageSize"/> bytes; copied before this returns.</param>
    /// <param name="cancellationToken">Cancels a wait for queue space.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="message"/> exceeds <see cref="MaxMessageSize"/>.</exception>
    /// <exception cref="PeerLinkException">The session is closed or failed, or the queue is full in <see cref="SendQueueFullMode.Fail"/> mode.</exception>
    public ValueTask SendAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default) =>
        EnqueueDataAsync(message, 0, 0, cancellationToken);

    /// <summary>
    /// Sends a typed message: <typeparamref name="T"/> is serialized as MessagePack with <see cref="SecureSessionOptions.Serializer"/>.
    /// Declare message types as <c>[GenerateShape] partial record</c> (PolyType); the peer reads them with
    /// <see cref="PeerMessage.Deserialize{T}()"/>.
    /// </summary>
    /// <typeparam name="T">A type with a generated shape.</typeparam>
    /// <param name="message">The value to serialize.</param>
    /// <param name="cancellationToken">Cancels a wait for queue space.</param>
    /// <exception cref="ArgumentOutOfRangeException">The serialized message exceeds <see cref="MaxMessageSize"/>.</exception>
    /// <exception cref="PeerLinkException">The session is closed or failed, or the value cannot be serialized (<see cref="PeerLinkError.InvalidMessagePack"/>).</exception>
    public ValueTask SendAsync<T>(T message, CancellationToken cancellationToken = default)
        where T : IShapeable<T> => SendAsync(message, T.GetTypeShape(), cancellationToken);

    /// <summary>
    /// Sends a typed message whose shape comes from elsewhere: for a type the application does not own, generate its
    /// shape on a witness class (<c>[GenerateShapeFor&lt;TheirType&gt;] partial class Witness;</c>) and pass
    /// <c>TypeShapeResolver.Resolve&lt;TheirType, Witness&gt;()</c>.
    /// </summary>
    /// <typeparam name="T">The message type.</typeparam>
    /// <param name="message">The value to serialize.</param>
    /// <param name="shape">The type's shape.</param>
    /// <param name="cancellationToken">Cancels a wait for queue space.</param>
    /// <exception cref="ArgumentNullException"><paramref name="shape"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The serialized message exceeds <see cref="MaxMessageSize"/>.</exception>
    /// <exception cref="PeerLinkException">The session is closed or failed, or the value cannot be serialized (<see cref="PeerLinkError.InvalidMessagePack"/>).</exception>
    public ValueTask SendAsync<T>(T message, ITypeShape<T> shape, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(shape);
        PooledBufferWriter buffer = PooledBufferWriter.Rent();
        bool handedOff = false;
        try
        {
            TypedMessages.Serialize(_options.Serializer, buffer, message, shape);
            ValueTask pending = EnqueueDataAsync(buffer.WrittenMemory, 0, 0, cancellationToken);
            if (!pending.IsCompleted)
            {
                handedOff = true;
                return AwaitThenReturnAsync(pending, buffer);
            }

            pending.GetAwaiter().GetResult();
            return ValueTask.CompletedTask;
        }
        finally
        {
            if (!handedOff)
            {
                PooledBufferWriter.Return(buffer);
            }
        }

        static async ValueTask AwaitThenReturnAsync(ValueTask pending, PooledBufferWriter buffer)
        {
            try
            {
                await pending.ConfigureAwait(false);
            }
            finally
            {
                PooledBufferWriter.Return(buffer);
            }
        }
    }

    /// <summary>Receives the next message, or null once the peer has closed gracefully and everything was received.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="PeerLinkException">The session was aborted or failed (the code says why).</exception>
    /// <remarks>The previous message's payload is released by this call; see <see cref="PeerMessage"/>.</remarks>
    public ValueTask<PeerMessage?> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        ReleaseLastDelivered();
        return TryReceive(out PeerMessage? message) ? new ValueTask<PeerMessage?>(message) : WaitAndReceiveAsync(cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<PeerMessage?> WaitAndReceiveAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            await _inbox.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (TryReceive(out PeerMessage? message))
            {
                return message;
            }
        }
    }

    /// <summary>True with the next message, or with null at a graceful end; throws at a failed end; false to wait.</summary>
    private bool TryReceive(out PeerMessage? received)
    {
        if (_inbox.TryRead(out PeerMessage message, out Exception? error, out bool ended))
        {
            OnDelivered(message);
            received = message;
            return true;
        }

        received = null;
        if (ended && error is PeerLinkException inner)
        {
            throw new PeerLinkException(inner.Error, inner.Message, inner);
        }

        return ended;
    }

    /// <summary>All messages until the peer closes; see <see cref="PeerMessage"/> for how long each payload stays valid.</summary>
    /// <param name="cancellationToken">Ends the enumeration.</param>
    /// <exception cref="PeerLinkException">The session was aborted or failed.</exception>
    public async IAsyncEnumerable<PeerMessage> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await ReceiveAsync(cancellationToken).ConfigureAwait(false) is { } message)
        {
            yield return message;
        }
    }

    /// <summary>Sends a request and waits for the peer's <see cref="RespondAsync"/>. The response is copied out for the caller.</summary>
    /// <param name="request">The request bytes.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="PeerLinkException">No response within <see cref="SecureSessionOptions.RequestTimeout"/> (<see cref="PeerLinkError.RequestTimeout"/>), or the session ended.</exception>
    public async Task<byte[]> RequestAsync(ReadOnlyMemory<byte> request, CancellationToken cancellationToken = default)
    {
        (uint id, TaskCompletionSource<byte[]> pending) = _requests.StartRequest();
        try
        {
            await EnqueueDataAsync(request, SessionWire.Request, id, cancellationToken).ConfigureAwait(false);
            return await pending.Task.WaitAsync(_options.RequestTimeout, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new PeerLinkException(PeerLinkError.RequestTimeout, $"{RemotePeerId.ToFingerprint()} sent no response within {_options.RequestTimeout.TotalSeconds} s.");
        }
        finally
        {
            _requests.EndRequest(id);
        }
    }

    /// <summary>Answers a request received from the peer.</summary>
    /// <param name="request">The request, as received (only its id is used, so it may already be released).</param>
    /// <param name="response">The response bytes.</param>
    /// <param name="cancellationToken">Cancels a wait for queue space.</param>
    /// <exception cref="ArgumentException"><paramref name="request"/> is not a request.</exception>
    public ValueTask RespondAsync(PeerMessage request, ReadOnlyMemory<byte> response, CancellationToken cancellationToken = default)
    {
        if (!request.IsRequest)
        {
            throw new ArgumentException("The message is not a request.", nameof(request));
        }

        return EnqueueDataAsync(response, SessionWire.Response, request.RequestId, cancellationToken);
    }

    /// <summary>Measures the round trip with a PING. One ping at a time.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="InvalidOperationException">Another ping is in flight.</exception>
    public async Task<TimeSpan> PingAsync(CancellationToken cancellationToken = default)
    {
        if (!_requests.TryStartPing(out TaskCompletionSource<TimeSpan> ping))
        {
            throw new InvalidOperationException("Another ping is in flight.");
        }

        try
        {
            Span<byte> body = stackalloc byte[1];
            body[0] = 1;
            EnqueueControl(SessionWire.Ping, body);
            return await ping.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _requests.EndPing(ping);
        }
    }

    /// <summary>
    /// Closes gracefully: everything queued is sent, then CLOSE; waits (up to <see cref="SecureSessionOptions.CloseTimeout"/>)
    /// for the peer's CLOSE. Messages that arrive meanwhile can still be received. Idempotent.
    /// </summary>
    /// <param name="code">The reason given to the peer.</param>
    /// <param name="cancellationToken">Stops waiting; the connection is then aborted.</param>
    public async Task CloseAsync(SessionCloseCode code = SessionCloseCode.Normal, CancellationToken cancellationToken = default)
    {
        SendClose(code, null);
        try
        {
            await _receiveLoop.WaitAsync(_options.CloseTimeout, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
            Fail(new PeerLinkException(PeerLinkError.ConnectionAborted, $"{RemotePeerId.ToFingerprint()} did not confirm the close within {_options.CloseTimeout.TotalSeconds} s."), abortConnection: true);
        }
    }

    /// <summary>Ends the session at once: queued messages are dropped and the peer sees an abort. Idempotent.</summary>
    public void Abort() => Fail(new PeerLinkException(PeerLinkError.ConnectionAborted, "The session was aborted locally."), abortConnection: true);

    /// <summary>Closes gracefully if still open (see <see cref="CloseAsync"/>), then releases everything. Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (!_completion.Task.IsCompleted)
        {
            await CloseAsync().ConfigureAwait(false);
        }

        await _receiveLoop.ConfigureAwait(false);
        await _keepAlive.DisposeAsync().ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
        lock (_sendGate)
        {
            ReturnBatches();
        }

        ReleaseLastDelivered();
        foreach (PeerMessage left in _inbox.Drain())
        {
            _deliveryBuffers.Return(left.Buffer);
        }

        _deliveryBuffers.Trim();

        _reassembler.Release();
        _noise.Dispose();
    }

    /// <summary>Starts the receive loop and waits for the peer's ACCEPT: proof that it completed the handshake and accepts us.</summary>
    private async Task StartAsync(CancellationToken cancellationToken)
    {
        _receiveLoop = Task.Run(ReceiveLoopAsync, CancellationToken.None);
        await _accepted.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Queues ACCEPT, each side's first record, and flushes it on this thread with whatever the handshake left in the pipe (no thread hop).</summary>
    private void SendAccept()
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

    private void SendRefusal()
    {
        SendClose(SessionCloseCode.Refused, null);
    }

    /// <summary>Waits until everything queued is in the connection's pipe (bounded by the close timeout).</summary>
    private async Task DrainAsync()
    {
        try
        {
            await DrainSendsAsync().ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }
    }

    private ValueTask EnqueueDataAsync(ReadOnlyMemory<byte> message, byte kind, uint requestId, CancellationToken cancellationToken)
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

    private void ThrowIfCannotSend()
    {
        if (_failure is not null)
        {
            throw new PeerLinkException(_failure is PeerLinkException p ? p.Error : PeerLinkError.ConnectionAborted, $"The session has failed: {_failure.Message}", _failure);
        }

        if (_remoteClosed)
        {
            throw new PeerLinkException(PeerLinkError.SessionClosed, $"The peer closed the session ({_remoteCloseCode}); nothing more can be sent.", _remoteCloseCode);
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

    private void EnqueueControl(byte type, ReadOnlySpan<byte> body)
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

    private void SendClose(SessionCloseCode code, string? reason)
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
            SessionLog.CloseSent(_logger, _connection.ConnectionId, code);
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
            Fail(e as PeerLinkException ?? new PeerLinkException(PeerLinkError.ConnectionReset, $"Sending failed: {e.Message}", e), abortConnection: true);
        }
    }

    /// <summary>Encrypts one batch as a Noise transport message into the pipe, rekeying first when a budget ran out.</summary>
    private void WriteMessage(byte[] batch, int length)
    {
        bool rekey = ++_messagesSinceRekey >= _options.RekeyAfterMessages
            || (_bytesSinceRekey += length) >= _options.RekeyAfterBytes
            || _time.GetElapsedTime(_keyCreatedAt) >= _options.RekeyInterval;
        if (rekey)
        {
            // The REKEY record ends this message; the batch always keeps room for it.
            batch.AsSpan(length, SessionWire.RecordHeaderSize).Clear();
            batch[length] = SessionWire.Rekey;
            length += SessionWire.RecordHeaderSize;
        }

        int ciphertextLength = length + NoiseCipherState.TagSize;
        _noise.Send!.EncryptWithAd(default, batch.AsSpan(0, length), NoiseFrame.Begin(_output, ciphertextLength));
        NoiseFrame.Commit(_output, ciphertextLength);
        if (rekey)
        {
            _noise.Send.Rekey();
            SendRekeys++;
            _messagesSinceRekey = 0;
            _bytesSinceRekey = 0;
            _keyCreatedAt = _time.GetTimestamp();
            SessionLog.Rekeyed(_logger, _connection.ConnectionId, "send");
        }
    }

    private async Task ReceiveLoopAsync()
    {
        // Buffers are rented per read and returned before the next wait, so that an idle session holds none.
        byte[]? plaintext = null;
        byte[]? scratch = null;
        int plaintextUsed = 0;
        try
        {
            while (true)
            {
                await WaitForReceiveSpaceAsync().ConfigureAwait(false);
                ReadResult result = await _input.ReadAsync().ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                SequencePosition consumed = buffer.Start;
                SequencePosition examined = buffer.End;
                bool ended = false;
                try
                {
                    if (result.IsCanceled)
                    {
                        return;
                    }

                    while (TryReadMessage(ref buffer, out ReadOnlySequence<byte> ciphertext))
                    {
                        Volatile.Write(ref _lastReceivedAt, _time.GetTimestamp());
                        if (_remoteClosed)
                        {
                            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer sent a message after its CLOSE.");
                        }

                        ReadOnlySpan<byte> input;
                        if (ciphertext.IsSingleSegment)
                        {
                            input = ciphertext.FirstSpan;
                        }
                        else
                        {
                            scratch ??= ArrayPool<byte>.Shared.Rent(NoiseCipherState.MaxMessageLength);
                            ciphertext.CopyTo(scratch);
                            input = scratch.AsSpan(0, (int)ciphertext.Length);
                        }

                        plaintext ??= ArrayPool<byte>.Shared.Rent(SessionWire.MaxPlaintext);
                        if (!_noise.Receive!.TryDecryptWithAd(default, input, plaintext, out int length))
                        {
                            throw new PeerLinkException(PeerLinkError.DecryptionFailed, "A message from the peer failed authentication (altered, replayed, reordered or truncated).");
                        }

                        consumed = buffer.Start;
                        plaintextUsed = Math.Max(plaintextUsed, length);
                        if (ProcessRecords(plaintext.AsSpan(0, length)))
                        {
                            _noise.Receive.Rekey();
                            ReceiveRekeys++;
                            SessionLog.Rekeyed(_logger, _connection.ConnectionId, "receive");
                        }

                        if (_remoteClosed)
                        {
                            FinishRemoteClose();
                        }

                        if (!_accepted.Task.IsCompleted)
                        {
                            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer's first message did not start with ACCEPT.");
                        }
                    }

                    consumed = buffer.Start;
                    if (result.IsCompleted)
                    {
                        if (!buffer.IsEmpty)
                        {
                            throw new PeerLinkException(PeerLinkError.Truncated, $"The connection ended in the middle of a message ({buffer.Length} bytes left).");
                        }

                        ended = true;
                    }
                }
                finally
                {
                    _input.AdvanceTo(consumed, examined);
                    ReturnReceiveBuffers(ref plaintext, ref plaintextUsed, ref scratch);
                }

                if (ended)
                {
                    if (_remoteClosed)
                    {
                        Complete();
                    }
                    else
                    {
                        Fail(new PeerLinkException(PeerLinkError.ConnectionReset, "The peer's connection ended without a CLOSE: the session was aborted."), abortConnection: false);
                    }

                    return;
                }
            }
        }
        catch (PeerLinkException e)
        {
            SessionLog.ReceiveFailed(_logger, _connection.ConnectionId, e.Error, e.Message);
            SessionCloseCode code = e.Error switch
            {
                PeerLinkError.MessageTooLarge => SessionCloseCode.MessageTooLarge,
                PeerLinkError.ConnectionReset or PeerLinkError.ConnectionAborted => SessionCloseCode.Normal,
                _ => SessionCloseCode.ProtocolViolation,
            };
            if (code != SessionCloseCode.Normal && e.Error != PeerLinkError.DecryptionFailed)
            {
                // Tell the peer why, if the channel still works; then drop the connection.
                SendClose(code, null);
                try
                {
                    await DrainSendsAsync().ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // The peer does not read; it will see the connection drop instead.
                }
            }

            Fail(e, abortConnection: true);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
            Fail(new PeerLinkException(PeerLinkError.ConnectionAborted, "The session's connection was closed.", e), abortConnection: true);
        }
        finally
        {
            ReturnReceiveBuffers(ref plaintext, ref plaintextUsed, ref scratch);
        }
    }

    private static void ReturnReceiveBuffers(ref byte[]? plaintext, ref int plaintextUsed, ref byte[]? scratch)
    {
        if (plaintext is not null)
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(plaintext.AsSpan(0, plaintextUsed));
            ArrayPool<byte>.Shared.Return(plaintext);
            plaintext = null;
            plaintextUsed = 0;
        }

        if (scratch is not null)
        {
            ArrayPool<byte>.Shared.Return(scratch);
            scratch = null;
        }
    }

    private static bool TryReadMessage(ref ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> ciphertext)
    {
        if (buffer.Length >= NoiseFrame.PrefixSize && NoiseFrame.PeekLength(buffer) < NoiseCipherState.TagSize)
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"A transport message of {NoiseFrame.PeekLength(buffer)} bytes is shorter than its authentication tag.");
        }

        return NoiseFrame.TryRead(ref buffer, out ciphertext);
    }

    /// <summary>Dispatches the records of one decrypted message. Returns true when it ended with REKEY.</summary>
    private bool ProcessRecords(ReadOnlySpan<byte> records)
    {
        while (!records.IsEmpty)
        {
            if (records.Length < SessionWire.RecordHeaderSize)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "A record header is truncated.");
            }

            byte type = records[0];
            byte flags = records[1];
            int length = BinaryPrimitives.ReadUInt16BigEndian(records[2..]);
            if (records.Length < SessionWire.RecordHeaderSize + length)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"A record claims {length} bytes; its message holds {records.Length - SessionWire.RecordHeaderSize}.");
            }

            ReadOnlySpan<byte> body = records.Slice(SessionWire.RecordHeaderSize, length);
            records = records[(SessionWire.RecordHeaderSize + length)..];
            if (_remoteClosed)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer sent a record after its CLOSE.");
            }

            if (type != SessionWire.Accept && !_accepted.Task.IsCompleted && type != SessionWire.Close)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer sent a record before ACCEPT.");
            }

            switch (type)
            {
                case SessionWire.Data:
                    OnData(flags, body);
                    break;
                case SessionWire.Ping:
                    EnqueueControl(SessionWire.Pong, body.Length <= 8 ? body : body[..8]);
                    break;
                case SessionWire.Pong:
                    if (!body.IsEmpty)
                    {
                        _requests.OnPong();     // keepalive PINGs are empty, so their PONGs are not an application's ping
                    }

                    break;
                case SessionWire.Accept:
                    if (!_accepted.TrySetResult())
                    {
                        throw new PeerLinkException(PeerLinkError.ProtocolViolation, "An unexpected ACCEPT.");
                    }

                    break;
                case SessionWire.Close:
                    OnClose(body);
                    break;
                case SessionWire.Rekey:
                    if (!records.IsEmpty)
                    {
                        throw new PeerLinkException(PeerLinkError.ProtocolViolation, "REKEY must be the last record of its message.");
                    }

                    return true;
                default:
                    if ((type & SessionWire.IgnorableBit) == 0)
                    {
                        throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"Unknown record type 0x{type:x2}.");
                    }

                    break;
            }
        }

        return false;
    }

    private void OnData(byte flags, ReadOnlySpan<byte> body)
    {
        if (_reassembler.Add(flags, body, _options.MaxMessageSize, out ReadOnlySpan<byte> message, out byte messageFlags))
        {
            Deliver(messageFlags, message);
            _reassembler.Release();
        }
    }

    private void Deliver(byte flags, ReadOnlySpan<byte> body)
    {
        uint id = 0;
        bool isRequest = (flags & SessionWire.Request) != 0;
        bool isResponse = (flags & SessionWire.Response) != 0;
        if (isRequest || isResponse)
        {
            if (body.Length < 4 || (isRequest && isResponse))
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "A request or response without its id.");
            }

            id = BinaryPrimitives.ReadUInt32BigEndian(body);
            body = body[4..];
        }

        if (body.Length > _options.MaxMessageSize)
        {
            throw new PeerLinkException(PeerLinkError.MessageTooLarge, $"The peer sent a message larger than the limit of {_options.MaxMessageSize} bytes.");
        }

        if (isResponse)
        {
            _requests.OnResponse(id, body);
            return;   // a late response to a request that timed out is dropped
        }

        byte[] buffer = _deliveryBuffers.Rent(Math.Max(body.Length, 1));
        body.CopyTo(buffer);
        lock (_receiveGate)
        {
            _queuedReceiveBytes += body.Length;
        }

        if (!_inbox.TryWrite(new PeerMessage(buffer, body.Length, id, isRequest, _options.Serializer)))
        {
            _deliveryBuffers.Return(buffer);
        }
    }

    private void OnClose(ReadOnlySpan<byte> body)
    {
        _remoteCloseCode = body.IsEmpty ? SessionCloseCode.Normal : (SessionCloseCode)body[0];
        _remoteClosed = true;
        SessionLog.CloseReceived(_logger, _connection.ConnectionId, _remoteCloseCode);
    }

    /// <summary>After the message that carried the peer's CLOSE was processed without error.</summary>
    private void FinishRemoteClose()
    {
        SessionCloseCode code = _remoteCloseCode;
        if (code == SessionCloseCode.Refused && !_accepted.Task.IsCompleted)
        {
            _accepted.TrySetException(new PeerLinkException(PeerLinkError.PeerRefused, "The peer refused the session.", code));
        }

        if (code is SessionCloseCode.Normal or SessionCloseCode.Shutdown)
        {
            _inbox.Complete();
        }
        else
        {
            PeerLinkError error = code switch
            {
                SessionCloseCode.Refused => PeerLinkError.PeerRefused,
                SessionCloseCode.MessageTooLarge => PeerLinkError.MessageTooLarge,
                SessionCloseCode.Timeout => PeerLinkError.PeerTimeout,
                SessionCloseCode.ProtocolViolation => PeerLinkError.ProtocolViolation,
                _ => PeerLinkError.SessionClosed,      // a code from a newer peer that this version does not know
            };
            _inbox.Complete(new PeerLinkException(error, $"The peer closed the session: {code}.", code));
        }

        // Answer with our own CLOSE after whatever we still have queued; then the flush loop sends FIN.
        SendClose(SessionCloseCode.Normal, null);
    }

    private async Task WaitForReceiveSpaceAsync()
    {
        while (true)
        {
            Task space;
            lock (_receiveGate)
            {
                // Also go on once the session has failed: the next read then ends the loop.
                if (_queuedReceiveBytes < _options.MaxReceiveQueueBytes || Volatile.Read(ref _failure) is not null)
                {
                    return;
                }

                _receiveSpace ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                space = _receiveSpace.Task;
            }

            await space.ConfigureAwait(false);
            Volatile.Write(ref _lastReceivedAt, _time.GetTimestamp());   // our own pause is not the peer's silence
        }
    }

    private void OnDelivered(PeerMessage message)
    {
        _lastDelivered = message.Buffer;
        Volatile.Write(ref _receivedSinceFlush, true);
        TaskCompletionSource? space = null;
        lock (_receiveGate)
        {
            _queuedReceiveBytes -= message.Length;
            if (_queuedReceiveBytes < _options.MaxReceiveQueueBytes)
            {
                (space, _receiveSpace) = (_receiveSpace, null);
            }
        }

        space?.TrySetResult();
    }

    private void ReleaseLastDelivered()
    {
        byte[]? last = Interlocked.Exchange(ref _lastDelivered, null);
        if (last is not null)
        {
            _deliveryBuffers.Return(last);
        }
    }


    private async Task DrainSendsAsync()
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

    private void OnKeepAliveTimer()
    {
        if (_completion.Task.IsCompleted)
        {
            return;
        }

        bool paused;
        lock (_receiveGate)
        {
            paused = _receiveSpace is not null;
        }

        KeepAliveAction action = _keepAlivePolicy.Decide(
            _time.GetElapsedTime(Volatile.Read(ref _lastReceivedAt)), _time.GetElapsedTime(Volatile.Read(ref _lastSentAt)), paused);
        if ((action & KeepAliveAction.Dead) != 0)
        {
            SessionLog.PeerTimedOut(_logger, _connection.ConnectionId, _options.IdleTimeout.TotalSeconds);
            Fail(new PeerLinkException(PeerLinkError.PeerTimeout, $"Nothing arrived from {RemotePeerId.ToFingerprint()} for {_options.IdleTimeout.TotalSeconds} s: the peer is gone."), abortConnection: true);
            return;
        }

        if ((action & KeepAliveAction.SendPing) != 0)
        {
            EnqueueControl(SessionWire.Ping, default);
        }

        if ((action & KeepAliveAction.TrimBuffers) != 0)
        {
            _deliveryBuffers.Trim();   // quiet for a while: give the recycled buffers back
        }
    }

    private void Complete()
    {
        _inbox.Complete();
        _requests.FailAll(new PeerLinkException(PeerLinkError.SessionClosed, "The session closed before the response arrived."));
        _completion.TrySetResult();
    }

    private void Fail(Exception error, bool abortConnection)
    {
        lock (_sendGate)
        {
            if (_failure is not null || _completion.Task.IsCompleted)
            {
                return;
            }

            _failure = error;
            _sendSpace?.TrySetResult();
            _sendDrained?.TrySetResult();
        }

        if (abortConnection)
        {
            _connection.Abort(error);
        }

        _accepted.TrySetException(error);
        _inbox.Complete(error);
        _requests.FailAll(error);
        lock (_receiveGate)
        {
            _receiveSpace?.TrySetResult();
        }

        _completion.TrySetException(error);
        _ = _completion.Task.Exception;   // observed: the failure is reported through the session's operations
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

    private sealed class FlushWorkItem(SecureSession session) : IThreadPoolWorkItem
    {
        public void Execute() => _ = session.FlushLoopAsync();
    }
}
