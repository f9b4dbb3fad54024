// An established PeerLink session: Noise transport messages over a PeerConnection, each carrying one or more records
// (docs/protocol.md). The session is the façade and owns the lifetime: SessionSender batches and seals what it sends
// (small messages sent together share one AEAD call), SessionReceiver's loop decrypts and dispatches what arrives, and
// RequestTracker, Reassembler and the SessionKeepAlive policy sit beside them. Data flows one way through each.
using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Internal;
using PeerLink.Messaging;
using PeerLink.Security.Noise;
using PeerLink.Transport;
using PolyType;

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
public sealed class SecureSession : IAsyncDisposable, ISessionLifetime
{
    private readonly PeerConnection _connection;
    private readonly PipeWriter _output;
    private readonly PipeReader _input;
    private readonly NoiseTransport _noise;
    private readonly SecureSessionOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly int _sendLimit;
    private readonly SessionSender _sender;

    private readonly SessionReceiver _receiver;

    // Requests and pings.
    private readonly RequestTracker _requests;

    // Lifetime.
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ITimer _keepAlive;
    private SessionKeepAlive _keepAlivePolicy;     // replaced whole by SetKeepAlive; a struct of two TimeSpans, read by the timer
    private int _disposed;
    private const int TelemetryOpened = 1;
    private const int TelemetryEnded = 2;

    private string _direction = "";

    // Counting the session closed without a continuation on its completion (one fewer object per live session):
    // 0 until it is counted open (TelemetryOpened) or ends (TelemetryEnded), whichever comes first.
    private int _telemetryState;

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
        _requests = new RequestTracker(_time);
        _sender = new SessionSender(_output, noise.Send!, _sendLimit, options, logger, connection.ConnectionId, this);
        _receiver = new SessionReceiver(_input, noise.Receive!, options, logger, connection.ConnectionId, _sender, _requests, this);
        _keepAlivePolicy = new SessionKeepAlive(options.KeepAliveInterval, options.IdleTimeout);
        if (connection is Transport.Datagrams.DatagramConnection datagrams)
        {
            datagrams.MessageReceived = _receiver.DeliverUnreliable;
        }

        if (connection is MigratingConnection migrating)
        {
            migrating.PathInfoChanged += path => PathChanged?.Invoke(this, path);
        }
        _keepAlive = _time.CreateTimer(static state => ((SecureSession)state!).OnKeepAliveTimer(), this, _keepAlivePolicy.TimerPeriod, _keepAlivePolicy.TimerPeriod);
    }

    /// <summary>
    /// Changes the keepalive interval and idle timeout after the handshake: a rendezvous node tells its devices at attach
    /// how often to send keepalives (docs/nat-traversal.md).
    /// </summary>
    internal void SetKeepAlive(TimeSpan interval, TimeSpan idleTimeout)
    {
        if (interval <= TimeSpan.Zero || idleTimeout <= interval)
        {
            throw new ArgumentOutOfRangeException(nameof(interval), "The interval must be positive and the idle timeout longer.");
        }

        _keepAlivePolicy = new SessionKeepAlive(interval, idleTimeout);
        _keepAlive.Change(_keepAlivePolicy.TimerPeriod, _keepAlivePolicy.TimerPeriod);
    }

    /// <summary>The keepalive interval in force (the options' unless <see cref="SetKeepAlive"/> changed it).</summary>
    internal TimeSpan KeepAliveInterval => _keepAlivePolicy.Interval;

    /// <summary>The connection under the session (a component that manages paths needs it).</summary>
    internal PeerConnection Connection => _connection;

    /// <summary>Receives the peer's path signalling (PATH records), on the receive loop; hand the work off at once.</summary>
    internal void SetPathSignalHandler(Action<byte[]> handler) => _receiver.PathSignal = handler;

    /// <summary>Sends path signalling to the peer, encrypted in this session like any record.</summary>
    internal void SendPathSignal(ReadOnlySpan<byte> body)
    {
        if (body.Length > SessionWire.MaxPathSignal)
        {
            throw new ArgumentOutOfRangeException(nameof(body), $"Path signalling is at most {SessionWire.MaxPathSignal} bytes.");
        }

        _sender.EnqueueControl(SessionWire.PathSignal, body);
    }

    /// <summary>How many times each direction was rekeyed (for tests and diagnostics).</summary>
    internal int SendRekeys => _sender.Rekeys;

    internal int ReceiveRekeys => _receiver.Rekeys;

    /// <summary>True while a send waits for queue space (for tests and diagnostics).</summary>
    internal bool IsSendBlocked => _sender.IsWaitingForSpace;

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

    /// <summary>
    /// The path to the peer now (direct, relayed through a rendezvous node, or a direct TCP path that replaced the relay)
    /// and why, with the attempts to go direct.
    /// </summary>
    public SessionPath Path => _connection switch
    {
        MigratingConnection migrating => migrating.PathInfo,
        Transport.Datagrams.DatagramConnection => new SessionPath(SessionPathKind.DirectUdp, $"direct-udp: {RemoteEndPoint}", []),
        _ => new SessionPath(SessionPathKind.Direct, $"direct: {RemoteEndPoint?.ToString() ?? "a connection without an address"}", []),
    };

    /// <summary>Raised, on a background thread, when <see cref="Path"/> changes.</summary>
    public event EventHandler<SessionPath>? PathChanged;

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
        using var scope = new HandshakeScope(options, loggerFactory, cancellationToken, initiator);
        try
        {
            HandshakeOutcome outcome = initiator
                ? await SessionHandshake.InitiateAsync(connection, options, expectedPeer, scope, cancellationToken).ConfigureAwait(false)
                : await SessionHandshake.RespondAsync(connection, options, scope, cancellationToken).ConfigureAwait(false);
            return await FinishEstablishAsync(connection, outcome.Transport, outcome, initiator, options, scope, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (scope.NoteFailure(e))
        {
            throw;   // not reached: the filter only records the outcome
        }
    }

    /// <summary>
    /// Builds the session from a completed handshake and exchanges ACCEPT (or sends CLOSE(refused)). Over a transport
    /// that protects its own datagrams, <paramref name="records"/> holds two cipher states without keys, and the records
    /// travel as plaintext inside the transport's encryption.
    /// </summary>
    internal static async Task<SecureSession> FinishEstablishAsync(PeerConnection connection, NoiseTransport records, HandshakeOutcome outcome, bool initiator, SecureSessionOptions options, HandshakeScope scope, CancellationToken cancellationToken)
    {
        var session = new SecureSession(connection, records, outcome.Protocol, outcome.RemoteId, outcome.Remote, initiator, outcome.HandshakeHash, options, scope.Logger);
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
            session._sender.SendAccept();
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
        scope.Succeeded(outcome.Protocol, outcome.RemoteId);
        session.ReportOpened(outcome.Protocol.PatternName);
        return session;
    }

    /// <summary>Sends one message. Completes when the message is queued in order; the session then delivers it unless aborted.</summary>
    /// <param name="message">Up to <see cref="MaxMessageSize"/> bytes; copied before this returns.</param>
    /// <param name="cancellationToken">Cancels a wait for queue space.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="message"/> exceeds <see cref="MaxMessageSize"/>.</exception>
    /// <exception cref="PeerLinkException">The session is closed or failed, or the queue is full in <see cref="SendQueueFullMode.Fail"/> mode.</exception>
    public ValueTask SendAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default) =>
        _sender.EnqueueDataAsync(message, 0, 0, cancellationToken);

    /// <summary>
    /// Sends one message with the given delivery. <see cref="MessageDelivery.ReliableOrdered"/> is <see cref="SendAsync(ReadOnlyMemory{byte}, CancellationToken)"/>.
    /// <see cref="MessageDelivery.Unreliable"/> suits telemetry that is stale once a newer value exists: over UDP it goes
    /// in one datagram of its own, is never resent, may arrive before messages sent earlier, and is dropped rather than
    /// queued when the path is congested; over a stream (TCP, relay) it travels like any message.
    /// </summary>
    /// <param name="message">The bytes; for <see cref="MessageDelivery.Unreliable"/> at most <see cref="MaxUnreliableMessageSize"/>.</param>
    /// <param name="delivery">How to deliver it.</param>
    /// <param name="cancellationToken">Cancels a wait for queue space (reliable messages only).</param>
    /// <exception cref="ArgumentOutOfRangeException">The message is too large for its delivery.</exception>
    /// <exception cref="PeerLinkException">The session is closed or failed.</exception>
    public ValueTask SendAsync(ReadOnlyMemory<byte> message, MessageDelivery delivery, CancellationToken cancellationToken = default)
    {
        if (delivery == MessageDelivery.ReliableOrdered || _connection is not Transport.Datagrams.DatagramConnection datagrams)
        {
            if (delivery is not (MessageDelivery.ReliableOrdered or MessageDelivery.Unreliable))
            {
                throw new ArgumentOutOfRangeException(nameof(delivery), delivery, "Unknown delivery mode.");
            }

            return _sender.EnqueueDataAsync(message, 0, 0, cancellationToken);
        }

        if (message.Length > datagrams.MaxUnreliableMessageSize)
        {
            throw new ArgumentOutOfRangeException(nameof(message), message.Length, $"An unreliable message is at most {datagrams.MaxUnreliableMessageSize} bytes (one datagram).");
        }

        _sender.EnsureCanSend();
        datagrams.SendUnreliable(message.Span);
        Diagnostics.Telemetry.CountMessage(Diagnostics.Telemetry.MessagesSent, Diagnostics.Telemetry.BytesSent, message.Length);
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// The largest message <see cref="SendAsync(ReadOnlyMemory{byte}, MessageDelivery, CancellationToken)"/> takes with
    /// <see cref="MessageDelivery.Unreliable"/>: one datagram's worth over UDP, <see cref="MaxMessageSize"/> over a stream.
    /// </summary>
    public int MaxUnreliableMessageSize => _connection is Transport.Datagrams.DatagramConnection datagrams
        ? Math.Min(datagrams.MaxUnreliableMessageSize, _sendLimit)
        : _sendLimit;

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
            ValueTask pending = _sender.EnqueueDataAsync(buffer.WrittenMemory, 0, 0, cancellationToken);
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
        _receiver.ReleaseLastDelivered();
        return _receiver.TryReceive(out PeerMessage? message) ? new ValueTask<PeerMessage?>(message) : _receiver.WaitAndReceiveAsync(cancellationToken);
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
            await _sender.EnqueueDataAsync(request, SessionWire.Request, id, cancellationToken).ConfigureAwait(false);
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

        return _sender.EnqueueDataAsync(response, SessionWire.Response, request.RequestId, cancellationToken);
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
            _sender.EnqueueControl(SessionWire.Ping, body);
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
        _sender.SendClose(code, null);
        try
        {
            await _receiver.Loop.WaitAsync(_options.CloseTimeout, _time, cancellationToken).ConfigureAwait(false);
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

        await _receiver.Loop.ConfigureAwait(false);
        await _keepAlive.DisposeAsync().ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
        _sender.Release();
        _receiver.Release();
        _noise.Dispose();
    }

    /// <summary>
    /// A session whose records travel without encryption (keyless cipher states, as over the datagram transport), with
    /// its receive loop running and no handshake: what the fuzzing harness feeds records and fragments to.
    /// </summary>
    internal static SecureSession StartKeylessForFuzzing(PeerConnection connection, SecureSessionOptions options)
    {
        var records = new NoiseTransport(new NoiseCipherState(PeerLink.Security.NoiseCipherKind.ChaChaPoly), new NoiseCipherState(PeerLink.Security.NoiseCipherKind.ChaChaPoly));
        var session = new SecureSession(connection, records, NoiseProtocol.Parse("Noise_XX_25519_ChaChaPoly_SHA256"), default, new SessionHello(1, options.ApplicationId, options.MaxMessageSize), isInitiator: false, new byte[32], options, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        session._receiver.Start();
        return session;
    }

    /// <summary>Starts the receive loop and waits for the peer's ACCEPT: proof that it completed the handshake and accepts us.</summary>
    private async Task StartAsync(CancellationToken cancellationToken)
    {
        _receiver.Start();
        await _receiver.Accepted.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private void SendRefusal()
    {
        _sender.SendClose(SessionCloseCode.Refused, null);
    }

    /// <summary>Waits until everything queued is in the connection's pipe (bounded by the close timeout).</summary>
    private async Task DrainAsync()
    {
        try
        {
            await _sender.DrainAsync().ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }
    }

    private void OnKeepAliveTimer()
    {
        if (_completion.Task.IsCompleted)
        {
            return;
        }

        KeepAliveAction action = _keepAlivePolicy.Decide(
            _time.GetElapsedTime(_receiver.LastReceivedAt), _time.GetElapsedTime(_sender.LastSentAt), _receiver.IsPaused);
        if ((action & KeepAliveAction.Dead) != 0)
        {
            double idle = _keepAlivePolicy.IdleTimeout.TotalSeconds;
            SessionLog.PeerTimedOut(_logger, _connection.ConnectionId, idle);
            Fail(new PeerLinkException(PeerLinkError.PeerTimeout, $"Nothing arrived from {RemotePeerId.ToFingerprint()} for {idle} s: the peer is gone."), abortConnection: true);
            return;
        }

        if ((action & KeepAliveAction.SendPing) != 0)
        {
            _sender.EnqueueControl(SessionWire.Ping, default);
        }

        if ((action & KeepAliveAction.TrimBuffers) != 0)
        {
            _receiver.TrimBuffers();   // quiet for a while: give the recycled buffers back
        }
    }

    /// <summary>Counts the session as open; <see cref="ReportClosed"/> counts it closed, once.</summary>
    private void ReportOpened(string pattern)
    {
        _direction = Diagnostics.Telemetry.DirectionOf(IsInitiator);
        Diagnostics.Telemetry.SessionsOpened.Add(1, new(Diagnostics.Telemetry.Direction, _direction), new(Diagnostics.Telemetry.Pattern, pattern));
        Diagnostics.Telemetry.SessionsActive.Add(1, new KeyValuePair<string, object?>(Diagnostics.Telemetry.Direction, _direction));
        if (Interlocked.CompareExchange(ref _telemetryState, TelemetryOpened, 0) == TelemetryEnded)
        {
            ReportClosed();   // it ended before it was counted open
        }
    }

    /// <summary>Called once, by whoever completed the session: counts it closed if it was counted open.</summary>
    private void ReportEnded()
    {
        if (Interlocked.Exchange(ref _telemetryState, TelemetryEnded) == TelemetryOpened)
        {
            ReportClosed();
        }
    }

    private void ReportClosed()
    {
        string reason = _completion.Task.Exception?.InnerException is { } error ? Diagnostics.Telemetry.OutcomeOf(error) : "closed";
        Diagnostics.Telemetry.SessionsActive.Add(-1, new KeyValuePair<string, object?>(Diagnostics.Telemetry.Direction, _direction));
        Diagnostics.Telemetry.SessionsClosed.Add(1, new(Diagnostics.Telemetry.Direction, _direction), new(Diagnostics.Telemetry.Reason, reason));
    }

    void ISessionLifetime.Complete() => Complete();

    void ISessionLifetime.Fail(Exception error, bool abortConnection) => Fail(error, abortConnection);

    private void Complete()
    {
        _receiver.OnCompleted();
        _requests.FailAll(new PeerLinkException(PeerLinkError.SessionClosed, "The session closed before the response arrived."));
        if (_completion.TrySetResult())
        {
            ReportEnded();
        }
    }

    private void Fail(Exception error, bool abortConnection)
    {
        if (_completion.Task.IsCompleted || !_sender.TryFail(error))
        {
            return;
        }

        if (abortConnection)
        {
            _connection.Abort(error);
        }

        _receiver.OnFailed(error);
        _requests.FailAll(error);

        if (_completion.TrySetException(error))
        {
            _ = _completion.Task.Exception;   // observed: the failure is reported through the session's operations
            ReportEnded();
        }
    }
}
