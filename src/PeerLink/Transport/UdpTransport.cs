// Secure sessions over UDP (docs/protocol.md §11): one socket per port carries every session (told apart by the
// receiver index the receiving side chose), their handshakes, and STUN. The handshake is the session's Noise IK or XX,
// each message in one datagram, retransmitted by the initiator on a jittered, doubling timer; the responder answers a
// repeated initiation with the response it already sent (it never runs the handshake twice), and under load demands a
// cookie before it spends any Diffie-Hellman (HandshakeCookies.cs). After the handshake each session is a
// DatagramConnection: sealed datagrams with the counter as the nonce, and reliable, ordered delivery of the session's
// records on top, so that a SecureSession over UDP offers exactly what one over TCP does.
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Internal;
using PeerLink.Security;
using PeerLink.Security.Noise;
using PeerLink.Sessions;
using PeerLink.Transport.Datagrams;

namespace PeerLink.Transport;

/// <summary>
/// A UDP socket that opens and accepts <see cref="SecureSession"/>s: the same API, guarantees and authentication as
/// sessions over TCP, without head-of-line blocking between sessions and through NATs that let UDP pass.
/// </summary>
/// <remarks>
/// Create one with <see cref="Bind"/>; open sessions with <see cref="ConnectAsync"/>, take incoming ones with
/// <see cref="AcceptAsync"/>. Disposing the transport aborts its sessions. Thread-safe.
/// </remarks>
public sealed class UdpTransport : IAsyncDisposable, IDatagramSender
{
    private static long s_next;
    private static ReadOnlySpan<byte> PrologueMagic => "PLDG"u8;

    private readonly Socket _socket;
    private readonly SecureSessionOptions _options;
    private readonly UdpTransportOptions _udp;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly DatagramConnectionSettings _settings;
    private readonly ConcurrentDictionary<uint, object> _byIndex = new();
    private readonly ConcurrentDictionary<(SocketAddress Source, uint Sender), Responded> _responded = new();
    private readonly Channel<SecureSession> _accepted;
    private readonly CookieChecker _cookies;
    private readonly HandshakeMacKeys _ownMacKeys;
    private readonly HandshakeMacKeys _anonymousMacKeys;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _receiveLoop;
    private int _pendingResponders;
    private long _handshakesRun;
    private int _disposed;

    private UdpTransport(Socket socket, SecureSessionOptions options, UdpTransportOptions udp, ILoggerFactory? loggerFactory)
    {
        _socket = socket;
        _options = options;
        _udp = udp;
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        _logger = _loggerFactory.CreateLogger<UdpTransport>();
        _time = options.TimeProvider;
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
        _settings = new DatagramConnectionSettings
        {
            Time = _time,
            ReceiveWindowBytes = udp.ReceiveWindowBytes,
            SendBufferBytes = udp.SendBufferBytes,
            DeliveryTimeout = udp.DeliveryTimeout,
            KeepAliveInterval = udp.KeepAliveInterval,
            KeepAliveIdleLimit = udp.KeepAliveIdleLimit,
        };
        _accepted = Channel.CreateBounded<SecureSession>(new BoundedChannelOptions(udp.MaxAcceptQueue) { FullMode = BoundedChannelFullMode.DropWrite });
        _cookies = new CookieChecker(_time, udp.HandshakesPerSecondBeforeCookies);
        _ownMacKeys = HandshakeMacKeys.From(options.Identity!.PeerId.ToArray());
        _anonymousMacKeys = HandshakeMacKeys.From(options.NetworkKey is { } key ? key.Bytes : default);
        _receiveLoop = ReceiveLoopAsync();
    }

    /// <summary>The bound endpoint, with the real port when port 0 was asked for.</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>
    /// Takes every STUN datagram that arrives on this transport's socket (a copy, and its source), on the receive loop:
    /// hand the work off at once. Set by PeerLink.Nat's STUN client.
    /// </summary>
    internal Action<byte[], IPEndPoint>? StunReceived { get; set; }

    /// <summary>Sends a datagram that is not a session's (a STUN request) from this transport's socket.</summary>
    /// <exception cref="PeerLinkException">The socket cannot send to <paramref name="remote"/>.</exception>
    internal void SendRaw(ReadOnlySpan<byte> datagram, IPEndPoint remote)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        try
        {
            _socket.SendTo(datagram, SocketFlags.None, remote);
        }
        catch (SocketException e)
        {
            throw SocketErrors.Map(e, $"Cannot send to {remote}");
        }
    }

    /// <summary>
    /// False for a transport that only carries punched paths (PeerLink.Nat's rendezvous client owns one): handshake
    /// initiations are then dropped, since nothing would accept their sessions.
    /// </summary>
    internal bool AcceptsSessions { get; set; } = true;

    /// <summary>
    /// Reserves a receiver index for a punch attempt: every probe datagram (type 0x86) that names it goes to
    /// <paramref name="onProbe"/> (the datagram, a copy, and its source), on the receive loop. Kept until
    /// <see cref="ReleasePunchIndex"/>, or, once a connection was opened on the index, until that connection ends.
    /// </summary>
    internal uint ReservePunchIndex(Action<byte[], IPEndPoint> onProbe)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var target = new PunchTarget(onProbe);
        uint index = Register(target);
        target.Index = index;
        return index;
    }

    /// <summary>Reserves a given punch index (on a transport made for one punched path, whose peer already knows it).</summary>
    internal void ReservePunchIndex(uint index, Action<byte[], IPEndPoint> onProbe)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (index == 0 || !_byIndex.TryAdd(index, new PunchTarget(onProbe) { Index = index }))
        {
            throw new InvalidOperationException("The punch index is taken.");
        }
    }

    /// <summary>
    /// A transport on another socket with this one's identity and settings, that accepts no sessions: birthday probing
    /// finds its path on one of many sockets, and that socket then carries the path.
    /// </summary>
    internal UdpTransport CreateSibling(Socket socket) => new(socket, _options, _udp, _loggerFactory) { AcceptsSessions = false };

    /// <summary>Gives up a punch index on which no connection was opened (a failed attempt).</summary>
    internal void ReleasePunchIndex(uint index)
    {
        if (_byIndex.TryGetValue(index, out object? entry) && entry is PunchTarget)
        {
            _byIndex.TryRemove(KeyValuePairFor(index, entry));
        }
    }

    /// <summary>
    /// Opens a datagram connection on a punched path: keys derived by the caller from an end-to-end session, the peer's
    /// receiver index and the address the checks proved. Probes to the index are still answered while it lives, so that
    /// a peer whose nomination answer was lost hears it again.
    /// </summary>
    internal PeerConnection OpenPunched(uint localIndex, uint remoteIndex, IPEndPoint remote, ReadOnlySpan<byte> sendKey, ReadOnlySpan<byte> receiveKey)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!_byIndex.TryGetValue(localIndex, out object? entry) || entry is not PunchTarget target)
        {
            throw new InvalidOperationException("The punch index is not reserved.");
        }

        var send = new NoiseCipherState(NoiseCipherKind.ChaChaPoly);
        var receive = new NoiseCipherState(NoiseCipherKind.ChaChaPoly);
        send.InitializeKey(sendKey);
        receive.InitializeKey(receiveKey);
        var keys = new DatagramKeys(send, receive, _time, _options.RekeyInterval, (ulong)Math.Max(1, _options.RekeyAfterMessages), TimeSpan.FromSeconds(10));
        string id = NewId();
        var connection = new DatagramConnection(keys, localIndex, remoteIndex, remote.Serialize(), this, _settings, id, LocalEndPoint, _logger, released =>
            _byIndex.TryRemove(KeyValuePairFor(released.LocalIndex, (object)released)))
        {
            ProbeTarget = target,
        };
        if (!_byIndex.TryUpdate(localIndex, connection, target))
        {
            connection.Abort();
            throw new InvalidOperationException("The punch index was released.");
        }

        connection.Start();
        return connection;
    }

    /// <summary>Handshake initiations that cost this node Diffie-Hellman operations (for tests of the cookie defence).</summary>
    internal long HandshakesRun => Interlocked.Read(ref _handshakesRun);

    /// <summary>Cookie replies sent instead of running a handshake.</summary>
    internal long CookieRepliesSent => _cookies.CookieRepliesSent;

    /// <summary>Live datagram connections (for tests).</summary>
    internal int ConnectionCount
    {
        get
        {
            int count = 0;
            foreach (var entry in _byIndex)
            {
                count += entry.Value is DatagramConnection ? 1 : 0;
            }

            return count;
        }
    }

    /// <summary>
    /// Binds a UDP socket on <paramref name="localEndPoint"/> (port 0 for any) that opens and accepts sessions with
    /// <paramref name="options"/>.
    /// </summary>
    /// <param name="localEndPoint">Where to listen.</param>
    /// <param name="options">The identity and session settings for every session of this transport.</param>
    /// <param name="udpOptions">UDP settings; defaults when null.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <exception cref="ArgumentException">The options are incomplete or inconsistent.</exception>
    /// <exception cref="PeerLinkException">The address is in use or not available here.</exception>
    public static UdpTransport Bind(IPEndPoint localEndPoint, SecureSessionOptions options, UdpTransportOptions? udpOptions = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(localEndPoint);
        ArgumentNullException.ThrowIfNull(options);
        SecureSessionOptions validated = options.Validate(nameof(options));
        UdpTransportOptions udp = (udpOptions ?? new UdpTransportOptions()).Validate(nameof(udpOptions));
        var socket = new Socket(localEndPoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            // Room for bursts: many sessions share this socket (the kernel may cap it lower: net.core.rmem_max).
            socket.ReceiveBufferSize = 4 * 1024 * 1024;
            socket.SendBufferSize = 4 * 1024 * 1024;
            try
            {
                // Path MTU probes must be dropped when too large, never fragmented (RFC 8899 §3).
                socket.DontFragment = true;
            }
            catch (Exception e) when (e is SocketException or NotSupportedException)
            {
            }
            socket.Bind(localEndPoint);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw SocketErrors.Map(e, $"Cannot bind UDP {localEndPoint}");
        }

        return new UdpTransport(socket, validated, udp, loggerFactory);
    }

    /// <summary>
    /// Opens a session to the peer at <paramref name="remoteEndPoint"/>: IK when <paramref name="expectedPeer"/> is given
    /// (one round trip), XX otherwise.
    /// </summary>
    /// <param name="remoteEndPoint">The peer's UDP address.</param>
    /// <param name="expectedPeer">The peer's PeerId when known.</param>
    /// <param name="cancellationToken">Cancels the handshake.</param>
    /// <exception cref="PeerLinkException">No answer within the handshake timeout, the handshake failed, or either side refused the other.</exception>
    public async Task<SecureSession> ConnectAsync(IPEndPoint remoteEndPoint, PeerId? expectedPeer = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(remoteEndPoint);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (remoteEndPoint.AddressFamily != _socket.AddressFamily)
        {
            throw new ArgumentException($"The transport is bound to {LocalEndPoint}; it cannot reach {remoteEndPoint}.", nameof(remoteEndPoint));
        }

        using var scope = new HandshakeScope(_options, _loggerFactory, cancellationToken, initiator: true);
        var pending = new PendingInitiation(remoteEndPoint.Serialize());
        uint index = Register(pending);
        string id = NewId();
        try
        {
            (HandshakeOutcome outcome, DatagramConnection connection) = await InitiateAsync(pending, index, expectedPeer, id, scope).ConfigureAwait(false);
            return await SecureSession.FinishEstablishAsync(connection, KeylessRecords(outcome), outcome, initiator: true, _options, scope, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _byIndex.TryRemove(KeyValuePairFor(index, pending));
            Exception error = SessionHandshake.Translate(e, _options, cancellationToken);
            scope.NoteFailure(error);
            if (error is PeerLinkException { Error: PeerLinkError.HandshakeTimeout })
            {
                error = new PeerLinkException(PeerLinkError.HandshakeTimeout,
                    $"No handshake answer from {remoteEndPoint} within {_options.HandshakeTimeout.TotalSeconds} s (nothing listens there, the path drops UDP{(expectedPeer.HasValue ? ", or the peer there is not " + expectedPeer.Value.ToFingerprint() + "…" : "")}).", e);
            }

            SessionLog.HandshakeFailed(scope.Logger, id, (error as PeerLinkException)?.Error ?? PeerLinkError.Unknown, error.Message);
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
            throw;   // not reached
        }
    }

    /// <summary>The next session a peer opened to this transport, established and authorized.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="ObjectDisposedException">The transport was disposed.</exception>
    public async ValueTask<SecureSession> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException(nameof(UdpTransport));
        }
    }

    /// <summary>Stops receiving, aborts every session of this transport and closes the socket. Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Cancel();
        _accepted.Writer.TryComplete();
        foreach (var entry in _byIndex)
        {
            if (entry.Value is DatagramConnection connection)
            {
                connection.Abort(new PeerLinkException(PeerLinkError.ConnectionAborted, "The UDP transport was disposed."));
            }
            else if (entry.Value is PendingInitiation pending)
            {
                pending.Inbox.Writer.TryComplete();
            }
        }

        while (_accepted.Reader.TryRead(out SecureSession? session))
        {
            await session.DisposeAsync().ConfigureAwait(false);
        }

        _socket.Dispose();
        try
        {
            await _receiveLoop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    // ------------------------------------------------------------------ initiator

    private async Task<(HandshakeOutcome, DatagramConnection)> InitiateAsync(PendingInitiation pending, uint index, PeerId? expected, string id, HandshakeScope scope)
    {
        bool ik = expected.HasValue;
        bool psk = _options.NetworkKey is not null;
        byte pattern = SessionWire.PatternByte(ik, psk, _options.PreferAesGcm);
        NoiseProtocol protocol = SessionWire.Protocol(ik, psk, _options.PreferAesGcm);
        HandshakeMacKeys macKeys = ik ? HandshakeMacKeys.From(expected!.Value.ToArray()) : _anonymousMacKeys;
        using var handshake = new NoiseHandshakeState(protocol, initiator: true, Prologue(pattern), _options.Identity!.KeyPair, expected?.ToArray(), psk ? [_options.NetworkKey!.Bytes] : null);
        PooledBufferWriter hello = SessionHandshake.Hello(_options);
        byte[] initiation;
        try
        {
            int messageLength = handshake.WriteMessage(ik ? hello.WrittenMemory.Span : default, scope.Message);
            initiation = new byte[DatagramWire.InitiationHeaderSize + messageLength + (2 * DatagramWire.MacSize)];
            initiation[0] = DatagramWire.Initiation;
            initiation[1] = SessionWire.Version;
            initiation[2] = pattern;
            BinaryPrimitives.WriteUInt32BigEndian(initiation.AsSpan(4), index);
            scope.Message.AsSpan(0, messageLength).CopyTo(initiation.AsSpan(DatagramWire.InitiationHeaderSize));
            int mac1At = initiation.Length - (2 * DatagramWire.MacSize);
            HandshakeMacKeys.Mac(macKeys.Mac1Key, initiation.AsSpan(0, mac1At), initiation.AsSpan(mac1At, DatagramWire.MacSize));

            byte[]? cookie = null;
            TimeSpan interval = _udp.HandshakeRetransmitInterval;
            while (true)
            {
                int mac2At = initiation.Length - DatagramWire.MacSize;
                if (cookie is not null)
                {
                    HandshakeMacKeys.Mac(cookie, initiation.AsSpan(0, mac2At), initiation.AsSpan(mac2At));
                }

                Send(initiation, pending.Remote);
                (byte[] Datagram, SocketAddress From)? received = await WaitAsync(pending, Jitter(interval), scope.Timeout).ConfigureAwait(false);
                if (received is null)
                {
                    interval = interval * 2 > TimeSpan.FromSeconds(2) ? TimeSpan.FromSeconds(2) : interval * 2;
                    continue;
                }

                byte[] datagram = received.Value.Datagram;
                if (datagram[0] == DatagramWire.CookieReply)
                {
                    var opened = new byte[DatagramWire.CookieSize];
                    if (macKeys.TryOpenCookie(datagram, initiation.AsSpan(mac1At, DatagramWire.MacSize), opened))
                    {
                        cookie = opened;     // resend at once, now with mac2
                    }

                    continue;
                }

                if (datagram[0] != DatagramWire.Response || datagram.Length < DatagramWire.ResponseHeaderSize || !received.Value.From.Equals(pending.Remote))
                {
                    continue;
                }

                uint responderIndex = BinaryPrimitives.ReadUInt32BigEndian(datagram.AsSpan(4));
                int payloadLength = handshake.ReadMessage(datagram.AsSpan(DatagramWire.ResponseHeaderSize), scope.Payload);
                SessionHello remote = SessionHello.Read(scope.Payload.AsMemory(0, payloadLength), _options.ApplicationId);
                PeerId remoteId = new PeerId(handshake.RemoteStaticPublicKey);
                if (remote.ApplicationId != _options.ApplicationId)
                {
                    throw new PeerLinkException(PeerLinkError.PeerRefused, $"The peer runs application '{remote.ApplicationId}', not '{_options.ApplicationId}'.");
                }

                if (!(ik && remoteId == expected) && !await SessionHandshake.IsAllowedAsync(_options, remoteId, scope.Logger, scope.Timeout).ConfigureAwait(false))
                {
                    throw new PeerLinkException(PeerLinkError.PeerRefused, $"Peer {remoteId.ToFingerprint()}… is not authorized here.");
                }

                byte[]? finish = null;
                if (!ik)
                {
                    int length = handshake.WriteMessage(hello.WrittenMemory.Span, scope.Message);
                    finish = new byte[DatagramWire.FinishHeaderSize + length];
                    finish[0] = DatagramWire.Finish;
                    BinaryPrimitives.WriteUInt32BigEndian(finish.AsSpan(4), responderIndex);
                    BinaryPrimitives.WriteUInt32BigEndian(finish.AsSpan(8), index);
                    scope.Message.AsSpan(0, length).CopyTo(finish.AsSpan(DatagramWire.FinishHeaderSize));
                }

                var outcome = new HandshakeOutcome(handshake.Split(), protocol, remoteId, remote, handshake.HandshakeHash.ToArray(), Refused: false);
                DatagramConnection connection = CreateConnection(outcome, index, responderIndex, pending.Remote, id);
                if (!_byIndex.TryUpdate(index, connection, pending))
                {
                    connection.Abort();
                    throw new PeerLinkException(PeerLinkError.ConnectionAborted, "The UDP transport was disposed during the handshake.");
                }

                if (finish is not null)
                {
                    Send(finish, pending.Remote);
                    connection.SetHandshakeTail(finish);
                }

                connection.Start();
                return (outcome, connection);
            }
        }
        finally
        {
            PooledBufferWriter.Return(hello);
        }
    }

    private async Task<(byte[] Datagram, SocketAddress From)?> WaitAsync(PendingInitiation pending, TimeSpan wait, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(wait, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellationToken);
        try
        {
            return await pending.Inbox.Reader.ReadAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return null;
        }
        catch (ChannelClosedException)
        {
            throw new PeerLinkException(PeerLinkError.ConnectionAborted, "The UDP transport was disposed during the handshake.");
        }
    }

    private static TimeSpan Jitter(TimeSpan interval) => interval * (0.75 + (Random.Shared.NextDouble() * 0.5));

    // ------------------------------------------------------------------ receive and responder

    private async Task ReceiveLoopAsync()
    {
        await Task.Yield();
        byte[] buffer = GC.AllocateUninitializedArray<byte>(DatagramWire.MaxDatagramSize + 1);
        var address = new SocketAddress(_socket.AddressFamily);
        int burst = 0;
        while (!_stop.IsCancellationRequested)
        {
            int received;
            try
            {
                received = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, address, _stop.Token).ConfigureAwait(false);
            }
            catch (SocketException e) when (SocketErrors.IsTransientDatagramError(e))
            {
                continue;
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException or SocketException)
            {
                return;
            }

            if (received > DatagramWire.MaxDatagramSize)
            {
                continue;   // larger than anything PeerLink sends
            }

            // While the socket holds more, sessions only take in what arrives; once it is drained (or after a bounded
            // burst) each touched session hands its data over and answers once.
            bool more;
            try
            {
                more = burst < MaxBurst && _socket.Available > 0;
            }
            catch (ObjectDisposedException)
            {
                return;   // disposed between the receive and this look
            }

            burst = more ? burst + 1 : 0;
            try
            {
                Dispatch(buffer.AsSpan(0, received), address, more);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Input from the network never stops the loop.
                UdpLog.DatagramDropped(_logger, e.GetType().Name, e.Message);
            }

            if (!more)
            {
                foreach (DatagramConnection touched in _deferred)
                {
                    touched.FlushDeferred();
                }

                _deferred.Clear();
            }
        }
    }

    private const int MaxBurst = 32;
    private readonly System.Collections.Generic.List<DatagramConnection> _deferred = new();

    /// <summary>Handles one datagram as if it arrived on the socket from <paramref name="from"/> (fuzzing).</summary>
    internal void DispatchForFuzzing(ReadOnlySpan<byte> datagram, IPEndPoint from) => Dispatch(datagram, from.Serialize(), more: false);

    private void Dispatch(ReadOnlySpan<byte> datagram, SocketAddress from, bool more)
    {
        if (DatagramWire.IsStun(datagram))
        {
            // STUN shares the session socket, so that the address a STUN server sees is the one sessions use (punching
            // depends on it). A copy goes to whoever listens (PeerLink.Nat's client); nothing else is done with it.
            if (StunReceived is { } listener)
            {
                listener(datagram.ToArray(), (IPEndPoint)LocalEndPoint.Create(from));
            }

            return;
        }

        if (!DatagramWire.IsPeerLink(datagram))
        {
            return;   // strangers
        }

        switch (datagram[0])
        {
            case DatagramWire.Transport:
                if (_byIndex.TryGetValue(DatagramWire.ReceiverIndex(datagram), out object? target) && target is DatagramConnection connection)
                {
                    if (connection.OnDatagram(datagram, from, more) && !_deferred.Contains(connection))
                    {
                        _deferred.Add(connection);
                    }
                }

                break;
            case DatagramWire.Response:
            case DatagramWire.CookieReply:
                if (datagram.Length >= (datagram[0] == DatagramWire.Response ? DatagramWire.ResponseHeaderSize : DatagramWire.CookieReplySize)
                    && _byIndex.TryGetValue(DatagramWire.ReceiverIndex(datagram), out object? waiting) && waiting is PendingInitiation pending)
                {
                    pending.Inbox.Writer.TryWrite((datagram.ToArray(), Copy(from)));
                }

                break;
            case DatagramWire.Initiation:
                if (AcceptsSessions)
                {
                    OnInitiation(datagram, from);
                }

                break;
            case DatagramWire.Probe:
                if (datagram.Length >= DatagramWire.ProbeHeaderSize + DatagramWire.TagSize && _byIndex.TryGetValue(DatagramWire.ReceiverIndex(datagram), out object? probed))
                {
                    PunchTarget? punch = probed as PunchTarget ?? (probed as DatagramConnection)?.ProbeTarget;
                    punch?.OnProbe(datagram.ToArray(), (IPEndPoint)LocalEndPoint.Create(from));
                }

                break;
            case DatagramWire.Finish:
                if (datagram.Length > DatagramWire.FinishHeaderSize
                    && _byIndex.TryGetValue(DatagramWire.ReceiverIndex(datagram), out object? state) && state is PendingResponder responder)
                {
                    OnFinish(responder, datagram, from);
                }

                break;
        }
    }

    private void OnInitiation(ReadOnlySpan<byte> datagram, SocketAddress from)
    {
        const int MinimumMessage = 32;   // an ephemeral key at least
        if (datagram.Length < DatagramWire.InitiationHeaderSize + MinimumMessage + (2 * DatagramWire.MacSize)
            || datagram[1] != SessionWire.Version
            || !SessionWire.TryParsePattern(datagram[2], out bool ik, out bool psk, out bool aesGcm)
            || psk != (_options.NetworkKey is not null))
        {
            return;
        }

        int mac1At = datagram.Length - (2 * DatagramWire.MacSize);
        int mac2At = datagram.Length - DatagramWire.MacSize;
        HandshakeMacKeys macKeys = ik ? _ownMacKeys : _anonymousMacKeys;
        if (!HandshakeMacKeys.VerifyMac(macKeys.Mac1Key, datagram[..mac1At], datagram.Slice(mac1At, DatagramWire.MacSize)))
        {
            return;   // not meant for this key (or not PeerLink): one HMAC spent
        }

        uint sender = BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]);
        ReadOnlySpan<byte> source = from.Buffer.Span[..from.Size];
        if (_responded.TryGetValue((from, sender), out Responded? earlier) && datagram[..mac1At].SequenceEqual(earlier.Initiation))
        {
            Send(earlier.Response, from);   // a retransmission: the same answer, no new handshake
            return;
        }

        if (!_cookies.TryTakeUnverified() && !_cookies.VerifyMac2(source, datagram[..mac2At], datagram[mac2At..]))
        {
            Span<byte> reply = stackalloc byte[DatagramWire.CookieReplySize];
            _cookies.WriteCookieReply(reply, macKeys, sender, datagram.Slice(mac1At, DatagramWire.MacSize), source);
            Send(reply, from);
            return;
        }

        if (Volatile.Read(ref _pendingResponders) >= _udp.MaxPendingHandshakes)
        {
            SweepPendingResponders();
            if (Volatile.Read(ref _pendingResponders) >= _udp.MaxPendingHandshakes)
            {
                return;
            }
        }

        Interlocked.Increment(ref _handshakesRun);
        NoiseProtocol protocol = SessionWire.Protocol(ik, psk, aesGcm);
        var handshake = new NoiseHandshakeState(protocol, initiator: false, Prologue(datagram[2]), _options.Identity!.KeyPair, default, psk ? [_options.NetworkKey!.Bytes] : null);
        byte[] payload = ArrayPool<byte>.Shared.Rent(DatagramWire.MaxDatagramSize);
        byte[] message = ArrayPool<byte>.Shared.Rent(DatagramWire.MaxDatagramSize);
        bool handedOff = false;
        try
        {
            int payloadLength;
            try
            {
                payloadLength = handshake.ReadMessage(datagram[DatagramWire.InitiationHeaderSize..mac1At], payload);
            }
            catch (PeerLinkException)
            {
                return;   // not for our key, or not a valid message: nothing to answer
            }

            SessionHello? remote = null;
            if (ik)
            {
                try
                {
                    remote = SessionHello.Read(payload.AsMemory(0, payloadLength), _options.ApplicationId);
                }
                catch (PeerLinkException)
                {
                    return;
                }
            }

            PooledBufferWriter hello = SessionHandshake.Hello(_options);
            int length;
            try
            {
                length = handshake.WriteMessage(hello.WrittenMemory.Span, message);
            }
            finally
            {
                PooledBufferWriter.Return(hello);
            }

            SocketAddress remoteAddress = Copy(from);
            var responder = new PendingResponder(handshake, sender, remoteAddress, protocol, _time.GetTimestamp());
            uint index = Register(responder);
            byte[] response = new byte[DatagramWire.ResponseHeaderSize + length];
            response[0] = DatagramWire.Response;
            BinaryPrimitives.WriteUInt32BigEndian(response.AsSpan(4), index);
            BinaryPrimitives.WriteUInt32BigEndian(response.AsSpan(8), sender);
            message.AsSpan(0, length).CopyTo(response.AsSpan(DatagramWire.ResponseHeaderSize));
            _responded[(remoteAddress, sender)] = new Responded(datagram[..mac1At].ToArray(), response, index);
            handedOff = true;
            if (ik)
            {
                // IK: the handshake is complete on this side; the initiator's first transport datagram confirms it.
                var outcome = new HandshakeOutcome(handshake.Split(), protocol, new PeerId(handshake.RemoteStaticPublicKey), remote!.Value, handshake.HandshakeHash.ToArray(), Refused: false);
                handshake.Dispose();
                Complete(responder, outcome, index);
            }
            else
            {
                Interlocked.Increment(ref _pendingResponders);
            }

            Send(response, remoteAddress);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(payload, clearArray: true);
            ArrayPool<byte>.Shared.Return(message, clearArray: true);
            if (!handedOff)
            {
                handshake.Dispose();
            }
        }
    }

    private void OnFinish(PendingResponder responder, ReadOnlySpan<byte> datagram, SocketAddress from)
    {
        uint sender = BinaryPrimitives.ReadUInt32BigEndian(datagram[8..]);
        if (sender != responder.InitiatorIndex || !from.Equals(responder.Remote))
        {
            return;
        }

        uint index = DatagramWire.ReceiverIndex(datagram);
        if (!_byIndex.TryRemove(KeyValuePairFor(index, responder)))
        {
            return;
        }

        Interlocked.Decrement(ref _pendingResponders);
        byte[] payload = ArrayPool<byte>.Shared.Rent(DatagramWire.MaxDatagramSize);
        try
        {
            int payloadLength = responder.Handshake.ReadMessage(datagram[DatagramWire.FinishHeaderSize..], payload);
            SessionHello remote = SessionHello.Read(payload.AsMemory(0, payloadLength), _options.ApplicationId);
            var outcome = new HandshakeOutcome(responder.Handshake.Split(), responder.Protocol, new PeerId(responder.Handshake.RemoteStaticPublicKey), remote, responder.Handshake.HandshakeHash.ToArray(), Refused: false);
            _byIndex[index] = responder;
            Complete(responder, outcome, index);
        }
        catch (PeerLinkException e)
        {
            _responded.TryRemove((responder.Remote, responder.InitiatorIndex), out _);
            UdpLog.DatagramDropped(_logger, nameof(PeerLinkException), e.Message);
        }
        finally
        {
            responder.Handshake.Dispose();
            ArrayPool<byte>.Shared.Return(payload, clearArray: true);
        }
    }

    /// <summary>A responder's handshake is complete: the connection starts, and authorization and ACCEPT run off the receive loop.</summary>
    private void Complete(PendingResponder responder, HandshakeOutcome outcome, uint index)
    {
        string id = NewId();
        DatagramConnection connection = CreateConnection(outcome, index, responder.InitiatorIndex, responder.Remote, id);
        _byIndex[index] = connection;
        connection.Start();
        _ = EstablishResponderAsync(connection, outcome, id);
    }

    private async Task EstablishResponderAsync(DatagramConnection connection, HandshakeOutcome outcome, string id)
    {
        using var scope = new HandshakeScope(_options, _loggerFactory, _stop.Token, initiator: false);
        try
        {
            bool allowed = outcome.Remote.ApplicationId == _options.ApplicationId
                && await SessionHandshake.IsAllowedAsync(_options, outcome.RemoteId, scope.Logger, scope.Timeout).ConfigureAwait(false);
            HandshakeOutcome decided = allowed ? outcome : outcome with { Refused = true };
            SecureSession session = await SecureSession.FinishEstablishAsync(connection, KeylessRecords(outcome), decided, initiator: false, _options, scope, _stop.Token).ConfigureAwait(false);
            if (!_accepted.Writer.TryWrite(session))
            {
                UdpLog.AcceptQueueFull(_logger, id);
                session.Abort();
                await session.DisposeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is PeerLinkException or OperationCanceledException or ObjectDisposedException)
        {
            // Refused, or the peer never confirmed: logged where it was decided; the connection is gone.
            scope.NoteFailure(e);
            connection.Abort();
        }
    }

    private DatagramConnection CreateConnection(HandshakeOutcome outcome, uint localIndex, uint remoteIndex, SocketAddress remote, string id)
    {
        var keys = new DatagramKeys(outcome.Transport.Send!, outcome.Transport.Receive!, _time, _options.RekeyInterval, (ulong)Math.Max(1, _options.RekeyAfterMessages), TimeSpan.FromSeconds(10));
        return new DatagramConnection(keys, localIndex, remoteIndex, remote, this, _settings, id, LocalEndPoint, _logger, released =>
        {
            _byIndex.TryRemove(KeyValuePairFor(released.LocalIndex, (object)released));
            foreach (var entry in _responded)
            {
                if (entry.Value.Index == released.LocalIndex)
                {
                    _responded.TryRemove(entry);
                }
            }
        });
    }

    /// <summary>The session's record layer over a datagram connection: the connection encrypts, so the records travel without a second key.</summary>
    private static NoiseTransport KeylessRecords(HandshakeOutcome outcome)
    {
        NoiseCipherKind kind = outcome.Protocol.Name.Contains("AESGCM", StringComparison.Ordinal) ? NoiseCipherKind.AesGcm : NoiseCipherKind.ChaChaPoly;
        return new NoiseTransport(new NoiseCipherState(kind), new NoiseCipherState(kind));
    }

    private void SweepPendingResponders()
    {
        long now = _time.GetTimestamp();
        foreach (var entry in _byIndex)
        {
            if (entry.Value is PendingResponder responder && _time.GetElapsedTime(responder.CreatedAt, now) > _options.HandshakeTimeout
                && _byIndex.TryRemove(entry))
            {
                Interlocked.Decrement(ref _pendingResponders);
                _responded.TryRemove((responder.Remote, responder.InitiatorIndex), out _);
                responder.Handshake.Dispose();
            }
        }
    }

    private uint Register(object entry)
    {
        Span<byte> random = stackalloc byte[4];
        while (true)
        {
            RandomNumberGenerator.Fill(random);
            uint index = BinaryPrimitives.ReadUInt32BigEndian(random);
            if (index != 0 && _byIndex.TryAdd(index, entry))
            {
                return index;
            }
        }
    }

    private static System.Collections.Generic.KeyValuePair<uint, object> KeyValuePairFor(uint index, object value) => new(index, value);

    /// <summary>Sends one datagram; a network error loses it, as the network may anyway.</summary>
    void IDatagramSender.Send(ReadOnlySpan<byte> datagram, SocketAddress remote) => Send(datagram, remote);

    private void Send(ReadOnlySpan<byte> datagram, SocketAddress remote)
    {
        try
        {
            _socket.SendTo(datagram, SocketFlags.None, remote);
        }
        catch (SocketException e)
        {
            UdpLog.SendFailed(_logger, e.SocketErrorCode);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private static byte[] Prologue(byte pattern)
    {
        byte[] prologue = new byte[SessionWire.PreambleSize];
        PrologueMagic.CopyTo(prologue);
        prologue[4] = SessionWire.Version;
        prologue[5] = pattern;
        return prologue;
    }

    private static SocketAddress Copy(SocketAddress address)
    {
        var copy = new SocketAddress(address.Family, address.Size);
        address.Buffer.Span[..address.Size].CopyTo(copy.Buffer.Span);
        return copy;
    }

    private static string NewId() => "udp-" + Interlocked.Increment(ref s_next).ToString(System.Globalization.CultureInfo.InvariantCulture);

    private sealed class PendingInitiation(SocketAddress remote)
    {
        public SocketAddress Remote { get; } = remote;

        public Channel<(byte[] Datagram, SocketAddress From)> Inbox { get; } = Channel.CreateBounded<(byte[], SocketAddress)>(new BoundedChannelOptions(8) { FullMode = BoundedChannelFullMode.DropWrite });
    }

    /// <summary>A reserved punch index and whoever checks its probes.</summary>
    internal sealed class PunchTarget(Action<byte[], IPEndPoint> onProbe)
    {
        public uint Index { get; set; }

        public Action<byte[], IPEndPoint> OnProbe { get; } = onProbe;
    }

    private sealed record PendingResponder(NoiseHandshakeState Handshake, uint InitiatorIndex, SocketAddress Remote, NoiseProtocol Protocol, long CreatedAt);

    private sealed record Responded(byte[] Initiation, byte[] Response, uint Index);
}

/// <summary>Log messages of the UDP transport. Event ids 1100-1199.</summary>
internal static partial class UdpLog
{
    [LoggerMessage(1101, LogLevel.Debug, "A datagram was dropped ({Kind}): {Reason}", EventName = "DatagramDropped")]
    public static partial void DatagramDropped(ILogger logger, string kind, string reason);

    [LoggerMessage(1102, LogLevel.Debug, "A UDP send failed: {SocketError}.", EventName = "UdpSendFailed")]
    public static partial void SendFailed(ILogger logger, SocketError socketError);

    [LoggerMessage(1103, LogLevel.Warning, "Connection {ConnectionId}: the accept queue is full; the session is dropped.", EventName = "UdpAcceptQueueFull")]
    public static partial void AcceptQueueFull(ILogger logger, string connectionId);
}
