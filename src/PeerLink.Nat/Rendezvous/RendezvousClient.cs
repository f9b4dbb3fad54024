// A device's side of the rendezvous protocol (docs/nat-traversal.md): it keeps the node's attach session alive,
// attaching again with jittered exponential backoff after a loss; it asks the node for relays to peers it names by
// PeerId, and opens the relay connections that the node announces for peers that want it.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.Nat.Rendezvous;

/// <summary>
/// The component that attaches a node to its rendezvous node, so that peers reach it by PeerId alone, and reaches them
/// the same way. Add it with <c>UseRendezvous</c> (<see cref="RendezvousBuilderExtensions"/>); find it with
/// <c>node.GetComponent&lt;RendezvousClient&gt;()</c>.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class RendezvousClient : IPeerNodeComponent, IPeerDialer
{
    private readonly RendezvousClientOptions _options;
    private readonly TcpPeerConnector _connector;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<long, PeerConnection> _relays = new();
    private readonly ConcurrentDictionary<MigratingConnection, string> _unclaimed = new();   // relayed connections whose session has not opened yet, and which node relays them
    private readonly Lock _gate = new();
    private TaskCompletionSource<SecureSession> _attached = NewAttachedSource();
    private TaskCompletionSource _detached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PeerNode? _node;
    private SecureSessionOptions? _attachOptions;
    private TimeProvider _time = TimeProvider.System;
    private Task _attachLoop = Task.CompletedTask;
    private long _epoch;
    private string? _observed;
    private TimeSpan _keepAlive;
    private IPEndPoint? _stunServer;
    private UdpTransport? _udp;
    private readonly BirthdayGate _birthdays = new();
    private int _disposed;

    private RendezvousNode _current;

    internal RendezvousClient(IReadOnlyList<RendezvousNode> nodes, RendezvousClientOptions options, ILoggerFactory loggerFactory)
    {
        Nodes = nodes;
        _current = nodes[0];
        _options = options;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<RendezvousClient>();
        _connector = new TcpPeerConnector(null, loggerFactory);
    }

    /// <summary>The rendezvous nodes this device may attach to, as configured (one, or the nodes of a tier).</summary>
    public IReadOnlyList<RendezvousNode> Nodes { get; }

    /// <summary>The rendezvous node the device is attached to now, or attached to last, or tries first.</summary>
    public RendezvousNode CurrentNode => Volatile.Read(ref _current);

    /// <summary>The TCP endpoint of <see cref="CurrentNode"/>.</summary>
    public IPEndPoint EndPoint => CurrentNode.EndPoint;

    /// <summary>The PeerId of <see cref="CurrentNode"/>, pinned: the attach session authenticates it.</summary>
    public PeerId RendezvousPeerId => CurrentNode.PeerId;

    /// <summary>True while the node is attached.</summary>
    public bool IsAttached => _attached.Task.IsCompletedSuccessfully;

    /// <summary>The number the rendezvous node gave the current (or last) attachment; a newer one replaces an older.</summary>
    public long Epoch => Interlocked.Read(ref _epoch);

    /// <summary>This device's address and port as the rendezvous node saw the last attach session (server-reflexive over TCP).</summary>
    public string? ObservedEndPoint => Volatile.Read(ref _observed);

    /// <summary>The local endpoint of the socket that punches UDP paths, when <see cref="RendezvousClientOptions.PunchUdp"/> is on.</summary>
    public IPEndPoint? UdpEndPoint => _udp?.LocalEndPoint;

    /// <summary>The keepalive interval the rendezvous node asked for at the last attach.</summary>
    public TimeSpan KeepAliveInterval
    {
        get
        {
            lock (_gate)
            {
                return _keepAlive;
            }
        }
    }

    /// <summary>Waits until the node is attached (at once when it is).</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    public Task WaitForAttachmentAsync(CancellationToken cancellationToken = default) => _attached.Task.WaitAsync(cancellationToken);

    /// <summary>Completes when the current attachment is lost (for tests: the event, not a poll).</summary>
    internal Task WhenDetachedAsync()
    {
        lock (_gate)
        {
            return _attached.Task.IsCompletedSuccessfully ? _detached.Task : Task.CompletedTask;
        }
    }

    /// <inheritdoc/>
    ValueTask IPeerNodeComponent.StartAsync(PeerNode node, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(node);
        if (_node is not null)
        {
            throw new InvalidOperationException("This rendezvous client already belongs to a node.");
        }

        _node = node;
        SecureSessionOptions own = node.SessionOptions;
        _time = own.TimeProvider;
        _attachOptions = new SecureSessionOptions
        {
            ApplicationId = RendezvousWire.ApplicationId,
            NetworkKey = _options.NetworkKey ?? own.NetworkKey,
            AllowedPeers = new HashSet<PeerId>(Nodes.Select(n => n.PeerId)),
            MaxMessageSize = RendezvousWire.MaxMessageSize,
            HandshakeTimeout = own.HandshakeTimeout,
            MaxSendQueueBytes = 16 * 1024,
            MaxReceiveQueueBytes = 16 * 1024,
            TimeProvider = _time,
        }.Validate(nameof(node), own.Identity);
        if (_options.UpgradeToDirect && _options.PunchUdp)
        {
            // One socket for every punch of this node: its STUN answer is the mapping the checks and the paths then use.
            _udp = UdpTransport.Bind(_options.UdpEndPoint, own, null, _loggerFactory);
            _udp.AcceptsSessions = false;
        }

        node.SessionOpened += OnSessionOpened;
        _attachLoop = Task.Run(AttachLoopAsync);
        return ValueTask.CompletedTask;
    }

    /// <summary>Asks the rendezvous node for a relay to <paramref name="peer"/> and opens the relay connection.</summary>
    /// <param name="peer">The peer.</param>
    /// <param name="cancellationToken">Cancels the attempt.</param>
    /// <returns>The relay connection, on which the node then runs the end-to-end IK handshake.</returns>
    /// <exception cref="PeerLinkException">
    /// <see cref="PeerLinkError.NotAttached"/> when the node is not attached within <see cref="RendezvousClientOptions.AttachWait"/>;
    /// <see cref="PeerLinkError.PeerNotFound"/> when the peer is not attached to the rendezvous node;
    /// <see cref="PeerLinkError.RelayLimitExceeded"/> when a relay limit refuses it.
    /// </exception>
    public async ValueTask<PeerConnection?> DialAsync(PeerId peer, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (_node is null)
        {
            return null;
        }

        SecureSession session = await WaitForSessionAsync(cancellationToken).ConfigureAwait(false);
        RendezvousNode attachedTo = CurrentNode;
        byte[] response = await session.RequestAsync(RendezvousWire.Serialize(new ConnectRequest(peer.ToArray())), cancellationToken).ConfigureAwait(false);
        if (RendezvousWire.Deserialize(response) is not ConnectReply reply)
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The rendezvous node answered a connect request with another message.");
        }

        if (reply.Error != 0)
        {
            PeerLinkError error = Enum.IsDefined((PeerLinkError)reply.Error) ? (PeerLinkError)reply.Error : PeerLinkError.Unknown;
            throw new PeerLinkException(error, $"The rendezvous node cannot relay to {peer.ToFingerprint()}: {reply.Reason}.");
        }

        if (reply.Token is not { Length: RendezvousWire.TokenLength })
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The rendezvous node's connect reply has no valid token.");
        }

        IPEndPoint relay = attachedTo.EndPoint;
        if (reply.RelayEndPoint is not null && !IPEndPoint.TryParse(reply.RelayEndPoint, out relay!))
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The rendezvous node's connect reply names an invalid relay endpoint.");
        }

        // A relay on another node of the tier (the callee's) is named by its address: this device does not know its PeerId.
        string relayNode = reply.RelayEndPoint is null ? attachedTo.PeerId.ToFingerprint() : $"{relay} (the peer's node of the tier)";
        return Wrap(await OpenRelayAsync(relay, reply.Circuit, reply.Token, cancellationToken).ConfigureAwait(false), relayNode);
    }

    /// <summary>A relayed connection always carries path frames, so that a direct path can take over under the session.</summary>
    private MigratingConnection Wrap(PeerConnection relay, string relayNode)
    {
        var connection = new MigratingConnection(relay, "relayed", _time, _options.PathKeepAlive);
        _unclaimed[connection] = relayNode;
        connection.ConnectionClosed.UnsafeRegister(static state =>
        {
            var (unclaimed, c) = ((ConcurrentDictionary<MigratingConnection, string>, MigratingConnection))state!;
            unclaimed.TryRemove(c, out _);
        }, (_unclaimed, connection));
        return connection;
    }

    /// <summary>A session opened on one of our relayed connections: start looking for a direct path for it.</summary>
    private void OnSessionOpened(SecureSession session)
    {
        if (session.Connection is not MigratingConnection connection || !_unclaimed.TryRemove(connection, out string? rendezvous))
        {
            return;
        }

        if (!_options.UpgradeToDirect)
        {
            connection.PathInfo = new SessionPath(SessionPathKind.Relayed, $"relayed through rendezvous node {rendezvous}: direct paths are turned off", []);
            return;
        }

        new PathUpgrader(session, connection, _node!.PeerId, _options, () => Volatile.Read(ref _stunServer), rendezvous, _udp, _birthdays, _loggerFactory, _time).Start();
    }

    /// <summary>Stops attaching and closes the attach session; sessions already relayed carry on until the node ends them.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_node is not null)
        {
            _node.SessionOpened -= OnSessionOpened;
        }

        await _attachLoop.ConfigureAwait(false);
        if (_udp is not null)
        {
            await _udp.DisposeAsync().ConfigureAwait(false);
        }

        _stopping.Dispose();
    }

    private static TaskCompletionSource<SecureSession> NewAttachedSource() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private async Task<SecureSession> WaitForSessionAsync(CancellationToken cancellationToken)
    {
        Task<SecureSession> attached = _attached.Task;
        if (attached.IsCompletedSuccessfully)
        {
            return attached.Result;
        }

        try
        {
            return await attached.WaitAsync(_options.AttachWait, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new PeerLinkException(PeerLinkError.NotAttached, Nodes.Count == 1
                ? $"Not attached to rendezvous node {RendezvousPeerId.ToFingerprint()} at {EndPoint}."
                : $"Not attached to any of the {Nodes.Count} rendezvous nodes (last tried {RendezvousPeerId.ToFingerprint()} at {EndPoint}).");
        }
    }

    private async Task AttachLoopAsync()
    {
        CancellationToken stopping = _stopping.Token;
        int failures = 0;
        while (!stopping.IsCancellationRequested)
        {
            string reason;
            bool replaced = false;
            try
            {
                (RendezvousNode node, SecureSession session) = await ConnectToANodeAsync(stopping).ConfigureAwait(false);
                try
                {
                    await WelcomeAsync(session, node, stopping).ConfigureAwait(false);
                    failures = 0;
                    await ReceiveLoopAsync(session, node, stopping).ConfigureAwait(false);
                    reason = "the rendezvous node closed the session";
                }
                catch (PeerLinkException e)
                {
                    reason = e.Message;
                    replaced = e.RemoteCloseCode == SessionCloseCode.Replaced;
                }
                finally
                {
                    lock (_gate)
                    {
                        if (_attached.Task.IsCompleted)
                        {
                            _attached = NewAttachedSource();
                            _detached.TrySetResult();
                            _detached = new(TaskCreationOptions.RunContinuationsAsynchronously);
                        }
                    }

                    await session.DisposeAsync().ConfigureAwait(false);
                }
            }
            catch (PeerLinkException e)
            {
                reason = e.Message;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                break;
            }

            if (stopping.IsCancellationRequested)
            {
                break;
            }

            // Jittered exponential backoff; a device whose attachment a newer one replaced (it moved, or its key is in
            // two places) waits the longest, so that two copies do not take turns evicting each other.
            TimeSpan delay = replaced ? _options.MaxReattachDelay : Backoff(failures++);
            RendezvousLog.ClientDetached(_logger, RendezvousPeerId.ToFingerprint(), reason, delay.TotalSeconds);
            try
            {
                await Task.Delay(delay, _time, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>
    /// Opens an attach session to one node: with one node configured, that node; with several, each in order of the
    /// round trip of a TCP connect to it, measured anew on every attach (the nearest live node first), until one
    /// completes the handshake. Fails with the last node's error when none does.
    /// </summary>
    private async Task<(RendezvousNode Node, SecureSession Session)> ConnectToANodeAsync(CancellationToken stopping)
    {
        IReadOnlyList<RendezvousNode> order = Nodes.Count == 1 ? Nodes : await RankByRoundTripAsync(stopping).ConfigureAwait(false);
        PeerLinkException? last = null;
        foreach (RendezvousNode node in order)
        {
            Volatile.Write(ref _current, node);
            try
            {
                PeerConnection connection = await _connector.ConnectAsync(node.EndPoint, stopping).ConfigureAwait(false);
                return (node, await SecureSession.ConnectAsync(connection, _attachOptions!, node.PeerId, _loggerFactory, stopping).ConfigureAwait(false));
            }
            catch (PeerLinkException e)
            {
                last = e;
                RendezvousLog.ClientNodeUnreachable(_logger, node.PeerId.ToFingerprint(), node.EndPoint, e.Message);
            }
        }

        throw last!;
    }

    /// <summary>The nodes by the time a TCP connect to each takes (one round trip), unreachable ones last, in parallel.</summary>
    private async Task<IReadOnlyList<RendezvousNode>> RankByRoundTripAsync(CancellationToken stopping)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        deadline.CancelAfter(_options.NodeProbeTimeout);
        TimeSpan[] times = await Task.WhenAll(Nodes.Select(async node =>
        {
            long start = _time.GetTimestamp();
            try
            {
                await using PeerConnection probe = await _connector.ConnectAsync(node.EndPoint, deadline.Token).ConfigureAwait(false);
                probe.Abort();
                return _time.GetElapsedTime(start);
            }
            catch (Exception e) when (e is PeerLinkException or OperationCanceledException)
            {
                return TimeSpan.MaxValue;
            }
        })).ConfigureAwait(false);
        stopping.ThrowIfCancellationRequested();
        return [.. Nodes.Select((node, i) => (node, i)).OrderBy(x => times[x.i]).ThenBy(x => x.i).Select(x => x.node)];
    }

    /// <summary>The nominal delay doubles per failure up to the maximum; the real one is drawn between half and all of it.</summary>
    private TimeSpan Backoff(int failures)
    {
        double nominal = Math.Min(_options.MaxReattachDelay.TotalMilliseconds, _options.MinReattachDelay.TotalMilliseconds * Math.Pow(2, Math.Min(failures, 30)));
        return TimeSpan.FromMilliseconds(nominal * (0.5 + (Random.Shared.NextDouble() * 0.5)));
    }

    /// <summary>The node's first message says the attachment is live and how often to keep it alive.</summary>
    private async Task WelcomeAsync(SecureSession session, RendezvousNode node, CancellationToken stopping)
    {
        using var deadline = new CancellationTokenSource(_attachOptions!.HandshakeTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, stopping);
        PeerMessage? first;
        try
        {
            first = await session.ReceiveAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            throw new PeerLinkException(PeerLinkError.HandshakeTimeout, "The rendezvous node sent no welcome.");
        }

        if (first is not { } received || RendezvousWire.Deserialize(received.Payload) is not Welcome welcome)
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The rendezvous node's first message was not a welcome.");
        }

        var keepAlive = TimeSpan.FromMilliseconds(Math.Clamp(welcome.KeepAliveMs, 1000, 3_600_000));
        session.SetKeepAlive(keepAlive, keepAlive * 3);
        lock (_gate)
        {
            _keepAlive = keepAlive;
            Interlocked.Exchange(ref _epoch, welcome.Epoch);
            Volatile.Write(ref _observed, welcome.ObservedEndPoint);
            Volatile.Write(ref _stunServer, welcome.StunPort is > 0 and <= 65535 ? new IPEndPoint(node.EndPoint.Address, welcome.StunPort) : null);
            _attached.TrySetResult(session);
        }

        RendezvousLog.ClientAttached(_logger, node.PeerId.ToFingerprint(), node.EndPoint, welcome.Epoch, keepAlive.TotalSeconds, welcome.ObservedEndPoint ?? "?");
    }

    private async Task ReceiveLoopAsync(SecureSession session, RendezvousNode node, CancellationToken stopping)
    {
        while (await session.ReceiveAsync(stopping).ConfigureAwait(false) is { } message)
        {
            RendezvousMessage parsed;
            try
            {
                parsed = RendezvousWire.Deserialize(message.Payload);
            }
            catch (PeerLinkException)
            {
                continue;   // a message of a newer protocol version: not for us
            }

            switch (parsed)
            {
                case IncomingRelay incoming when incoming.From is { Length: PeerId.Size } && incoming.Token is { Length: RendezvousWire.TokenLength }:
                    _ = Task.Run(() => AcceptRelayAsync(incoming, node));
                    break;
                case RelayEnded ended when message.IsRequest:
                    EndRelay(ended);
                    await session.RespondAsync(message, RendezvousWire.Serialize(new RelayEndedAck(ended.Circuit)), stopping).ConfigureAwait(false);
                    break;
            }
        }
    }

    private async Task AcceptRelayAsync(IncomingRelay incoming, RendezvousNode node)
    {
        RendezvousLog.ClientIncomingRelay(_logger, incoming.Circuit, new PeerId(incoming.From).ToFingerprint());
        PeerConnection connection;
        try
        {
            connection = await OpenRelayAsync(node.EndPoint, incoming.Circuit, incoming.Token, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is PeerLinkException or OperationCanceledException or ObjectDisposedException)
        {
            RendezvousLog.ClientRelayFailed(_logger, incoming.Circuit, e.Message);
            return;
        }

        await _node!.AcceptConnectionAsync(Wrap(connection, node.PeerId.ToFingerprint())).ConfigureAwait(false);   // the node's own authorization decides
    }

    /// <summary>Opens a relay connection: to our own node, or to the node of the tier that holds the peer (routed connects).</summary>
    private async Task<PeerConnection> OpenRelayAsync(IPEndPoint node, long circuit, byte[] token, CancellationToken cancellationToken)
    {
        PeerConnection connection = await _connector.ConnectAsync(node, cancellationToken).ConfigureAwait(false);
        try
        {
            RendezvousWire.WriteRelayPreamble(connection.Transport.Output, token);
            await connection.Transport.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            connection.Abort();
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        _relays[circuit] = connection;
        connection.ConnectionClosed.UnsafeRegister(static state =>
        {
            var (relays, id, c) = ((ConcurrentDictionary<long, PeerConnection>, long, PeerConnection))state!;
            relays.TryRemove(new KeyValuePair<long, PeerConnection>(id, c));
        }, (_relays, circuit, connection));
        return connection;
    }

    /// <summary>The node ends a relay (a limit): the session on it fails with the node's reason, not a bare reset.</summary>
    private void EndRelay(RelayEnded ended)
    {
        RendezvousLog.ClientRelayEnded(_logger, ended.Circuit, ended.Reason);
        if (_relays.TryRemove(ended.Circuit, out PeerConnection? connection))
        {
            PeerLinkError error = Enum.IsDefined((PeerLinkError)ended.Error) ? (PeerLinkError)ended.Error : PeerLinkError.ConnectionReset;
            connection.Abort(new PeerLinkException(error, $"The rendezvous node ended the relayed session: {ended.Reason}."));
        }
    }
}

/// <summary>Adds a rendezvous node to a <see cref="PeerNodeBuilder"/>.</summary>
public static class RendezvousBuilderExtensions
{
    /// <summary>
    /// Attaches the node to a rendezvous node, so that peers anywhere reach it by PeerId alone and it reaches them:
    /// <see cref="PeerNode.ConnectAsync(PeerId, CancellationToken)"/> tries the LAN first (mDNS, when added) and then a
    /// relayed end-to-end session through the rendezvous node.
    /// </summary>
    /// <param name="builder">The node's builder.</param>
    /// <param name="endPoint">The rendezvous node's TCP endpoint.</param>
    /// <param name="rendezvousPeer">The rendezvous node's PeerId (pinned, like a server's key).</param>
    /// <param name="configure">Changes the defaults of <see cref="RendezvousClientOptions"/>.</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="endPoint"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The options are inconsistent.</exception>
    public static PeerNodeBuilder UseRendezvous(this PeerNodeBuilder builder, IPEndPoint endPoint, PeerId rendezvousPeer, Action<RendezvousClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(endPoint);
        var options = new RendezvousClientOptions();
        configure?.Invoke(options);
        return builder.AddComponent(new RendezvousClient([new RendezvousNode(endPoint, rendezvousPeer)], options.Validate(nameof(configure)), builder.LoggerFactory ?? NullLoggerFactory.Instance));
    }

    /// <summary>
    /// Attaches the node to one of the rendezvous nodes of a tier: the one with the lowest round trip, measured at each
    /// attach; when its node dies or becomes unreachable, the next. Sessions already direct carry on meanwhile.
    /// Otherwise as <see cref="UseRendezvous(PeerNodeBuilder, IPEndPoint, PeerId, Action{RendezvousClientOptions}?)"/>.
    /// </summary>
    /// <param name="builder">The node's builder.</param>
    /// <param name="nodes">The tier's nodes (each pinned by its own PeerId); at least one.</param>
    /// <param name="configure">Changes the defaults of <see cref="RendezvousClientOptions"/>.</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="nodes"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="nodes"/> is empty or names a node twice.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The options are inconsistent.</exception>
    public static PeerNodeBuilder UseRendezvous(this PeerNodeBuilder builder, IEnumerable<RendezvousNode> nodes, Action<RendezvousClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(nodes);
        RendezvousNode[] list = [.. nodes];
        if (list.Length == 0 || list.Any(n => n is null || n.EndPoint is null))
        {
            throw new ArgumentException("At least one rendezvous node, each with an endpoint, is required.", nameof(nodes));
        }

        if (list.Select(n => n.PeerId).Distinct().Count() != list.Length)
        {
            throw new ArgumentException("A rendezvous node is named twice.", nameof(nodes));
        }

        var options = new RendezvousClientOptions();
        configure?.Invoke(options);
        return builder.AddComponent(new RendezvousClient(list, options.Validate(nameof(configure)), builder.LoggerFactory ?? NullLoggerFactory.Instance));
    }
}

/// <summary>A rendezvous node as a device knows it: where it listens and its PeerId, pinned like a server's key.</summary>
/// <param name="EndPoint">The node's TCP endpoint.</param>
/// <param name="PeerId">The node's PeerId.</param>
public sealed record RendezvousNode(IPEndPoint EndPoint, PeerId PeerId)
{
    /// <inheritdoc/>
    public override string ToString() => $"{PeerId.ToFingerprint()}@{EndPoint}";
}
