using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Linq;
using System.Net;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Diagnostics;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink;

/// <summary>
/// The one object an application holds: its identity, its listeners, and its sessions with other peers. Build it with
/// <see cref="PeerNodeBuilder"/>; dispose it to close every session cleanly.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class PeerNode : IAsyncDisposable
{
    private readonly PeerIdentity _identity;
    private readonly PeerNodeOptions _options;
    private readonly SecureSessionOptions _sessionOptions;
    private readonly IReadOnlyList<IPeerListener> _listeners;
    private readonly IPeerConnector _connector;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly Channel<SecureSession> _incoming;
    private readonly ConcurrentDictionary<SecureSession, byte> _sessions = new();
    private readonly CancellationTokenSource _stopping = new();
    private const int MaxRememberedAesPeers = 10_000;      // bounded: beyond it, new peers keep ChaCha20-Poly1305
    private readonly Task[] _acceptLoops;
    private readonly IReadOnlyList<IPeerNodeComponent> _components;
    private readonly HandshakeAdmission _admission;
    private readonly SecureSessionOptions? _aesGcmOptions;     // the session options with PreferAesGcm, when AES-GCM may be agreed
    private readonly ConcurrentDictionary<PeerId, byte> _aesPeers = new();   // peers that announced AES instructions
    private int _disposed;
    private long _shedConnections;

    internal PeerNode(PeerIdentity identity, PeerNodeOptions options, SecureSessionOptions sessionOptions, IReadOnlyList<IPeerListener> listeners, IPeerConnector connector, IReadOnlyList<IPeerNodeComponent> components, ILoggerFactory loggerFactory)
    {
        _components = components;
        _identity = identity;
        _options = options;
        _sessionOptions = sessionOptions;
        _listeners = listeners;
        _connector = connector;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<PeerNode>();
        if (sessionOptions.AgreeOnAesGcm && !sessionOptions.PreferAesGcm && SessionWire.HasAesHardware)
        {
            _aesGcmOptions = sessionOptions.Validate("options");
            _aesGcmOptions.PreferAesGcm = true;
        }

        _admission = new HandshakeAdmission(options.MaxPendingHandshakes, options.MaxPendingHandshakesPerAddress, options.MaxSessions, sessionOptions.TimeProvider);
        _incoming = Channel.CreateBounded<SecureSession>(new BoundedChannelOptions(options.IncomingQueueLength) { SingleWriter = false, FullMode = BoundedChannelFullMode.Wait });
        _acceptLoops = listeners.Select(l => Task.Run(() => AcceptLoopAsync(l))).ToArray();
    }

    /// <summary>This node's PeerId.</summary>
    public PeerId PeerId => _identity.PeerId;

    /// <summary>The application id that sessions must share (<see cref="SecureSessionOptions.ApplicationId"/>); discovery advertises it.</summary>
    public string ApplicationId => _sessionOptions.ApplicationId;

    /// <summary>The bound endpoints of the listeners, with their real ports.</summary>
    public IReadOnlyList<EndPoint> LocalEndPoints => _listeners.Select(l => l.LocalEndPoint).ToArray();

    /// <summary>The components that extension packages added (see <see cref="PeerNodeBuilder.AddComponent"/>).</summary>
    public IReadOnlyList<IPeerNodeComponent> Components => _components;

    /// <summary>Incoming connections dropped (reset) by the handshake and session limits so far; for tests and diagnostics.</summary>
    internal long ShedConnections => Interlocked.Read(ref _shedConnections);

    /// <summary>The sessions open now, incoming and outgoing.</summary>
    public IReadOnlyCollection<SecureSession> Sessions => _sessions.Keys.ToArray();

    /// <summary>
    /// Opens a session to <paramref name="remoteEndPoint"/>: IK (one round trip) when <paramref name="expectedPeer"/> is
    /// given, XX otherwise. With <see cref="SecureSessionOptions.FallbackToXX"/>, an IK attempt whose peer has another
    /// key is retried once with XX, and the new key must then pass the node's authorization.
    /// </summary>
    /// <param name="remoteEndPoint">Where the peer listens.</param>
    /// <param name="expectedPeer">The peer's PeerId, when known (from discovery, configuration or an earlier session).</param>
    /// <param name="cancellationToken">Cancels the connect and handshake.</param>
    /// <returns>The session; the node closes it when disposed, and the caller may close it earlier.</returns>
    /// <exception cref="PeerLinkException">The connection or handshake failed, or either side refused.</exception>
    public async Task<SecureSession> ConnectAsync(EndPoint remoteEndPoint, PeerId? expectedPeer = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(remoteEndPoint);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        using Activity? activity = StartConnectActivity(expectedPeer);
        try
        {
            return Connected(activity, await ConnectToEndPointAsync(remoteEndPoint, expectedPeer, cancellationToken).ConfigureAwait(false));
        }
        catch (Exception e)
        {
            Telemetry.SetFailed(activity, e);
            throw;
        }
    }

    private async Task<SecureSession> ConnectToEndPointAsync(EndPoint remoteEndPoint, PeerId? expectedPeer, CancellationToken cancellationToken)
    {
        SecureSession session;
        try
        {
            SecureSessionOptions options = OptionsFor(expectedPeer);
            PeerConnection connection = await _connector.ConnectAsync(remoteEndPoint, cancellationToken).ConfigureAwait(false);
            session = await SecureSession.ConnectAsync(connection, options, expectedPeer, _loggerFactory, cancellationToken).ConfigureAwait(false);
        }
        catch (PeerLinkException e) when (e.Error == PeerLinkError.RemoteKeyMismatch && _sessionOptions.FallbackToXX)
        {
            NodeLog.FallbackToXX(_logger, remoteEndPoint.ToString() ?? "?");
            PeerConnection connection = await _connector.ConnectAsync(remoteEndPoint, cancellationToken).ConfigureAwait(false);
            session = await SecureSession.ConnectAsync(connection, _sessionOptions, null, _loggerFactory, cancellationToken).ConfigureAwait(false);
        }

        Track(session);
        return session;
    }

    /// <summary>
    /// Opens an IK session to a peer known only by its PeerId. The node's locators (such as mDNS discovery) say where it
    /// may be, and each endpoint is tried in turn; when none answers, or none is known, the node's dialers (such as a
    /// rendezvous node's relay) are tried.
    /// </summary>
    /// <param name="peer">The peer.</param>
    /// <param name="cancellationToken">Cancels the lookup, connects and handshake.</param>
    /// <returns>The session.</returns>
    /// <exception cref="PeerLinkException">
    /// <see cref="PeerLinkError.PeerNotFound"/> when no component knows the peer; otherwise the failure of the last path
    /// tried (for example <see cref="PeerLinkError.PeerRefused"/> when the peer refused this node).
    /// </exception>
    public async Task<SecureSession> ConnectAsync(PeerId peer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        using Activity? activity = StartConnectActivity(peer);
        try
        {
            return Connected(activity, await ConnectByIdAsync(peer, cancellationToken).ConfigureAwait(false));
        }
        catch (Exception e)
        {
            Telemetry.SetFailed(activity, e);
            throw;
        }
    }

    private static Activity? StartConnectActivity(PeerId? peer)
    {
        Activity? activity = Telemetry.Source.StartActivity("peerlink.connect", ActivityKind.Client);
        if (activity is not null && peer is { } id)
        {
            activity.SetTag(Telemetry.PeerIdTag, id.ToString());
        }

        return activity;
    }

    private static SecureSession Connected(Activity? activity, SecureSession session)
    {
        if (activity is not null)
        {
            activity.SetTag(Telemetry.PeerIdTag, session.RemotePeerId.ToString());
            activity.SetTag(Telemetry.PathTag, session.Path.Kind.ToString());
            activity.SetTag(Telemetry.Outcome, Telemetry.Success);
        }

        return session;
    }

    private async Task<SecureSession> ConnectByIdAsync(PeerId peer, CancellationToken cancellationToken)
    {
        var endPoints = new List<EndPoint>();
        foreach (IPeerLocator locator in _components.OfType<IPeerLocator>())
        {
            endPoints.AddRange(await locator.LocateAsync(peer, cancellationToken).ConfigureAwait(false));
        }

        PeerLinkException? last = null;
        foreach (EndPoint endPoint in endPoints)
        {
            try
            {
                return await ConnectToEndPointAsync(endPoint, peer, cancellationToken).ConfigureAwait(false);
            }
            catch (PeerLinkException e) when (e.Error is PeerLinkError.ConnectionRefused or PeerLinkError.ConnectionReset or PeerLinkError.ConnectionAborted
                or PeerLinkError.ConnectionTimeout or PeerLinkError.HostUnreachable or PeerLinkError.HandshakeTimeout)
            {
                last = e;   // try the next address
            }
        }

        bool dialed = false;
        foreach (IPeerDialer dialer in _components.OfType<IPeerDialer>())
        {
            PeerConnection? connection;
            try
            {
                connection = await dialer.DialAsync(peer, cancellationToken).ConfigureAwait(false);
            }
            catch (PeerLinkException e)
            {
                last = e;
                dialed = true;
                continue;
            }

            if (connection is null)
            {
                continue;
            }

            SecureSession session = await SecureSession.ConnectAsync(connection, OptionsFor(peer), peer, _loggerFactory, cancellationToken).ConfigureAwait(false);
            Track(session);
            return session;
        }

        if (dialed)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(last!);
        }

        throw endPoints.Count == 0
            ? new PeerLinkException(PeerLinkError.PeerNotFound, $"No component of this node knows where peer {peer.ToFingerprint()} is.")
            : new PeerLinkException(PeerLinkError.PeerNotFound, $"None of the {endPoints.Count} endpoint(s) of peer {peer.ToFingerprint()} answered: {last!.Message}", last);
    }

    /// <summary>The session options of this node (validated, with its identity), for components that open sessions of their own.</summary>
    internal SecureSessionOptions SessionOptions => _sessionOptions;

    /// <summary>The node's logging, for components.</summary>
    internal ILoggerFactory LoggerFactory => _loggerFactory;

    /// <summary>Cancelled when the node stops.</summary>
    internal CancellationToken Stopping => _stopping.Token;

    /// <summary>
    /// Takes an incoming connection that did not come from a listener (a relayed connection that a rendezvous node
    /// announced): the same admission limits and responder handshake as a listener's, then <see cref="AcceptAsync"/>.
    /// The node owns the connection from now on.
    /// </summary>
    internal async ValueTask AcceptConnectionAsync(PeerConnection connection)
    {
        if (_disposed != 0 || _stopping.IsCancellationRequested)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            return;
        }

        (bool admitted, HandshakeAdmission.Ticket? ticket) = await AdmitAsync(connection).ConfigureAwait(false);
        if (admitted)
        {
            await HandshakeAsync(connection, ticket!).ConfigureAwait(false);
        }
    }

    /// <summary>The first component of type <typeparamref name="T"/>, or null.</summary>
    /// <typeparam name="T">The component type (for example the discovery of PeerLink.Discovery).</typeparam>
    public T? GetComponent<T>()
        where T : class => _components.OfType<T>().FirstOrDefault();

    /// <summary>The next incoming session (authenticated and authorized), or null once the node is disposed.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    public async ValueTask<SecureSession?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _incoming.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            return null;
        }
    }

    /// <summary>Incoming sessions as they are established, until the node is disposed.</summary>
    /// <param name="cancellationToken">Ends the enumeration.</param>
    public async IAsyncEnumerable<SecureSession> AcceptAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await AcceptAsync(cancellationToken).ConfigureAwait(false) is { } session)
        {
            yield return session;
        }
    }

    /// <summary>
    /// Stops listening, closes every session gracefully (CLOSE with <see cref="SessionCloseCode.Shutdown"/>, each waiting at most
    /// <see cref="SecureSessionOptions.CloseTimeout"/>), and releases everything. Idempotent.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (IPeerNodeComponent component in _components.Reverse())
        {
            try
            {
                await component.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                NodeLog.ComponentFailed(_logger, component.GetType().Name, e);
            }
        }

        foreach (IPeerListener listener in _listeners)
        {
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        _incoming.Writer.TryComplete();
        await Task.WhenAll(_sessions.Keys.Select(CloseAndDisposeAsync)).ConfigureAwait(false);
        while (_incoming.Reader.TryRead(out SecureSession? unaccepted))
        {
            await unaccepted.DisposeAsync().ConfigureAwait(false);
        }

        _stopping.Dispose();
        NodeLog.Stopped(_logger, PeerId.ToFingerprint());
    }

    /// <summary>The session options for a connection to <paramref name="peer"/>: a peer that announced AES instructions in an earlier session gets AES-GCM (IK only: the peer is known).</summary>
    private SecureSessionOptions OptionsFor(PeerId? peer) =>
        peer is { } known && _aesGcmOptions is not null && _aesPeers.ContainsKey(known) ? _aesGcmOptions : _sessionOptions;

    private static async Task CloseAndDisposeAsync(SecureSession session)
    {
        await session.CloseAsync(SessionCloseCode.Shutdown).ConfigureAwait(false);
        await session.DisposeAsync().ConfigureAwait(false);
    }

    private async Task AcceptLoopAsync(IPeerListener listener)
    {
        var handshakes = new List<Task>();
        try
        {
            while (await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false) is { } connection)
            {
                (bool admitted, HandshakeAdmission.Ticket? ticket) = await AdmitAsync(connection).ConfigureAwait(false);
                if (!admitted)
                {
                    continue;
                }

                handshakes.RemoveAll(t => t.IsCompleted);
                handshakes.Add(HandshakeAsync(connection, ticket!));
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            NodeLog.AcceptLoopFailed(_logger, listener.LocalEndPoint, e);
        }

        await Task.WhenAll(handshakes).ConfigureAwait(false);
    }

    /// <summary>Applies the handshake and session limits; a connection over them is reset, logged at a bounded rate and counted.</summary>
    private async ValueTask<(bool Admitted, HandshakeAdmission.Ticket? Ticket)> AdmitAsync(PeerConnection connection)
    {
        // A handshake still pending when a peer with fewer under way needs its slot is aborted (HandshakeAdmission).
        ShedReason shed = _admission.TryAdmit(connection.RemoteEndPoint, _sessions.Count, () => connection.Abort(), out HandshakeAdmission.Ticket ticket);
        if (shed == ShedReason.None)
        {
            return (true, ticket);
        }

        if (_admission.ShouldLog(out int unlogged))
        {
            NodeLog.ConnectionShed(_logger, connection.ConnectionId, connection.RemoteEndPoint?.ToString() ?? "?", Describe(shed), unlogged);
        }

        connection.Abort();
        await connection.DisposeAsync().ConfigureAwait(false);
        Interlocked.Increment(ref _shedConnections);
        return (false, null);
    }

    private string Describe(ShedReason reason) => reason switch
    {
        ShedReason.PendingFromAddress => $"{_options.MaxPendingHandshakesPerAddress} handshakes already pending from that address",
        ShedReason.PendingHandshakes => $"{_options.MaxPendingHandshakes} handshakes already pending",
        _ => $"{_options.MaxSessions} sessions open",
    };

    /// <summary>
    /// Started on the accept loop, which it leaves at its first wait: when the peer's first message has not arrived yet
    /// (the usual case), that is the wait for it, and the handshake then runs on the thread that receives it, without a
    /// hop; when it is already buffered, a hop to the thread pool first, so that the accept loop never does the
    /// handshake's cryptography.
    /// </summary>
    private async Task HandshakeAsync(PeerConnection connection, HandshakeAdmission.Ticket ticket)
    {
        PipeReader input = connection.Transport.Input;
        if (input.TryRead(out ReadResult buffered))
        {
            input.AdvanceTo(buffered.Buffer.Start);   // nothing consumed or examined: the handshake reads it
            await Task.Yield();
        }

        try
        {
            SecureSession session = await SecureSession.AcceptAsync(connection, _sessionOptions, _loggerFactory, _stopping.Token).ConfigureAwait(false);
            Track(session);
            if (!_incoming.Writer.TryWrite(session))
            {
                try
                {
                    await _incoming.Writer.WriteAsync(session, _stopping.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
                {
                    await session.DisposeAsync().ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is PeerLinkException or OperationCanceledException)
        {
            // Logged by the handshake; this connection is gone and the listener carries on.
        }
        finally
        {
            _admission.Release(ticket);
        }
    }

    /// <summary>Raised for every session the node opens or accepts, before the application sees it (components that manage its paths).</summary>
    internal event Action<SecureSession>? SessionOpened;

    private void Track(SecureSession session)
    {
        _sessions[session] = 0;
        SessionOpened?.Invoke(session);
        if (_aesGcmOptions is not null)
        {
            if (!session.RemoteHasAesHardware)
            {
                _aesPeers.TryRemove(session.RemotePeerId, out _);
            }
            else if (_aesPeers.Count < MaxRememberedAesPeers || _aesPeers.ContainsKey(session.RemotePeerId))
            {
                _aesPeers[session.RemotePeerId] = 0;
            }
        }

        _ = session.Completion.ContinueWith(
            static (_, state) =>
            {
                (PeerNode node, SecureSession s) = ((PeerNode, SecureSession))state!;
                node._sessions.TryRemove(s, out byte _);
            },
            (this, session),
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }
}
