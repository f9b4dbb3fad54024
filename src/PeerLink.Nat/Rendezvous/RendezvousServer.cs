// The rendezvous node (docs/nat-traversal.md): one TCP port for attach sessions ("PLNK", a Noise session with each
// device) and relay connections ("PLRY" + token, spliced byte for byte), plus the STUN server on UDP and TCP.
using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.Nat.Rendezvous;

/// <summary>
/// A rendezvous node: devices behind NATs attach to it with a Noise IK session and keep it alive; it tells each device
/// how often to send keepalives, finds the device a caller names by PeerId, and relays an end-to-end encrypted session
/// between the two (it forwards ciphertext and holds no key of that session). It also serves STUN, so that devices
/// learn their public addresses from it. Like a DERP server or a vendor's base station.
/// </summary>
/// <example>
/// <code>
/// await using RendezvousServer server = await RendezvousServer.StartAsync(identity,
///     new RendezvousServerOptions { ListenEndPoint = new IPEndPoint(IPAddress.Any, 7400) });
/// Console.WriteLine(server.PeerId);   // devices pin this PeerId in UseRendezvous
/// </code>
/// </example>
/// <remarks>Thread-safe.</remarks>
public sealed class RendezvousServer : IAsyncDisposable, IRendezvousTierNode
{
    private static readonly TimeSpan RelayEndedWait = TimeSpan.FromSeconds(2);

    private readonly PeerIdentity _identity;
    private readonly RendezvousServerOptions _options;
    private readonly SecureSessionOptions _attachOptions;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly TcpPeerListener _listener;
    private readonly StunServer? _stun;
    private readonly HandshakeAdmission _admission;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly Dictionary<PeerId, Attachment> _attached = [];
    private readonly Dictionary<PeerId, int> _relaysPerDevice = [];
    private readonly Dictionary<UInt128, (RelayCircuit Circuit, bool IsCaller)> _tokens = [];
    private readonly Dictionary<long, RelayCircuit> _circuits = [];
    private readonly HashSet<Task> _running = [];
    private readonly TaskCompletionSource _served = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _serving;
    private readonly IRendezvousBackplane? _backplane;
    private Task _acceptLoop = Task.CompletedTask;
    private long _epoch;
    // Circuit numbers start at a random point, so that a device's circuits on two nodes of a tier do not collide.
    private long _nextCircuit = (long)System.Security.Cryptography.RandomNumberGenerator.GetInt32(1, int.MaxValue) << 24;
    private long _relayedBytes;
    private int _disposed;

    private RendezvousServer(PeerIdentity identity, RendezvousServerOptions options, SecureSessionOptions attachOptions, TcpPeerListener listener, StunServer? stun, ILoggerFactory loggerFactory)
    {
        _identity = identity;
        _options = options;
        _attachOptions = attachOptions;
        _listener = listener;
        _stun = stun;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<RendezvousServer>();
        _time = options.TimeProvider;
        _admission = new HandshakeAdmission(options.MaxPendingHandshakes, options.MaxPendingHandshakesPerAddress, options.MaxAttachments, _time);
        _backplane = options.Backplane;
        RelayEndPoint = (options.PublicEndPoint ?? EndPoint).ToString();
    }

    /// <summary>Where devices attached to other nodes of the tier open relay connections to this node.</summary>
    private string RelayEndPoint { get; }

    /// <summary>The node's PeerId: devices pin it, as a client pins a server's key.</summary>
    public PeerId PeerId => _identity.PeerId;

    /// <summary>The bound TCP endpoint for attach sessions and relay connections, with its real port.</summary>
    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndPoint;

    /// <summary>The STUN server's UDP endpoint (TCP on the same port), or null when STUN is off.</summary>
    public IPEndPoint? StunEndPoint => _stun?.LocalEndPoints[0];

    /// <summary>Devices attached now.</summary>
    public int AttachedCount
    {
        get
        {
            lock (_gate)
            {
                return _attached.Count;
            }
        }
    }

    /// <summary>Relayed sessions joined or waiting to be joined now.</summary>
    public int RelayCount
    {
        get
        {
            lock (_gate)
            {
                return _circuits.Count;
            }
        }
    }

    /// <summary>Bytes relayed since the node started, both directions of every relayed session.</summary>
    public long RelayedBytes => Interlocked.Read(ref _relayedBytes);

    /// <summary>True when <paramref name="device"/> is attached now.</summary>
    /// <param name="device">The device's PeerId.</param>
    public bool IsAttached(PeerId device)
    {
        lock (_gate)
        {
            return _attached.ContainsKey(device);
        }
    }

    /// <summary>Completes when the current attachment of <paramref name="device"/> has ended (at once when there is none); for tests.</summary>
    internal Task WhenDetachedAsync(PeerId device)
    {
        lock (_gate)
        {
            return _attached.TryGetValue(device, out Attachment? attachment) ? attachment.Ended.Task : Task.CompletedTask;
        }
    }

    /// <summary>Starts a rendezvous node: binds the TCP port (and STUN's), then accepts devices.</summary>
    /// <param name="identity">The node's identity; the caller keeps ownership and keeps it alive while the node runs.</param>
    /// <param name="options">Where to listen and the limits; copied, so later changes have no effect.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <exception cref="ArgumentNullException"><paramref name="identity"/> or <paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">The options are incomplete or inconsistent.</exception>
    /// <exception cref="PeerLinkException">A port cannot be bound (<see cref="PeerLinkError.AddressInUse"/>, …).</exception>
    public static async Task<RendezvousServer> StartAsync(PeerIdentity identity, RendezvousServerOptions options, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(options);
        RendezvousServerOptions settings = options.Validate(nameof(options));
        loggerFactory ??= NullLoggerFactory.Instance;
        var attach = new SecureSessionOptions
        {
            ApplicationId = RendezvousWire.ApplicationId,
            NetworkKey = settings.NetworkKey,
            AllowedPeers = settings.AllowedDevices,
            Authorize = settings.Authorize,
            MaxMessageSize = RendezvousWire.MaxMessageSize,
            HandshakeTimeout = settings.HandshakeTimeout,
            KeepAliveInterval = settings.KeepAliveInterval,
            IdleTimeout = settings.KeepAliveInterval * 3,
            MaxSendQueueBytes = 16 * 1024,
            MaxReceiveQueueBytes = 16 * 1024,
            SendQueueFullMode = SendQueueFullMode.Fail,
            TimeProvider = settings.TimeProvider,
        }.Validate(nameof(options), identity);

        TcpPeerListener listener = TcpPeerListener.Listen(settings.ListenEndPoint!, null, loggerFactory);
        StunServer? stun = null;
        try
        {
            if (settings.StunPort is int stunPort)
            {
                stun = await StunServer.StartAsync(
                    new StunServerOptions { PrimaryEndPoint = new IPEndPoint(settings.ListenEndPoint!.Address, stunPort), TimeProvider = settings.TimeProvider },
                    loggerFactory,
                    cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            await listener.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        var server = new RendezvousServer(identity, settings, attach, listener, stun, loggerFactory);
        if (server._backplane is { } backplane)
        {
            try
            {
                await backplane.StartAsync(server, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        server._acceptLoop = Task.Run(server.AcceptLoopAsync);
        RendezvousLog.ServerStarted(server._logger, identity.PeerId.ToString(), server.EndPoint, server.StunEndPoint?.ToString() ?? "off");
        return server;
    }

    /// <summary>Stops: no new devices, every attachment closed (CLOSE with <see cref="SessionCloseCode.Shutdown"/>), every relay reset. Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _listener.DisposeAsync().ConfigureAwait(false);
        await _acceptLoop.ConfigureAwait(false);
        if (_backplane is not null)
        {
            try
            {
                await _backplane.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is PeerLinkException or OperationCanceledException or ObjectDisposedException)
            {
                RendezvousLog.TierFailed(_logger, "leave the tier", e.Message);
            }
        }

        RelayCircuit[] circuits;
        Attachment[] attachments;
        lock (_gate)
        {
            circuits = [.. _circuits.Values];
            attachments = [.. _attached.Values];
        }

        foreach (RelayCircuit circuit in circuits)
        {
            circuit.Abort();
        }

        foreach (Attachment attachment in attachments)
        {
            _ = attachment.Session.CloseAsync(SessionCloseCode.Shutdown);
        }

        Task[] running;
        lock (_gate)
        {
            running = [.. _running];
        }

        await Task.WhenAll(running).ConfigureAwait(false);
        if (Volatile.Read(ref _serving) != 0)
        {
            await _served.Task.ConfigureAwait(false);   // the accept loop has ended: the count only goes down now
        }

        if (_stun is not null)
        {
            await _stun.DisposeAsync().ConfigureAwait(false);
        }

        _stopping.Dispose();
        RendezvousLog.ServerStopped(_logger, _identity.PeerId.ToFingerprint());
    }

    private void Run(Func<Task> work)
    {
        Task task = Task.Run(work);
        lock (_gate)
        {
            _running.Add(task);
        }

        _ = task.ContinueWith(
            (t, state) =>
            {
                var server = (RendezvousServer)state!;
                lock (server._gate)
                {
                    server._running.Remove(t);
                }
            },
            this,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    private async Task AcceptLoopAsync()
    {
        try
        {
            while (await _listener.AcceptAsync(_stopping.Token).ConfigureAwait(false) is { } connection)
            {
                int attached;
                lock (_gate)
                {
                    attached = _attached.Count;
                }

                ShedReason shed = _admission.TryAdmit(connection.RemoteEndPoint, attached, () => connection.Abort(), out HandshakeAdmission.Ticket source);
                if (shed != ShedReason.None)
                {
                    if (_admission.ShouldLog(out int unlogged))
                    {
                        RendezvousLog.ConnectionShed(_logger, connection.RemoteEndPoint?.ToString() ?? "?", shed.ToString(), unlogged);
                    }

                    connection.Abort();
                    await connection.DisposeAsync().ConfigureAwait(false);
                    continue;
                }

                Interlocked.Increment(ref _serving);
                _ = ServeConnectionAsync(connection, source);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            RendezvousLog.AcceptLoopFailed(_logger, e);
        }
    }

    /// <summary>
    /// Tells an attach session from a relay connection by the first four bytes, within the handshake timeout. Counted in
    /// <see cref="_serving"/> (not a task in <see cref="_running"/>: an attachment lasts long, and a task per device and
    /// its continuation would be held all that time).
    /// </summary>
    private async Task ServeConnectionAsync(PeerConnection connection, HandshakeAdmission.Ticket source)
    {
        try
        {
            await Task.Yield();   // off the accept loop
            (ConnectionKind kind, byte version, UInt128 token) = await ReadPreambleAsync(connection).ConfigureAwait(false);
            switch (kind)
            {
                case ConnectionKind.Attach:
                    await ServeAttachmentAsync(connection, source).ConfigureAwait(false);   // releases the admission slot
                    return;
                case ConnectionKind.Relay:
                    _admission.Release(source);
                    await JoinRelayAsync(connection, version, token).ConfigureAwait(false);
                    return;
                default:
                    _admission.Release(source);
                    connection.Abort();
                    await connection.DisposeAsync().ConfigureAwait(false);
                    return;
            }
        }
        finally
        {
            if (Interlocked.Decrement(ref _serving) == 0 && _stopping.IsCancellationRequested)
            {
                _served.TrySetResult();
            }
        }
    }

    /// <summary>
    /// Reads the first bytes: "PLNK" is left in the pipe for the session to read; "PLRY", its version and token are
    /// consumed. The deadline's timers are gone by the time the connection is served (an attachment lasts long).
    /// </summary>
    private async Task<(ConnectionKind Kind, byte Version, UInt128 Token)> ReadPreambleAsync(PeerConnection connection)
    {
        PipeReader input = connection.Transport.Input;
        using var deadline = new CancellationTokenSource(_options.HandshakeTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, _stopping.Token);
        try
        {
            ReadResult result = await input.ReadAtLeastAsync(4, linked.Token).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (buffer.Length < 4)
            {
                input.AdvanceTo(buffer.End);
                return (ConnectionKind.None, 0, 0);
            }

            byte[] magic = new byte[4];
            buffer.Slice(0, 4).CopyTo(magic);
            if (magic.AsSpan().SequenceEqual(RendezvousWire.SessionMagic))
            {
                input.AdvanceTo(buffer.Start);   // the session reads its preamble itself
                return (ConnectionKind.Attach, 0, 0);
            }

            if (!magic.AsSpan().SequenceEqual(RendezvousWire.RelayMagic))
            {
                input.AdvanceTo(buffer.End);
                RendezvousLog.UnknownConnection(_logger, connection.RemoteEndPoint?.ToString() ?? "?");
                return (ConnectionKind.None, 0, 0);
            }

            input.AdvanceTo(buffer.Start);
            result = await input.ReadAtLeastAsync(RendezvousWire.RelayPreambleLength, linked.Token).ConfigureAwait(false);
            buffer = result.Buffer;
            if (buffer.Length < RendezvousWire.RelayPreambleLength)
            {
                input.AdvanceTo(buffer.End);
                return (ConnectionKind.None, 0, 0);
            }

            byte[] preamble = new byte[RendezvousWire.RelayPreambleLength];
            buffer.Slice(0, RendezvousWire.RelayPreambleLength).CopyTo(preamble);
            input.AdvanceTo(buffer.GetPosition(RendezvousWire.RelayPreambleLength));
            return (ConnectionKind.Relay, preamble[4], TokenKey(preamble.AsSpan(5)));
        }
        catch (Exception e) when (e is OperationCanceledException or PeerLinkException or InvalidOperationException)
        {
            return (ConnectionKind.None, 0, 0);
        }
    }

    private enum ConnectionKind
    {
        None,
        Attach,
        Relay,
    }

    private async Task ServeAttachmentAsync(PeerConnection connection, HandshakeAdmission.Ticket source)
    {
        SecureSession session;
        try
        {
            session = await SecureSession.AcceptAsync(connection, _attachOptions, _loggerFactory, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is PeerLinkException or OperationCanceledException)
        {
            return;   // logged by the handshake
        }
        finally
        {
            _admission.Release(source);
        }

        Attachment attachment;
        Attachment? replaced;
        lock (_gate)
        {
            attachment = new Attachment(session, NextEpochLocked(), _time.GetTimestamp(), _options.MaxConnectRequestsPerSecond);
            _attached.TryGetValue(session.RemotePeerId, out replaced);
            _attached[session.RemotePeerId] = attachment;
        }

        string device = session.RemotePeerId.ToFingerprint();
        if (replaced is not null)
        {
            RendezvousLog.AttachmentReplaced(_logger, device, replaced.Epoch, attachment.Epoch);
            _ = replaced.Session.CloseAsync(SessionCloseCode.Replaced);
        }

        RendezvousLog.Attached(_logger, device, attachment.Epoch, connection.RemoteEndPoint?.ToString() ?? "?");
        NatTelemetry.Attached.Add(1);
        PeerLinkException? failure = null;
        try
        {
            await AnnounceAsync(session.RemotePeerId, attachment.Epoch, attached: true).ConfigureAwait(false);
            var welcome = new Welcome(RendezvousWire.Version, attachment.Epoch, (int)_options.KeepAliveInterval.TotalMilliseconds, connection.RemoteEndPoint?.ToString(), StunEndPoint?.Port ?? 0);
            await session.SendAsync(RendezvousWire.Serialize(welcome), _stopping.Token).ConfigureAwait(false);
            while (await session.ReceiveAsync(_stopping.Token).ConfigureAwait(false) is { } message)
            {
                if (!message.IsRequest || RendezvousWire.Deserialize(message.Payload) is not ConnectRequest request)
                {
                    throw new PeerLinkException(PeerLinkError.ProtocolViolation, "A device may send only connect requests and acknowledgements.");
                }

                ConnectReply reply = await ConnectAsync(attachment, request).ConfigureAwait(false);
                await session.RespondAsync(message, RendezvousWire.Serialize(reply), _stopping.Token).ConfigureAwait(false);
            }
        }
        catch (PeerLinkException e)
        {
            failure = e;
        }
        catch (OperationCanceledException)
        {
        }

        bool wasCurrent;
        lock (_gate)
        {
            wasCurrent = _attached.TryGetValue(session.RemotePeerId, out Attachment? current) && current == attachment;
            if (wasCurrent)
            {
                _attached.Remove(session.RemotePeerId);
            }
        }

        if (wasCurrent)
        {
            await AnnounceAsync(session.RemotePeerId, attachment.Epoch, attached: false).ConfigureAwait(false);
        }

        if (failure is { Error: PeerLinkError.InvalidMessagePack or PeerLinkError.ProtocolViolation or PeerLinkError.MessageTooLarge })
        {
            // A device that sends garbage is told so and dropped; it may attach again, and be dropped again.
            RendezvousLog.DeviceMisbehaved(_logger, device, failure.Error, failure.Message);
            await session.CloseAsync(failure.Error == PeerLinkError.MessageTooLarge ? SessionCloseCode.MessageTooLarge : SessionCloseCode.ProtocolViolation).ConfigureAwait(false);
        }

        RendezvousLog.Detached(_logger, device, attachment.Epoch, failure?.Error.ToString() ?? "closed");
        NatTelemetry.Attached.Add(-1);
        await session.DisposeAsync().ConfigureAwait(false);
        attachment.Ended.TrySetResult();
    }

    /// <summary>
    /// Decides a connect request: a callee attached here gets a circuit here; otherwise the tier's backplane (when there
    /// is one) asks the node that holds the callee, and the caller opens its relay connection to that node.
    /// </summary>
    private async ValueTask<ConnectReply> ConnectAsync(Attachment caller, ConnectRequest request)
    {
        if (request.Target is not { Length: PeerId.Size })
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "A connect request names a PeerId of the wrong length.");
        }

        var target = new PeerId(request.Target);
        PeerId from = caller.Session.RemotePeerId;
        if (!caller.TryTakeRequest(_time))
        {
            return Refuse(PeerLinkError.RelayLimitExceeded, $"more than {_options.MaxConnectRequestsPerSecond} connect requests per second");
        }

        if (target == from)
        {
            return Refuse(PeerLinkError.PeerNotFound, "a device cannot connect to itself");
        }

        if (IsAttached(target) || _backplane is null)
        {
            return ToReply(CreateCircuit(from, target, callerIsLocal: true), relayHere: true);
        }

        RoutedConnectReply? routed;
        try
        {
            routed = await _backplane.RouteConnectAsync(new RoutedConnect(from, target, caller.Epoch), _stopping.Token).ConfigureAwait(false);
        }
        catch (PeerLinkException e)
        {
            RendezvousLog.TierFailed(_logger, "route a connect request", e.Message);
            return Refuse(PeerLinkError.TierUnavailable, "the rendezvous tier did not answer");
        }

        if (routed is null)
        {
            return Refuse(PeerLinkError.PeerNotFound, $"peer {target.ToFingerprint()} is not attached to any node of the rendezvous tier");
        }

        RendezvousLog.RelayRouted(_logger, from.ToFingerprint(), target.ToFingerprint(), routed.RelayEndPoint ?? "?", routed.Error?.ToString() ?? "ready");
        if (routed.TargetEpoch > 0)
        {
            ((IRendezvousTierNode)this).Evict(target, routed.TargetEpoch);   // every routed message carries an epoch
        }

        return ToReply(routed, relayHere: false);

        static ConnectReply Refuse(PeerLinkError error, string reason) => new((int)error, 0, null, reason);
    }

    private static ConnectReply ToReply(RoutedConnectReply reply, bool relayHere) => reply.Error is { } error
        ? new ConnectReply((int)error, 0, null, reply.Reason)
        : new ConnectReply(0, reply.Circuit, reply.Token.ToArray(), null, relayHere ? null : reply.RelayEndPoint);

    /// <inheritdoc/>
    ValueTask<RoutedConnectReply> IRendezvousTierNode.ConnectRoutedAsync(RoutedConnect request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.CallerEpoch > 0)
        {
            ((IRendezvousTierNode)this).Evict(request.Caller, request.CallerEpoch);   // a stale copy of the caller here goes
        }

        return ValueTask.FromResult(CreateCircuit(request.Caller, request.Target, callerIsLocal: false));
    }

    /// <inheritdoc/>
    void IRendezvousTierNode.Evict(PeerId device, long epoch)
    {
        Attachment? stale = null;
        lock (_gate)
        {
            if (_attached.TryGetValue(device, out Attachment? current) && current.Epoch < epoch)
            {
                stale = current;
                _attached.Remove(device);
            }
        }

        if (stale is not null)
        {
            RendezvousLog.AttachmentReplaced(_logger, device.ToFingerprint(), stale.Epoch, epoch);
            _ = stale.Session.CloseAsync(SessionCloseCode.Replaced);
            Run(async () => await AnnounceAsync(device, stale.Epoch, attached: false).ConfigureAwait(false));   // requests for it stop coming here
        }
    }

    /// <summary>
    /// Epochs order a device's attachments across the tier: microseconds of the node's UTC clock, and always above the
    /// node's previous one (nodes' clocks are assumed within a second of each other; a device that re-attaches within
    /// that second of skew may be evicted by its own older attachment and then attaches again).
    /// </summary>
    private long NextEpochLocked()
    {
        long now = _time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;
        _epoch = Math.Max(_epoch + 1, now);
        return _epoch;
    }

    private async ValueTask AnnounceAsync(PeerId device, long epoch, bool attached)
    {
        if (_backplane is null)
        {
            return;
        }

        try
        {
            ValueTask announced = attached
                ? _backplane.AttachedAsync(device, epoch, _stopping.Token)
                : _backplane.DetachedAsync(device, epoch, CancellationToken.None);
            await announced.ConfigureAwait(false);
        }
        catch (Exception e) when (e is PeerLinkException or OperationCanceledException or ObjectDisposedException)
        {
            // The device stays reachable from devices attached here; the tier learns of it when the backplane is back.
            RendezvousLog.TierFailed(_logger, attached ? "announce an attachment" : "withdraw an attachment", e.Message);
        }
    }

    /// <summary>Finds the callee here, checks the limits, creates the circuit and tells the callee.</summary>
    private RoutedConnectReply CreateCircuit(PeerId from, PeerId target, bool callerIsLocal)
    {
        RelayCircuit circuit;
        Attachment? callee;
        lock (_gate)
        {
            if (target == from || !_attached.TryGetValue(target, out callee))
            {
                return Refuse(PeerLinkError.PeerNotFound, $"peer {target.ToFingerprint()} is not attached to {(callerIsLocal ? "this rendezvous node" : "the node that answered")}");
            }

            if (_circuits.Count >= _options.MaxRelays)
            {
                return Refuse(PeerLinkError.RelayLimitExceeded, $"the node relays {_options.MaxRelays} sessions already");
            }

            if (RelaysOf(from) >= _options.MaxRelaysPerDevice || RelaysOf(target) >= _options.MaxRelaysPerDevice)
            {
                return Refuse(PeerLinkError.RelayLimitExceeded, $"a device may take part in {_options.MaxRelaysPerDevice} relayed sessions at once");
            }

            circuit = new RelayCircuit(++_nextCircuit, from, target);
            _circuits[circuit.Id] = circuit;
            _tokens[TokenKey(circuit.CallerToken)] = (circuit, true);
            _tokens[TokenKey(circuit.CalleeToken)] = (circuit, false);
            _relaysPerDevice[from] = RelaysOf(from) + 1;
            _relaysPerDevice[target] = RelaysOf(target) + 1;
        }

        circuit.Timer = _time.CreateTimer(
            static state =>
            {
                var (server, c) = ((RendezvousServer, RelayCircuit))state!;
                if (!c.IsJoined)
                {
                    server.Run(() => server.EndAsync(c, PeerLinkError.PeerNotFound, "the peer did not join the relayed session in time"));
                }
            },
            (this, circuit),
            _options.RelayJoinTimeout,
            Timeout.InfiniteTimeSpan);
        RendezvousLog.RelayRequested(_logger, circuit.Id, from.ToFingerprint(), target.ToFingerprint());
        byte[] incoming = RendezvousWire.Serialize(new IncomingRelay(circuit.Id, from.ToArray(), circuit.CalleeToken));
        ValueTask sent = callee.Session.SendAsync(incoming);
        if (!sent.IsCompletedSuccessfully)
        {
            Run(async () =>
            {
                try
                {
                    await sent.ConfigureAwait(false);
                }
                catch (PeerLinkException)
                {
                    await EndAsync(circuit, PeerLinkError.PeerNotFound, "the peer's attachment failed").ConfigureAwait(false);
                }
            });
        }

        return new RoutedConnectReply(null, null, circuit.Id, circuit.CallerToken, RelayEndPoint, callee.Epoch);

        static RoutedConnectReply Refuse(PeerLinkError error, string reason) => RoutedConnectReply.Refused(error, reason);
    }

    private int RelaysOf(PeerId device) => _relaysPerDevice.TryGetValue(device, out int n) ? n : 0;

    private static UInt128 TokenKey(ReadOnlySpan<byte> token) => System.Buffers.Binary.BinaryPrimitives.ReadUInt128LittleEndian(token);

    private async Task JoinRelayAsync(PeerConnection connection, byte version, UInt128 token)
    {
        RelayCircuit? circuit = null;
        bool isCaller = false;
        bool complete = false;
        if (version == RendezvousWire.Version)
        {
            lock (_gate)
            {
                if (_tokens.Remove(token, out (RelayCircuit Circuit, bool IsCaller) entry) && !entry.Circuit.IsEnded)
                {
                    (circuit, isCaller) = entry;
                    complete = circuit.Join(isCaller, connection);
                }
            }
        }

        if (circuit is null)
        {
            RendezvousLog.UnknownRelayToken(_logger, connection.RemoteEndPoint?.ToString() ?? "?");
            connection.Abort();
            await connection.DisposeAsync().ConfigureAwait(false);
            return;
        }

        if (!complete)
        {
            return;   // the first side waits, unread, for the second (or for the join timeout)
        }

        circuit.Timer?.Dispose();   // the join timeout; the duration limit replaces it
        circuit.Timer = _time.CreateTimer(
            static state =>
            {
                var (server, c) = ((RendezvousServer, RelayCircuit))state!;
                server.Run(() => server.EndAsync(c, PeerLinkError.RelayLimitExceeded, $"the relayed session reached the node's limit of {server._options.MaxRelayDuration.TotalMinutes} minutes"));
            },
            (this, circuit),
            _options.MaxRelayDuration,
            Timeout.InfiniteTimeSpan);
        RendezvousLog.RelayJoined(_logger, circuit.Id);
        RelayPumpOutcome outcome = await circuit.SpliceAsync(_options.MaxRelayBytes).ConfigureAwait(false);
        Interlocked.Add(ref _relayedBytes, circuit.Bytes);
        switch (outcome)
        {
            case RelayPumpOutcome.ByteLimit:
                await EndAsync(circuit, PeerLinkError.RelayLimitExceeded, $"the relayed session reached the node's limit of {_options.MaxRelayBytes} bytes").ConfigureAwait(false);
                break;
            case RelayPumpOutcome.Failed:
                await EndAsync(circuit, null, "a connection failed").ConfigureAwait(false);
                break;
            default:
                await EndAsync(circuit, null, "both sides finished").ConfigureAwait(false);
                break;
        }
    }

    /// <summary>
    /// Ends a circuit once: forgets it, and for a limit tells both devices why (they report it to their sessions) before
    /// it resets the connections, so that the devices see the reason rather than a bare reset.
    /// </summary>
    private async Task EndAsync(RelayCircuit circuit, PeerLinkError? error, string reason)
    {
        if (!circuit.TryEnd())
        {
            return;
        }

        Attachment? caller;
        Attachment? callee;
        lock (_gate)
        {
            _circuits.Remove(circuit.Id);
            _tokens.Remove(TokenKey(circuit.CallerToken));
            _tokens.Remove(TokenKey(circuit.CalleeToken));
            Decrement(circuit.Caller);
            Decrement(circuit.Callee);
            _attached.TryGetValue(circuit.Caller, out caller);
            _attached.TryGetValue(circuit.Callee, out callee);
        }

        RendezvousLog.RelayEnded(_logger, circuit.Id, circuit.Bytes, reason);
        if (error is { } code)
        {
            byte[] notice = RendezvousWire.Serialize(new RelayEnded(circuit.Id, (int)code, reason));
            await Task.WhenAll(Notify(caller, notice), Notify(callee, notice)).ConfigureAwait(false);
        }

        circuit.Abort();

        await circuit.DisposeConnectionsAsync().ConfigureAwait(false);

        void Decrement(PeerId device)
        {
            int n = RelaysOf(device) - 1;
            if (n > 0)
            {
                _relaysPerDevice[device] = n;
            }
            else
            {
                _relaysPerDevice.Remove(device);
            }
        }

        async Task Notify(Attachment? attachment, byte[] notice)
        {
            if (attachment is null)
            {
                return;
            }

            try
            {
                await attachment.Session.RequestAsync(notice, _stopping.Token).WaitAsync(RelayEndedWait, _time).ConfigureAwait(false);
            }
            catch (Exception e) when (e is PeerLinkException or TimeoutException or OperationCanceledException or ObjectDisposedException)
            {
                // The device will see the reset alone.
            }
        }
    }

    /// <summary>One attached device.</summary>
    private sealed class Attachment(SecureSession session, long epoch, long timestamp, int requestsPerSecond)
    {
        private readonly Lock _gate = new();
        private double _tokens = requestsPerSecond * 2;
        private long _refilledAt = timestamp;

        public SecureSession Session { get; } = session;

        public long Epoch { get; } = epoch;

        /// <summary>Completed once the attachment is forgotten and its session disposed.</summary>
        public TaskCompletionSource Ended { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>A token bucket: <c>requestsPerSecond</c> on average, bursts of twice as many.</summary>
        public bool TryTakeRequest(TimeProvider time)
        {
            lock (_gate)
            {
                long now = time.GetTimestamp();
                _tokens = Math.Min(requestsPerSecond * 2, _tokens + (time.GetElapsedTime(_refilledAt, now).TotalSeconds * requestsPerSecond));
                _refilledAt = now;
                if (_tokens < 1)
                {
                    return false;
                }

                _tokens -= 1;
                return true;
            }
        }
    }
}
