// Reliable, ordered bytes over sealed datagrams (docs/protocol.md §11.5), so that the session's record layer runs over
// UDP unchanged. The design follows QUIC's loss recovery (RFC 9002) on one stream:
// - every transport datagram's counter is its packet number; the receiver acknowledges packet numbers in ranges (ACK
//   frames with up to 16 ranges, highest first), so one ACK reports many holes;
// - a packet is lost when three later packets were acknowledged (fast retransmit) or when it is 9/8 of the RTT older
//   than an acknowledged one; its stream bytes are sent again in a new packet;
// - the retransmission timeout follows RFC 6298 (SRTT, RTTVAR, RTO = SRTT + 4·RTTVAR, at least 200 ms, doubled on each
//   expiry); an expiry resends the oldest packet;
// - congestion control is NewReno (RFC 9002 §7, RFC 6582): slow start, congestion avoidance, one window reduction per
//   round trip of losses, the minimum window after a timeout; sends are paced (RFC 9002 §7.7);
// - flow control: the receiver announces how far the sender may send (MAX_DATA), and moves the limit only as the session
//   reads, so memory stays bounded at both ends.
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;

namespace PeerLink.Transport.Datagrams;

/// <summary>Sends datagrams for a connection; a network error loses the datagram, which recovery handles.</summary>
internal interface IDatagramSender
{
    void Send(ReadOnlySpan<byte> datagram, SocketAddress remote);
}

/// <summary>Settings of the delivery layer (protocol constants and <see cref="UdpTransportOptions"/>).</summary>
internal sealed record DatagramConnectionSettings
{
    public int MaxPayload { get; init; } = DatagramWire.BasePayloadSize;

    public int SendBufferBytes { get; init; } = 1 << 20;

    public int ReceiveWindowBytes { get; init; } = 1 << 20;

    public TimeSpan DeliveryTimeout { get; init; } = TimeSpan.FromSeconds(15);

    public TimeSpan MaxAckDelay { get; init; } = TimeSpan.FromMilliseconds(5);

    public TimeSpan MinRto { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>A PING goes out when nothing was sent for this long (NAT mappings stay open); zero: never.</summary>
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(25);

    /// <summary>Keepalives stop once the application has moved no data for this long; infinite: never.</summary>
    public TimeSpan KeepAliveIdleLimit { get; init; } = TimeSpan.FromMinutes(10);

    public TimeProvider Time { get; init; } = TimeProvider.System;
}

/// <summary>
/// One session's byte stream over UDP. The session writes to <see cref="PeerConnection.Transport"/>'s output; a pump moves
/// the bytes into the send buffer, from which packets are built as the congestion and flow windows allow. Datagrams that
/// arrive are handed in by the socket's receive loop (<see cref="OnDatagram"/>). One lock guards the state.
/// </summary>
internal sealed class DatagramConnection : PeerConnection, IDuplexPipe
{
    // Frame types inside a transport datagram's plaintext.
    internal const byte FramePadding = 0x00;
    internal const byte FramePing = 0x01;
    internal const byte FrameAck = 0x02;
    internal const byte FrameStream = 0x03;
    internal const byte FrameMaxData = 0x04;
    internal const byte FrameReset = 0x05;
    internal const byte FrameMessage = 0x06;       // length:u16 data: one whole unreliable message
    internal const byte FramePathChallenge = 0x07; // data[8]: answer with PATH_RESPONSE to the address it came from
    internal const byte FramePathResponse = 0x08;  // data[8]: the challenge's data
    private const byte StreamFin = 0x01;

    /// <summary>How far a sender may send before the receiver's first MAX_DATA.</summary>
    internal const int InitialWindow = 256 * 1024;

    private const int StreamHeaderSize = 12;        // type flags offset:u64 length:u16
    private const int MaxAckRanges = 16;
    private const int AckRangeSize = 12;            // end:u64 length:u32
    private const int PacketThreshold = 3;
    private const int MaxReorderPackets = 256;
    private const int ChunkSize = 64 * 1024;
    private static readonly TimeSpan MaxRto = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan InitialRto = TimeSpan.FromSeconds(1);

    private readonly object _gate = new();
    private readonly DatagramKeys _keys;
    private readonly IDatagramSender _sender;
    private readonly DatagramConnectionSettings _settings;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Action<DatagramConnection> _onReleased;
    private readonly Pipe _outgoing;     // session → us
    private readonly Pipe _incoming;     // us → session
    private readonly CancellationTokenSource _closed = new();
    private readonly ITimer _timer;
    private byte[] _packet = new byte[DatagramWire.InitialBufferSize];
    private byte[] _plaintext = new byte[DatagramWire.InitialBufferSize];
    private SocketAddress _remote;
    private Task _pump = Task.CompletedTask;

    // Send side: buffered stream bytes [_sendBase, _sendEnd) in chunks; [_sendBase, _ackedPrefix) is acknowledged.
    private readonly List<byte[]> _chunks = new();
    private long _chunkBase;
    private long _sendEnd;
    private long _nextNew;
    private long _ackedPrefix;
    private long _finOffset = -1;
    private bool _finSent;
    private bool _finAcked;
    private readonly RangeSet _ackedStream = new();
    private readonly RangeSet _lostStream = new();
    private long _peerLimit = InitialWindow;
    private readonly PeerLink.Internal.AsyncSignal _sendSpace = new();
    private bool _waitingForSpace;
    private readonly TaskCompletionSource _sendDone = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Sent packets, in packet number order (a ring).
    private SentPacket[] _sent = new SentPacket[64];
    private int _sentHead;
    private int _sentCount;
    private long _bytesInFlight;
    private long _largestAcked = -1;

    // Path MTU discovery (RFC 8899): the plaintext that fits one datagram now, and the probe in flight.
    private int _maxPayload;
    private int _probeStep;
    private int _probeFailures;
    private long _probeNumber = -1;
    private long _nextProbeAt;
    private long _probeSentAt;
    private long _lossTime = long.MaxValue;
    private long _lastAckElicitingSentAt;
    private long _lastSentAt;            // any datagram: what keeps the NAT mappings open
    private long _lastActivityAt;        // the application's data, either way: keepalives stop after a long silence
    private bool _pingNow;
    private bool _tailProbe;             // the PING going out is a tail loss probe, not a keepalive
    private bool _tailProbeSent;         // one per flight: reset when an acknowledgement brings progress
    private long _lastProgressAt;

    // Congestion control (NewReno) and RTT.
    private long _cwnd;
    private long _ssthresh = long.MaxValue;
    private long _recoveryStart = long.MinValue;
    private long _cwndBeforeRecovery;
    private long _ssthreshBeforeRecovery;
    private int _reorderPackets = PacketThreshold;
    private int _reorderTimeEighths = 9;
    private TimeSpan _srtt;
    private TimeSpan _rttVar;
    private TimeSpan _latestRtt;
    private bool _hasRtt;
    private int _rtoBackoff;
    private int _probesAllowed;
    private long _pacingBudgetBytes;
    private long _pacingAt;

    // Receive side.
    private readonly RangeSet _received = new();
    private long _largestReceived = -1;
    private long _largestReceivedAt;
    private int _ackElicitingUnacked;
    private long _firstUnackedAt;
    private bool _ackNow;
    private readonly SortedList<long, (byte[] Buffer, int Length)> _segments = new();
    private long _segmentBytes;
    private long _delivered;
    private long _advertisedLimit;
    private bool _limitDirty = true;
    private long _peerFin = -1;
    private bool _peerFinDelivered;
    private bool _flushPending;

    // Lifetime.
    private byte[]? _handshakeTail;      // XX message 3: resent until the peer's first authenticated datagram
    private bool _failed;
    private bool _released;
    private long _timerDueAt = long.MaxValue;
    private long _lingerUntil = long.MaxValue;
    private int _disposed;

    public DatagramConnection(DatagramKeys keys, uint localIndex, uint remoteIndex, SocketAddress remote, IDatagramSender sender,
        DatagramConnectionSettings settings, string connectionId, EndPoint? localEndPoint, ILogger logger, Action<DatagramConnection> onReleased)
    {
        _keys = keys;
        LocalIndex = localIndex;
        RemoteIndex = remoteIndex;
        _remote = remote;
        _sender = sender;
        _settings = settings;
        _time = settings.Time;
        _logger = logger;
        _onReleased = onReleased;
        ConnectionId = connectionId;
        LocalEndPoint = localEndPoint;
        // Small pipes: the send buffer and the held segments are where a window's worth of data waits, in buffers this
        // connection reuses; a pipe's segments come from the shared pool, which keeps only a few per core.
        _outgoing = new Pipe(new PipeOptions(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024, useSynchronizationContext: false));
        _incoming = new Pipe(new PipeOptions(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024, minimumSegmentSize: 16 * 1024, useSynchronizationContext: false));
        _maxPayload = settings.MaxPayload;
        _cwnd = Math.Min(10L * settings.MaxPayload, Math.Max(14720, 2L * settings.MaxPayload));
        _advertisedLimit = settings.ReceiveWindowBytes;
        _lastProgressAt = _time.GetTimestamp();
        _lastSentAt = _lastProgressAt;
        _lastActivityAt = _lastProgressAt;
        _timer = _time.CreateTimer(static s => ((DatagramConnection)s!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public uint LocalIndex { get; }

    /// <summary>On a punched path: who answers the peer's probes to this connection's index (null otherwise).</summary>
    internal UdpTransport.PunchTarget? ProbeTarget { get; init; }

    public uint RemoteIndex { get; }

    public override string ConnectionId { get; }

    public override IDuplexPipe Transport => this;

    public PipeReader Input => _incoming.Reader;

    public PipeWriter Output => _outgoing.Writer;

    public override EndPoint? LocalEndPoint { get; }

    public override EndPoint? RemoteEndPoint
    {
        get
        {
            lock (_gate)
            {
                try
                {
                    return new IPEndPoint(_remote.Family == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0).Create(_remote);
                }
                catch (ArgumentException)
                {
                    return null;
                }
            }
        }
    }

    public override CancellationToken ConnectionClosed => _closed.Token;

    /// <summary>Datagrams that opened (for tests that step a fake clock).</summary>
    internal long DatagramsReceived => Interlocked.Read(ref _datagramsReceived);

    private long _datagramsReceived;

    /// <summary>Tail loss probes sent (for tests and diagnostics).</summary>
    public long TailProbes { get; private set; }

    /// <summary>Keepalive PINGs sent (for tests and diagnostics).</summary>
    public long KeepAlivesSent { get; private set; }

    /// <summary>Packets declared lost and resent (for tests and diagnostics).</summary>
    public long Retransmissions { get; private set; }

    /// <summary>Retransmission timeouts that expired (for tests and diagnostics).</summary>
    public long Timeouts { get; private set; }

    /// <summary>The smoothed round trip, once measured.</summary>
    public TimeSpan SmoothedRtt
    {
        get
        {
            lock (_gate)
            {
                return _srtt;
            }
        }
    }

    /// <summary>The congestion window in bytes.</summary>
    public long CongestionWindow
    {
        get
        {
            lock (_gate)
            {
                return _cwnd;
            }
        }
    }

    /// <summary>Datagrams that did not open (replays, forgeries, stale key phases).</summary>
    public long RejectedDatagrams => Interlocked.Read(ref _rejected);

    private long _rejected;

    /// <summary>True while the send buffer is full and the pump waits for acknowledgements (for tests).</summary>
    internal bool IsWaitingForSendSpace
    {
        get
        {
            lock (_gate)
            {
                return _waitingForSpace;
            }
        }
    }

    /// <summary>True while the session has not read what was delivered, so the receive limit stays where it is (for tests).</summary>
    internal bool IsHoldingForReader
    {
        get
        {
            lock (_gate)
            {
                return _flushPending;
            }
        }
    }

    /// <summary>
    /// The peer's limit while this side waits at it with data to send and everything sent acknowledged; otherwise null
    /// (for tests).
    /// </summary>
    internal long? StoppedAtPeerLimit
    {
        get
        {
            lock (_gate)
            {
                return _bytesInFlight == 0 && _lostStream.IsEmpty && _nextNew == _peerLimit && _sendEnd > _peerLimit ? _peerLimit : null;
            }
        }
    }

    /// <summary>The receive limit this side last put in a MAX_DATA frame (for tests).</summary>
    internal long LimitSent
    {
        get
        {
            lock (_gate)
            {
                return _limitSent;
            }
        }
    }

    private long _limitSent;

    /// <summary>The keys, for tests of key updates.</summary>
    internal DatagramKeys Keys => _keys;

    /// <summary>XX: keeps <paramref name="datagram"/> (message 3) to resend until the peer's first authenticated datagram.</summary>
    public void SetHandshakeTail(byte[] datagram)
    {
        lock (_gate)
        {
            _handshakeTail = datagram;
            ArmTimerLocked(_time.GetTimestamp() + ToTicks(CurrentRto()));
        }
    }

    /// <summary>Starts the pump that takes what the session writes.</summary>
    public void Start() => _pump = PumpAsync();

    // Roaming: the address being validated, the challenge sent to it, and how many times.
    private SocketAddress? _from;
    private SocketAddress? _candidate;
    private readonly byte[] _challenge = new byte[8];
    private int _challengesSent;
    private long _challengeSentAt;

    /// <summary>Times the peer's address changed after a successful path challenge (for tests and diagnostics).</summary>
    public int Migrations { get; private set; }

    /// <summary>Raised (under the connection's lock: hand off at once) when the session moved to a new peer address.</summary>
    public Action<DatagramConnection>? RemoteAddressChanged { get; set; }

    private void StartPathValidationLocked(SocketAddress from)
    {
        if (_candidate is not null && _candidate.Equals(from))
        {
            return;   // already being validated
        }

        _candidate = new SocketAddress(from.Family, from.Size);
        from.Buffer.Span[..from.Size].CopyTo(_candidate.Buffer.Span);
        System.Security.Cryptography.RandomNumberGenerator.Fill(_challenge);
        _challengesSent = 0;
        SendChallengeLocked(_time.GetTimestamp());
    }

    private void SendChallengeLocked(long now)
    {
        if (_candidate is null)
        {
            return;
        }

        if (_challengesSent >= 3)
        {
            _candidate = null;     // no answer from there: stay where we are
            return;
        }

        _challengesSent++;
        _challengeSentAt = now;
        SendPathFrameLocked(FramePathChallenge, _challenge, _candidate);
        ArmTimerLocked(now + ToTicks(CurrentRto()));
    }

    private void OnPathResponseLocked(ReadOnlySpan<byte> data)
    {
        if (_candidate is null || !System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(data, _challenge))
        {
            return;
        }

        _remote = _candidate;
        _candidate = null;
        Migrations++;
        RemoteAddressChanged?.Invoke(this);
        _ackNow = true;     // let the peer hear from the new path at once
    }

    /// <summary>A PATH_CHALLENGE or PATH_RESPONSE, alone in a datagram, to <paramref name="to"/> (not necessarily the current address).</summary>
    private void SendPathFrameLocked(byte type, ReadOnlySpan<byte> data, SocketAddress to)
    {
        Span<byte> payload = stackalloc byte[9];
        payload[0] = type;
        data.CopyTo(payload[1..]);
        try
        {
            int size = _keys.Seal(_packet, RemoteIndex, payload, out _);
            _sender.Send(_packet.AsSpan(0, size), to);
        }
        catch (Exception e) when (e is ObjectDisposedException or PeerLinkException)
        {
        }
    }

    /// <summary>Takes unreliable messages (MESSAGE frames) as they arrive, on the socket's receive loop; the session sets it.</summary>
    public Action<ReadOnlySpan<byte>>? MessageReceived { get; set; }

    /// <summary>The largest unreliable message: what fits in one datagram beside an acknowledgement.</summary>
    public int MaxUnreliableMessageSize => _settings.MaxPayload - 6 - (MaxAckRanges * AckRangeSize) - 3;

    /// <summary>Unreliable messages dropped here because the congestion window was full (for tests and diagnostics).</summary>
    public long UnreliableDropped { get; private set; }

    /// <summary>
    /// Sends one unreliable message in a datagram of its own: never resent, and dropped here rather than queued when
    /// the congestion window is full. False when it was dropped (or the connection is gone).
    /// </summary>
    public bool SendUnreliable(ReadOnlySpan<byte> message)
    {
        if (message.Length > MaxUnreliableMessageSize)
        {
            throw new ArgumentOutOfRangeException(nameof(message), message.Length, $"An unreliable message is at most {MaxUnreliableMessageSize} bytes (one datagram).");
        }

        lock (_gate)
        {
            if (_failed || _released || _bytesInFlight + message.Length + DatagramWire.TransportHeaderSize + DatagramWire.TagSize > _cwnd)
            {
                UnreliableDropped++;
                return false;
            }

            Span<byte> payload = _plaintextSend;
            int used = AckPending ? WriteAck(payload, _time.GetTimestamp()) : 0;
            payload[used] = FrameMessage;
            BinaryPrimitives.WriteUInt16BigEndian(payload[(used + 1)..], (ushort)message.Length);
            message.CopyTo(payload[(used + 3)..]);
            used += 3 + message.Length;
            try
            {
                int size = _keys.Seal(_packet, RemoteIndex, payload[..used], out _);
                _sender.Send(_packet.AsSpan(0, size), _remote);
                return true;
            }
            catch (Exception e) when (e is ObjectDisposedException or PeerLinkException)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// A transport datagram for this connection, from the socket's receive loop. With <paramref name="moreQueued"/> the
    /// socket holds more datagrams already: what this one delivers is not yet handed to the session, and nothing is sent
    /// in answer, until <see cref="FlushDeferred"/>, so that a burst wakes the session once and is acknowledged once.
    /// Returns true when <see cref="FlushDeferred"/> must follow.
    /// </summary>
    public bool OnDatagram(ReadOnlySpan<byte> datagram, SocketAddress from, bool moreQueued = false)
    {
        lock (_gate)
        {
            if (_released)
            {
                return false;
            }

            _deferring = moreQueued;
            try
            {
                return OnDatagramLocked(datagram, from) && moreQueued;
            }
            finally
            {
                _deferring = false;
            }
        }
    }

    /// <summary>Hands what deferred datagrams delivered to the session, and sends what they call for (acknowledgements, data).</summary>
    public void FlushDeferred()
    {
        lock (_gate)
        {
            if (_released || _failed)
            {
                return;
            }

            try
            {
                DeliverLocked();
                TrySendLocked();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                FailLocked(e as PeerLinkException ?? InternalError(e), sendReset: true);
            }
        }
    }

    private bool _deferring;

    private bool OnDatagramLocked(ReadOnlySpan<byte> datagram, SocketAddress from)
    {
        bool opened;
        ulong counter;
        int length;
        if (datagram.Length > _plaintext.Length)
        {
            _plaintext = new byte[DatagramWire.MaxDatagramSize];   // the peer found a larger path
        }

        try
        {
            opened = _keys.TryOpen(datagram, _plaintext, out counter, out length);
        }
        catch (ObjectDisposedException)
        {
            return false;
        }

        if (!opened)
        {
            _rejected++;
            return false;
        }

        _handshakeTail = null;
        try
        {
            long largestBefore = _largestReceived;
            _from = from;
            ProcessLocked(_plaintext.AsSpan(0, length), (long)counter);
            if (!_failed && (long)counter > largestBefore && !from.Equals(_remote))
            {
                // The newest datagram came from elsewhere: the peer's NAT rebound, or the peer moved. Move only once the
                // new address proves it is the peer's (a path challenge), so this session cannot be aimed at a third party.
                StartPathValidationLocked(from);
            }
            if (!_failed && !_deferring)
            {
                TrySendLocked();
            }

            Interlocked.Increment(ref _datagramsReceived);   // after the timers are re-armed: tests step a fake clock on it
        }
        catch (PeerLinkException e)
        {
            FailLocked(e, sendReset: true);
            return false;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            FailLocked(InternalError(e), sendReset: true);
            return false;
        }

        return !_failed;
    }

    // ---------------------------------------------------------------- receive

    private void ProcessLocked(ReadOnlySpan<byte> payload, long number)
    {
        long now = _time.GetTimestamp();
        TrimSparesLocked(now);
        bool ackEliciting = false;
        while (!payload.IsEmpty)
        {
            byte type = payload[0];
            switch (type)
            {
                case FramePadding:
                    payload = default;
                    break;
                case FramePing:
                    ackEliciting = true;
                    payload = payload[1..];
                    break;
                case FrameAck:
                    payload = OnAck(payload, now);
                    break;
                case FrameStream:
                    ackEliciting = true;
                    _lastActivityAt = now;
                    payload = OnStream(payload);
                    break;
                case FrameMaxData:
                    ackEliciting = true;
                    Need(payload, 9);
                    _peerLimit = Math.Max(_peerLimit, (long)BinaryPrimitives.ReadUInt64BigEndian(payload[1..]));
                    payload = payload[9..];
                    break;
                case FramePathChallenge:
                    Need(payload, 9);
                    ackEliciting = true;
                    SendPathFrameLocked(FramePathResponse, payload.Slice(1, 8), _from!);   // to where the challenge came from
                    payload = payload[9..];
                    break;
                case FramePathResponse:
                    Need(payload, 9);
                    ackEliciting = true;
                    OnPathResponseLocked(payload.Slice(1, 8));
                    payload = payload[9..];
                    break;
                case FrameMessage:
                    Need(payload, 3);
                    int messageLength = BinaryPrimitives.ReadUInt16BigEndian(payload[1..]);
                    Need(payload, 3 + messageLength);
                    MessageReceived?.Invoke(payload.Slice(3, messageLength));
                    payload = payload[(3 + messageLength)..];
                    break;
                case FrameReset:
                    Need(payload, 2);
                    FailLocked(new PeerLinkException(PeerLinkError.ConnectionReset, "The peer reset the connection."), sendReset: false);
                    return;
                default:
                    throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"Unknown datagram frame type 0x{type:x2}.");
            }
        }

        bool inOrder = number == _largestReceived + 1;
        _received.Add(number, number + 1);
        _received.KeepHighest(MaxAckRanges * 2);
        if (number > _largestReceived)
        {
            _largestReceived = number;
            _largestReceivedAt = now;
        }

        if (ackEliciting)
        {
            if (_ackElicitingUnacked++ == 0)
            {
                _firstUnackedAt = now;
            }

            // Acknowledge every second packet at once, and at once whenever something is missing (RFC 9000 §13.2.1).
            if (_ackElicitingUnacked >= 2 || !inOrder)
            {
                _ackNow = true;
            }
            else
            {
                ArmTimerLocked(now + ToTicks(_settings.MaxAckDelay));
            }
        }
    }

    private static void Need(ReadOnlySpan<byte> payload, int length)
    {
        if (payload.Length < length)
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "A datagram frame is truncated.");
        }
    }

    private ReadOnlySpan<byte> OnStream(ReadOnlySpan<byte> payload)
    {
        Need(payload, StreamHeaderSize);
        bool fin = (payload[1] & StreamFin) != 0;
        long offset = (long)BinaryPrimitives.ReadUInt64BigEndian(payload[2..]);
        int length = BinaryPrimitives.ReadUInt16BigEndian(payload[10..]);
        Need(payload, StreamHeaderSize + length);
        ReadOnlySpan<byte> data = payload.Slice(StreamHeaderSize, length);
        long end = offset + length;
        if (offset < 0 || end > _advertisedLimit)
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"The peer sent beyond the flow control limit ({end} > {_advertisedLimit}).");
        }

        if (fin)
        {
            if (_peerFin >= 0 && _peerFin != end)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer moved the end of its stream.");
            }

            _peerFin = end;
        }

        if (_peerFin >= 0 && end > _peerFin)
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer sent beyond the end of its stream.");
        }

        if (offset <= _delivered && end > _delivered && !_flushPending && !_failed && (_segments.Count == 0 || _segments.Keys[0] > end))
        {
            // In order, and the session keeps up: straight into its pipe, no copy kept.
            _incoming.Writer.Write(data[(int)(_delivered - offset)..]);
            _delivered = end;
            _unflushed = true;
        }
        else if (end > _delivered && length > 0 && TrimHeldLocked(ref offset, end) is var kept && kept > 0)
        {
            // Only bytes not held already: a resend cut at other boundaries (its packet carried other frames) overlaps
            // what arrived before, and must neither be dropped (the peer counts it delivered) nor held twice.
            if (_segmentBytes + kept > 2L * _settings.ReceiveWindowBytes)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer's overlapping segments exceed the receive window.");
            }

            byte[] buffer = RentSegment(kept);
            data[(int)(offset - (end - length))..].CopyTo(buffer);
            _segments.Add(offset, (buffer, kept));
            _segmentBytes += kept;
        }

        DeliverLocked();
        return payload[(StreamHeaderSize + length)..];
    }

    /// <summary>
    /// Moves <paramref name="offset"/> past the bytes before <paramref name="end"/> that are delivered or held already
    /// (from the start only: held segments are contiguous from their key); returns how many bytes remain to hold.
    /// </summary>
    private int TrimHeldLocked(ref long offset, long end)
    {
        offset = Math.Max(offset, _delivered);
        while (offset < end)
        {
            // The held segment that starts at or before offset, if any (binary search of the sorted keys).
            IList<long> keys = _segments.Keys;
            int lo = 0;
            int hi = keys.Count - 1;
            int floor = -1;
            while (lo <= hi)
            {
                int mid = (lo + hi) >>> 1;
                if (keys[mid] <= offset)
                {
                    floor = mid;
                    lo = mid + 1;
                }
                else
                {
                    hi = mid - 1;
                }
            }

            long heldEnd = floor < 0 ? long.MinValue : keys[floor] + _segments.Values[floor].Length;
            if (heldEnd <= offset)
            {
                break;
            }

            offset = heldEnd;
        }

        return (int)Math.Max(0, end - offset);
    }

    /// <summary>Moves in-order bytes into the session's pipe, unless a flush is still waiting for the session to read.</summary>
    private void DeliverLocked()
    {
        if (_flushPending || _failed)
        {
            return;
        }

        PipeWriter writer = _incoming.Writer;
        bool wrote = _unflushed;
        _unflushed = false;
        while (_segments.Count > 0)
        {
            long offset = _segments.Keys[0];
            if (offset > _delivered)
            {
                break;
            }

            (byte[] buffer, int length) = _segments.Values[0];
            _segments.RemoveAt(0);
            _segmentBytes -= length;
            long skip = _delivered - offset;
            if (skip < length)
            {
                writer.Write(buffer.AsSpan((int)skip, length - (int)skip));
                _delivered = offset + length;
                wrote = true;
            }

            ReturnSegment(buffer);
        }

        if (wrote && _deferring)
        {
            _unflushed = true;      // FlushDeferred hands it over, once for the whole burst
            return;
        }

        if (wrote)
        {
            ValueTask<FlushResult> flush = writer.FlushAsync();
            if (flush.IsCompletedSuccessfully)
            {
                _ = flush.Result;
                MoveLimitLocked();
            }
            else
            {
                // The session is behind: hold the limit (the peer stops at it) until it reads.
                _flushPending = true;
                _pendingFlush = flush;
                flush.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_onFlushed ??= OnFlushed);
            }
        }

        if (!_flushPending && _peerFin >= 0 && _delivered == _peerFin && !_peerFinDelivered)
        {
            _peerFinDelivered = true;
            writer.Complete();
            TransportLog.ConnectionReadFin(_logger, ConnectionId);
            CheckFinishedLocked();
        }
    }

    /// <summary>
    /// A buffer for one held segment. Spares are kept while data flows (the shared pool keeps only a few per size, and a
    /// window's worth of segments can wait while the session is behind), and given back after a quiet second.
    /// </summary>
    private byte[] RentSegment(int length)
    {
        _segmentRentedAt = _time.GetTimestamp();
        if (_spareSegments.TryPeek(out byte[]? spare) && spare.Length >= length)
        {
            return _spareSegments.Pop();
        }

        return ArrayPool<byte>.Shared.Rent(Math.Max(length, DatagramWire.InitialBufferSize));
    }

    private void ReturnSegment(byte[] buffer)
    {
        if (_spareSegments.Count < 1024 && !_released)
        {
            _spareSegments.Push(buffer);
        }
        else
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void TrimSparesLocked(long now)
    {
        if (_spareSegments.Count > 0 && _segments.Count == 0 && _time.GetElapsedTime(_segmentRentedAt, now) > TimeSpan.FromSeconds(1))
        {
            while (_spareSegments.TryPop(out byte[]? spare))
            {
                ArrayPool<byte>.Shared.Return(spare);
            }
        }
    }

    private readonly Stack<byte[]> _spareSegments = new();
    private readonly Stack<byte[]> _spareChunks = new();
    private long _segmentRentedAt;
    private bool _unflushed;

    private ValueTask<FlushResult> _pendingFlush;
    private Action? _onFlushed;

    /// <summary>The session read enough: the held flush completed (no state machine per pause: the continuation is cached).</summary>
    private void OnFlushed()
    {
        try
        {
            _ = _pendingFlush.GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is InvalidOperationException or OperationCanceledException)
        {
        }

        lock (_gate)
        {
            _flushPending = false;
            if (_failed)
            {
                return;
            }

            try
            {
                MoveLimitLocked();
                DeliverLocked();
                TrySendLocked();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                FailLocked(e as PeerLinkException ?? InternalError(e), sendReset: true);
            }
        }
    }

    private void MoveLimitLocked()
    {
        long limit = _delivered + _settings.ReceiveWindowBytes;
        if (limit - _advertisedLimit >= _settings.ReceiveWindowBytes / 4)
        {
            _advertisedLimit = limit;
            _limitDirty = true;
        }
    }

    private ReadOnlySpan<byte> OnAck(ReadOnlySpan<byte> payload, long now)
    {
        Need(payload, 6);
        long delayMicros = BinaryPrimitives.ReadUInt32BigEndian(payload[1..]);
        int count = payload[5];
        Need(payload, 6 + (count * AckRangeSize));
        ReadOnlySpan<byte> ranges = payload.Slice(6, count * AckRangeSize);
        payload = payload[(6 + (count * AckRangeSize))..];
        if (count == 0)
        {
            return payload;
        }

        long largest = (long)BinaryPrimitives.ReadUInt64BigEndian(ranges);
        if (largest >= (long)_keys.NextCounter)
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer acknowledged a packet that was never sent.");
        }

        bool newlyAcked = false;
        bool ackedEliciting = false;
        long largestNewlySentAt = 0;
        long largestNewly = -1;
        for (int r = 0; r < count; r++)
        {
            long end = (long)BinaryPrimitives.ReadUInt64BigEndian(ranges[(r * AckRangeSize)..]);
            long length = BinaryPrimitives.ReadUInt32BigEndian(ranges[((r * AckRangeSize) + 8)..]);
            long start = end - length + 1;
            for (int i = FindFirst(start); i < _sentCount; i++)
            {
                ref SentPacket packet = ref SentAt(i);
                if (packet.Number > end)
                {
                    break;
                }

                if (packet.Settled)
                {
                    if (packet.Lost)
                    {
                        OnSpuriousLoss(ref packet);
                    }

                    continue;
                }

                packet.Settled = true;
                newlyAcked = true;
                if (packet.Probe)
                {
                    OnProbeAcked(packet.Size);
                    continue;
                }

                if (packet.Number > largestNewly)
                {
                    largestNewly = packet.Number;
                    largestNewlySentAt = packet.SentAt;
                }

                OnPacketAcked(ref packet, now);
                ackedEliciting |= packet.AckEliciting;
            }
        }

        if (!newlyAcked)
        {
            return payload;
        }

        if (largest > _largestAcked)
        {
            _largestAcked = largest;
        }

        if (largestNewly == largest && ackedEliciting)
        {
            TimeSpan sample = _time.GetElapsedTime(largestNewlySentAt, now);
            TimeSpan ackDelay = TimeSpan.FromMicroseconds(Math.Min(delayMicros, (long)_settings.MaxAckDelay.TotalMicroseconds));
            UpdateRtt(sample, ackDelay);
        }

        _rtoBackoff = 0;
        _tailProbeSent = false;
        _lastProgressAt = now;
        DetectLossesLocked(now);
        PopSettled();
        ReleaseAckedLocked();
        return payload;
    }

    private void OnPacketAcked(ref SentPacket packet, long now)
    {
        if (packet.AckEliciting)
        {
            _bytesInFlight -= packet.Size;
            // NewReno (RFC 9002 §7.3): no growth for packets sent before the current recovery period began.
            if (packet.SentAt > _recoveryStart && _bytesInFlight + packet.Size >= _cwnd / 2)
            {
                // Grow only while the window is what limits the sender (RFC 9002 §7.8), so that it stays meaningful.
                _cwnd += _cwnd < _ssthresh ? packet.Size : Math.Max(1, (long)_maxPayload * packet.Size / _cwnd);
            }
        }

        if (packet.StreamLength > 0 || packet.Fin)
        {
            _ackedStream.Add(packet.StreamOffset, packet.StreamOffset + packet.StreamLength);
            _lostStream.Remove(packet.StreamOffset, packet.StreamOffset + packet.StreamLength);
            if (packet.Fin)
            {
                _finAcked = true;
            }
        }
    }

    private void UpdateRtt(TimeSpan sample, TimeSpan ackDelay)
    {
        _latestRtt = sample;
        if (!_hasRtt)
        {
            _srtt = sample;
            _rttVar = sample / 2;
            _hasRtt = true;
            return;
        }

        TimeSpan adjusted = sample > ackDelay ? sample - ackDelay : sample;
        TimeSpan deviation = (_srtt - adjusted).Duration();
        _rttVar = ((3 * _rttVar) + deviation) / 4;
        _srtt = ((7 * _srtt) + adjusted) / 8;
    }

    private TimeSpan CurrentRto()
    {
        TimeSpan rto = _hasRtt ? _srtt + TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerMillisecond, 4 * _rttVar.Ticks)) + _settings.MaxAckDelay : InitialRto;
        rto = rto < _settings.MinRto ? _settings.MinRto : rto;
        rto *= 1 << Math.Min(_rtoBackoff, 8);
        return rto > MaxRto ? MaxRto : rto;
    }

    private void DetectLossesLocked(long now)
    {
        TimeSpan threshold = (_hasRtt ? (_srtt > _latestRtt ? _srtt : _latestRtt) : InitialRto) * _reorderTimeEighths / 8;
        long thresholdTicks = ToTicks(threshold);
        long lostBefore = now - thresholdTicks;
        _lossTime = long.MaxValue;
        for (int i = 0; i < _sentCount; i++)
        {
            ref SentPacket packet = ref SentAt(i);
            if (packet.Number >= _largestAcked)
            {
                break;
            }

            if (packet.Settled)
            {
                continue;
            }

            if (_largestAcked - packet.Number >= _reorderPackets || packet.SentAt <= lostBefore)
            {
                DeclareLostLocked(ref packet, now);
            }
            else
            {
                // Not yet: it is lost if nothing acknowledges it by then (RFC 9002 §6.1.2's loss timer).
                _lossTime = Math.Min(_lossTime, packet.SentAt + thresholdTicks);
            }
        }
    }

    /// <summary>
    /// A packet declared lost was acknowledged after all: the network reordered, it did not lose. As RACK does (RFC 8985
    /// §6.2), widen the reordering window, and undo the window reduction that the false loss caused.
    /// </summary>
    private void OnSpuriousLoss(ref SentPacket packet)
    {
        packet.Lost = false;
        SpuriousLosses++;
        _reorderPackets = Math.Min(_reorderPackets * 2, MaxReorderPackets);
        _reorderTimeEighths = Math.Min(_reorderTimeEighths + 2, 16);
        if (packet.StreamLength > 0)
        {
            _ackedStream.Add(packet.StreamOffset, packet.StreamOffset + packet.StreamLength);
            _lostStream.Remove(packet.StreamOffset, packet.StreamOffset + packet.StreamLength);
        }

        if (packet.Fin)
        {
            _finAcked = true;
        }

        if (_cwndBeforeRecovery > _cwnd && packet.SentAt <= _recoveryStart)
        {
            _cwnd = _cwndBeforeRecovery;
            _ssthresh = _ssthreshBeforeRecovery;
            _cwndBeforeRecovery = 0;
            WindowUndos++;
        }
    }

    /// <summary>Packets declared lost that arrived after all (for tests and diagnostics).</summary>
    public long SpuriousLosses { get; private set; }

    private void DeclareLostLocked(ref SentPacket packet, long now)
    {
        packet.Settled = true;
        if (packet.Probe)
        {
            OnProbeLost(now);     // a probe too large for the path: not congestion, nothing to resend
            return;
        }

        packet.Lost = true;
        if (packet.AckEliciting)
        {
            _bytesInFlight -= packet.Size;
        }

        if (packet.Limit)
        {
            // The peer may be stopped at its old limit with nothing in flight: nothing else would tell it the new one.
            _limitDirty = true;
        }

        if (packet.StreamLength > 0 || packet.Fin)
        {
            // Only what is still unacknowledged (below the acknowledged prefix the buffer is gone).
            _lostStream.Add(Math.Max(packet.StreamOffset, _ackedPrefix), packet.StreamOffset + packet.StreamLength);
            foreach (var acked in AckedOverlaps(packet.StreamOffset, packet.StreamOffset + packet.StreamLength))
            {
                _lostStream.Remove(acked.Start, acked.End);
            }

            if (packet.Fin)
            {
                _finSent = false;
            }
        }

        Retransmissions++;
        if (packet.SentAt > _recoveryStart)
        {
            // One reduction per round trip of losses.
            _cwndBeforeRecovery = _cwnd;
            _ssthreshBeforeRecovery = _ssthresh;
            _recoveryStart = now;
            _ssthresh = Math.Max(_cwnd / 2, 2L * _maxPayload);
            _cwnd = _ssthresh;
            CongestionEvents++;
        }
    }

    /// <summary>Window reductions for loss (for tests and diagnostics).</summary>
    public long CongestionEvents { get; private set; }

    /// <summary>Window reductions taken back because the loss proved spurious (for tests and diagnostics).</summary>
    public long WindowUndos { get; private set; }

    private void OnProbeAcked(int size)
    {
        _probeNumber = -1;
        _probeFailures = 0;
        int payload = size - DatagramWire.TransportHeaderSize - DatagramWire.TagSize;
        if (payload > _maxPayload)
        {
            _maxPayload = payload;
            if (_packet.Length < size)
            {
                _packet = new byte[size];
                _plaintextSend = new byte[size];
            }

            PathMtuRaised++;
            // The window is in bytes: keep at least the initial window of the new size (RFC 9002 §7.2).
            _cwnd = Math.Max(_cwnd, Math.Min(10L * _maxPayload, Math.Max(14720, 2L * _maxPayload)));
        }

        _probeStep++;
        _nextProbeAt = _probeStep >= DatagramWire.ProbeSizes.Length
            ? _time.GetTimestamp() + ToTicks(TimeSpan.FromMinutes(10))     // at the top: look again in ten minutes
            : _time.GetTimestamp();
    }

    private void OnProbeLost(long now)
    {
        _probeNumber = -1;
        if (++_probeFailures >= 3)
        {
            // This size does not pass: the search is over; try again in ten minutes (RFC 8899 §5.1.1's raise timer).
            _probeFailures = 0;
            _probeStep = DatagramWire.ProbeSizes.Length;
            _nextProbeAt = now + ToTicks(TimeSpan.FromMinutes(10));
        }
        else
        {
            _nextProbeAt = now + ToTicks(CurrentRto());
        }
    }

    /// <summary>Sends the next path MTU probe when one is due: PING and PADDING up to the next size, acknowledged but never resent.</summary>
    private void ProbeLocked(long now)
    {
        if (_probeNumber >= 0 || now < _nextProbeAt || !_hasRtt || _failed)
        {
            return;
        }

        if (_probeStep >= DatagramWire.ProbeSizes.Length)
        {
            _probeStep = 0;      // the raise timer expired: search again from the bottom
        }

        int size = DatagramWire.ProbeSizes[_probeStep];
        if (size <= _maxPayload + DatagramWire.TransportHeaderSize + DatagramWire.TagSize)
        {
            _probeStep++;
            return;
        }

        byte[] plaintext = ArrayPool<byte>.Shared.Rent(size);
        byte[] packet = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            int length = size - DatagramWire.TransportHeaderSize - DatagramWire.TagSize;
            plaintext.AsSpan(0, length).Clear();
            plaintext[0] = FramePing;       // then PADDING (zeros) to the end
            _keys.Seal(packet, RemoteIndex, plaintext.AsSpan(0, length), out ulong number);
            _sender.Send(packet.AsSpan(0, size), _remote);
            _probeNumber = (long)number;
            _probeSentAt = now;
            AddSent(new SentPacket { Number = (long)number, SentAt = now, Size = size, AckEliciting = true, Probe = true });
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(plaintext);
            ArrayPool<byte>.Shared.Return(packet);
        }
    }

    /// <summary>True once path MTU discovery has no probe left to try (until its raise timer), for tests.</summary>
    internal bool IsPathMtuSearchDone
    {
        get
        {
            lock (_gate)
            {
                return _probeStep >= DatagramWire.ProbeSizes.Length && _probeNumber < 0;
            }
        }
    }

    /// <summary>How many times path MTU discovery raised the datagram size (for tests and diagnostics).</summary>
    public int PathMtuRaised { get; private set; }

    /// <summary>The largest datagram this connection sends now.</summary>
    public int DatagramSize
    {
        get
        {
            lock (_gate)
            {
                return _maxPayload + DatagramWire.TransportHeaderSize + DatagramWire.TagSize;
            }
        }
    }

    private List<(long Start, long End)> AckedOverlaps(long start, long end)
    {
        _overlaps.Clear();
        for (int i = 0; i < _ackedStream.Count; i++)
        {
            (long s, long e) = _ackedStream[i];
            if (e > start && s < end)
            {
                _overlaps.Add((Math.Max(s, start), Math.Min(e, end)));
            }
        }

        return _overlaps;
    }

    private readonly List<(long Start, long End)> _overlaps = new();

    private void WakePumpLocked()
    {
        if (_waitingForSpace)
        {
            _waitingForSpace = false;
            _sendSpace.Set();
        }
    }

    private void ReleaseAckedLocked()
    {
        long prefix = _ackedStream.ContiguousFrom(_ackedPrefix);
        if (prefix > _ackedPrefix)
        {
            _ackedPrefix = prefix;
            _ackedStream.RemoveBelow(prefix);
            _lostStream.RemoveBelow(prefix);
            while (_chunks.Count > 0 && _chunkBase + ChunkSize <= _ackedPrefix)
            {
                // Kept for the next chunk while data flows; given back once everything is acknowledged.
                _spareChunks.Push(_chunks[0]);
                _chunks.RemoveAt(0);
                _chunkBase += ChunkSize;
            }

            if (_ackedPrefix == _sendEnd)
            {
                while (_spareChunks.TryPop(out byte[]? spare))
                {
                    ArrayPool<byte>.Shared.Return(spare);
                }
            }

            WakePumpLocked();
        }

        if (_finAcked && _ackedPrefix >= _finOffset && _finOffset >= 0)
        {
            _sendDone.TrySetResult();
            CheckFinishedLocked();
        }
    }

    // ---------------------------------------------------------------- send

    private async Task PumpAsync()
    {
        PipeReader reader = _outgoing.Reader;
        try
        {
            while (true)
            {
                ReadResult result = await reader.ReadAsync().ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                bool wait = false;
                long taken;
                lock (_gate)
                {
                    if (_failed)
                    {
                        return;
                    }

                    long room = _settings.SendBufferBytes - (_sendEnd - _ackedPrefix);
                    taken = Math.Min(room, buffer.Length);
                    if (taken > 0)
                    {
                        AppendLocked(buffer.Slice(0, taken));
                    }

                    bool ended = result.IsCompleted && taken == buffer.Length;
                    if (ended)
                    {
                        _finOffset = _sendEnd;
                    }

                    TrySendLocked();
                    if (ended)
                    {
                        reader.AdvanceTo(buffer.End);
                        return;
                    }

                    if (taken < buffer.Length)
                    {
                        _waitingForSpace = true;
                        wait = true;
                    }
                }

                reader.AdvanceTo(buffer.GetPosition(taken));
                if (wait)
                {
                    await _sendSpace.WaitAsync().ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is InvalidOperationException or OperationCanceledException)
        {
            // The session completed its output with an error (an abort): the connection goes with it.
        }
    }

    private void AppendLocked(ReadOnlySequence<byte> data)
    {
        foreach (ReadOnlyMemory<byte> segment in data)
        {
            ReadOnlySpan<byte> span = segment.Span;
            while (!span.IsEmpty)
            {
                int chunk = (int)((_sendEnd - _chunkBase) / ChunkSize);
                int within = (int)((_sendEnd - _chunkBase) % ChunkSize);
                if (chunk == _chunks.Count)
                {
                    _chunks.Add(_spareChunks.TryPop(out byte[]? spare) ? spare : ArrayPool<byte>.Shared.Rent(ChunkSize));
                }

                int take = Math.Min(span.Length, ChunkSize - within);
                span[..take].CopyTo(_chunks[chunk].AsSpan(within));
                _sendEnd += take;
                span = span[take..];
            }
        }
    }

    private void CopyOut(long offset, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            int chunk = (int)((offset - _chunkBase) / ChunkSize);
            int within = (int)((offset - _chunkBase) % ChunkSize);
            int take = Math.Min(destination.Length, ChunkSize - within);
            _chunks[chunk].AsSpan(within, take).CopyTo(destination);
            destination = destination[take..];
            offset += take;
        }
    }

    /// <summary>Sends what the windows allow: resent bytes first, then new ones, with ACK and MAX_DATA riding along.</summary>
    private void TrySendLocked()
    {
        if (_failed || _released)
        {
            return;
        }

        long now = _time.GetTimestamp();
        ProbeLocked(now);
        RefillPacingLocked(now);
        while (true)
        {
            bool probe = _probesAllowed > 0;
            bool cwndOpen = _bytesInFlight + _maxPayload <= _cwnd || _bytesInFlight == 0 || probe;
            bool paced = _pacingBudgetBytes >= _maxPayload || probe;
            long offset = 0;
            int length = 0;
            bool fin = false;
            bool haveStream = false;
            if (cwndOpen)
            {
                int overhead = (AckPending ? 6 + (Math.Min(_received.Count, MaxAckRanges) * AckRangeSize) : 0) + (_limitDirty ? 9 : 0) + StreamHeaderSize;
                haveStream = NextStreamRangeLocked(_maxPayload - overhead, out offset, out length, out fin);
            }

            if (haveStream && !paced)
            {
                // Paced: come back when the budget allows another packet.
                ArmTimerLocked(now + PacingDelayTicks());
                haveStream = false;
                if (!_ackNow && !_limitDirty)
                {
                    break;
                }
            }

            if (!haveStream && !_ackNow && !(_limitDirty && cwndOpen) && !_pingNow)
            {
                break;
            }

            SendPacketLocked(now, haveStream, offset, length, fin);
            if (probe && haveStream)
            {
                _probesAllowed--;
            }

            if (!haveStream)
            {
                break;
            }
        }

        RearmLocked(now);
    }

    private bool AckPending => _received.Count > 0 && (_ackNow || _ackElicitingUnacked > 0);

    private bool NextStreamRangeLocked(int room, out long offset, out int length, out bool fin)
    {
        fin = false;
        if (!_lostStream.IsEmpty)
        {
            (long s, long e) = _lostStream.First;
            offset = s;
            length = (int)Math.Min(room, e - s);
            fin = _finOffset >= 0 && offset + length == _finOffset && !_finSent;
            return true;
        }

        offset = _nextNew;
        long available = Math.Min(_sendEnd, _peerLimit) - _nextNew;
        length = (int)Math.Clamp(available, 0, room);
        fin = _finOffset >= 0 && _nextNew + length == _finOffset && !_finSent;
        return length > 0 || fin;
    }

    private void SendPacketLocked(long now, bool haveStream, long offset, int length, bool fin)
    {
        Span<byte> payload = _plaintextSend;
        int used = 0;
        bool ackEliciting = false;
        bool limit = false;
        if (AckPending)
        {
            used += WriteAck(payload, now);
        }

        if (_limitDirty)
        {
            payload[used] = FrameMaxData;
            BinaryPrimitives.WriteUInt64BigEndian(payload[(used + 1)..], (ulong)_advertisedLimit);
            used += 9;
            _limitDirty = false;
            _limitSent = _advertisedLimit;
            ackEliciting = true;
            limit = true;
        }

        if (_pingNow && !haveStream && !ackEliciting)
        {
            payload[used++] = FramePing;     // a keepalive: the peer's acknowledgement refreshes the mappings both ways
            ackEliciting = true;
            if (_tailProbe)
            {
                TailProbes++;
            }
            else
            {
                KeepAlivesSent++;
            }
        }

        _pingNow = false;
        _tailProbe = false;
        if (haveStream)
        {
            _lastActivityAt = now;
            payload[used] = FrameStream;
            payload[used + 1] = fin ? StreamFin : (byte)0;
            BinaryPrimitives.WriteUInt64BigEndian(payload[(used + 2)..], (ulong)offset);
            BinaryPrimitives.WriteUInt16BigEndian(payload[(used + 10)..], (ushort)length);
            CopyOut(offset, payload.Slice(used + StreamHeaderSize, length));
            used += StreamHeaderSize + length;
            ackEliciting = true;
            if (offset + length > _nextNew)
            {
                _nextNew = offset + length;
            }

            _lostStream.Remove(offset, offset + length);
            if (fin)
            {
                _finSent = true;
            }
        }

        int size;
        ulong number;
        try
        {
            size = _keys.Seal(_packet, RemoteIndex, payload[..used], out number);
        }
        catch (Exception e) when (e is ObjectDisposedException or PeerLinkException)
        {
            FailLocked(e as PeerLinkException ?? new PeerLinkException(PeerLinkError.ConnectionAborted, "The connection's keys are gone."), sendReset: false);
            return;
        }

        _sender.Send(_packet.AsSpan(0, size), _remote);
        _lastSentAt = now;
        if (ackEliciting)
        {
            if (_bytesInFlight == 0)
            {
                _lastProgressAt = now;
            }

            _bytesInFlight += size;
            _lastAckElicitingSentAt = now;
            _pacingBudgetBytes -= size;
            AddSent(new SentPacket { Number = (long)number, SentAt = now, Size = size, AckEliciting = true, StreamOffset = offset, StreamLength = haveStream ? length : 0, Fin = haveStream && fin, Limit = limit });
        }
    }

    private byte[] _plaintextSend = new byte[DatagramWire.InitialBufferSize];

    private int WriteAck(Span<byte> destination, long now)
    {
        int count = Math.Min(_received.Count, MaxAckRanges);
        long delayMicros = (long)_time.GetElapsedTime(_largestReceivedAt, now).TotalMicroseconds;
        destination[0] = FrameAck;
        BinaryPrimitives.WriteUInt32BigEndian(destination[1..], (uint)Math.Clamp(delayMicros, 0, uint.MaxValue));
        destination[5] = (byte)count;
        int at = 6;
        for (int i = 0; i < count; i++)
        {
            (long s, long e) = _received[_received.Count - 1 - i];
            BinaryPrimitives.WriteUInt64BigEndian(destination[at..], (ulong)(e - 1));
            BinaryPrimitives.WriteUInt32BigEndian(destination[(at + 8)..], (uint)Math.Min(e - s, uint.MaxValue));
            at += AckRangeSize;
        }

        _ackNow = false;
        _ackElicitingUnacked = 0;
        return at;
    }

    private void RefillPacingLocked(long now)
    {
        // Pacing (RFC 9002 §7.7): a rate of 1.25 · cwnd / srtt, with a burst of up to ten packets.
        long burst = 10L * _maxPayload;
        if (!_hasRtt || _srtt <= TimeSpan.Zero)
        {
            _pacingBudgetBytes = Math.Max(_pacingBudgetBytes, burst);
            _pacingAt = now;
            return;
        }

        double rate = 1.25 * _cwnd / _srtt.TotalSeconds;       // bytes per second
        double elapsed = _time.GetElapsedTime(_pacingAt, now).TotalSeconds;
        _pacingAt = now;
        _pacingBudgetBytes = (long)Math.Min(Math.Max(burst, _cwnd), _pacingBudgetBytes + (elapsed * rate));
    }

    private long PacingDelayTicks()
    {
        double rate = _hasRtt && _srtt > TimeSpan.Zero ? 1.25 * _cwnd / _srtt.TotalSeconds : double.MaxValue;
        double seconds = Math.Max(0.001, (_maxPayload - _pacingBudgetBytes) / rate);
        return (long)(seconds * _time.TimestampFrequency);
    }

    private void AddSent(SentPacket packet)
    {
        if (_sentCount == _sent.Length)
        {
            var grown = new SentPacket[_sent.Length * 2];
            for (int i = 0; i < _sentCount; i++)
            {
                grown[i] = _sent[(_sentHead + i) % _sent.Length];
            }

            _sent = grown;
            _sentHead = 0;
        }

        _sent[(_sentHead + _sentCount) % _sent.Length] = packet;
        _sentCount++;
    }

    private ref SentPacket SentAt(int i) => ref _sent[(_sentHead + i) % _sent.Length];

    private int FindFirst(long number)
    {
        int lo = 0;
        int hi = _sentCount;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (SentAt(mid).Number < number)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }

    private void PopSettled()
    {
        // A packet declared lost stays a while (two round trips), so that a late acknowledgement reveals reordering.
        long keepLostSince = _time.GetTimestamp() - ToTicks((_hasRtt ? _srtt : InitialRto) * 2);
        while (_sentCount > 0 && _sent[_sentHead].Settled && (!_sent[_sentHead].Lost || _sent[_sentHead].SentAt < keepLostSince))
        {
            _sentHead = (_sentHead + 1) % _sent.Length;
            _sentCount--;
        }
    }

    // ---------------------------------------------------------------- timers

    private void RearmLocked(long now)
    {
        long due = long.MaxValue;
        if (_ackElicitingUnacked > 0)
        {
            due = Math.Min(due, _firstUnackedAt + ToTicks(_settings.MaxAckDelay));
        }

        if (_bytesInFlight > 0 || _handshakeTail is not null)
        {
            due = Math.Min(due, _lastAckElicitingSentAt + ToTicks(CurrentRto()));
        }

        if (TailProbeDueLocked() is long tail)
        {
            due = Math.Min(due, tail);
        }

        if (_lossTime != long.MaxValue)
        {
            due = Math.Min(due, _lossTime);
        }

        if (_probeNumber >= 0)
        {
            due = Math.Min(due, _probeSentAt + ToTicks(CurrentRto() * 2));
        }
        else if (_probeStep < DatagramWire.ProbeSizes.Length && _hasRtt && !_failed)
        {
            due = Math.Min(due, _nextProbeAt);     // the search goes on while the session is idle
        }

        if (_lingerUntil != long.MaxValue)
        {
            due = Math.Min(due, _lingerUntil);
        }

        if (KeepAliveDueLocked() is long keepAlive)
        {
            due = Math.Min(due, keepAlive);
        }

        if (due != long.MaxValue)
        {
            ArmTimerLocked(Math.Max(due, now));
        }
    }

    /// <summary>
    /// A tail loss probe (RACK-TLP, RFC 8985 §7): when data is in flight and nothing was acknowledged for two round trips
    /// and the peer's acknowledgement delay, one PING goes out. Its acknowledgement shows which packets of the flight's
    /// tail are missing, so they are resent after a round trip instead of after the retransmission timeout.
    /// </summary>
    private long? TailProbeDueLocked()
    {
        if (_bytesInFlight == 0 || _tailProbeSent || !_hasRtt || _failed || _rtoBackoff > 0)
        {
            return null;
        }

        TimeSpan wait = Max(_srtt * 2, TimeSpan.FromMilliseconds(1)) + _settings.MaxAckDelay;
        return wait < CurrentRto() ? _lastAckElicitingSentAt + ToTicks(wait) : null;
    }

    /// <summary>When the next keepalive is due, or null when none is (off, failing, closing, or the application went quiet).</summary>
    private long? KeepAliveDueLocked()
    {
        TimeSpan interval = _settings.KeepAliveInterval;
        if (interval <= TimeSpan.Zero || _failed || _lingerUntil != long.MaxValue || _bytesInFlight > 0)
        {
            return null;
        }

        long due = _lastSentAt + ToTicks(interval);
        return _settings.KeepAliveIdleLimit == Timeout.InfiniteTimeSpan || due - _lastActivityAt < ToTicks(_settings.KeepAliveIdleLimit) ? due : null;
    }

    private void ArmTimerLocked(long due)
    {
        if (due >= _timerDueAt || _released)
        {
            return;   // an earlier wake-up is armed; it re-arms for what remains
        }

        _timerDueAt = due;
        TimeSpan delay = _time.GetElapsedTime(_time.GetTimestamp(), due);
        try
        {
            _timer.Change(delay < TimeSpan.Zero ? TimeSpan.Zero : delay, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void OnTimer()
    {
        try
        {
            OnTimerCore();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A timer callback must never take the process down: the connection fails instead, and says why.
            lock (_gate)
            {
                FailLocked(InternalError(e), sendReset: true);
            }
        }
    }

    private static PeerLinkException InternalError(Exception e) =>
        new(PeerLinkError.Unknown, $"The datagram connection failed internally ({e.GetType().Name}: {e.Message}).", e);

    private void OnTimerCore()
    {
        lock (_gate)
        {
            _timerDueAt = long.MaxValue;
            if (_released)
            {
                return;
            }

            long now = _time.GetTimestamp();
            if (_lingerUntil != long.MaxValue && now >= _lingerUntil)
            {
                ReleaseLocked();
                return;
            }

            if (_failed)
            {
                RearmLocked(now);
                return;
            }

            if (_ackElicitingUnacked > 0 && now >= _firstUnackedAt + ToTicks(_settings.MaxAckDelay))
            {
                _ackNow = true;
            }

            if (_probeNumber >= 0 && now >= _probeSentAt + ToTicks(CurrentRto() * 2))
            {
                // No acknowledgement for the probe: too large for the path (or lost; three tries decide).
                int at = FindFirst(_probeNumber);
                if (at < _sentCount && SentAt(at).Number == _probeNumber && !SentAt(at).Settled)
                {
                    DeclareLostLocked(ref SentAt(at), now);
                }

                if (_probeNumber >= 0)
                {
                    OnProbeLost(now);
                }

                PopSettled();
            }

            if (_candidate is not null && now >= _challengeSentAt + ToTicks(CurrentRto()))
            {
                SendChallengeLocked(now);
            }

            if (_lossTime != long.MaxValue && now >= _lossTime)
            {
                DetectLossesLocked(now);
                PopSettled();
            }

            if (TailProbeDueLocked() is long tail && now >= tail)
            {
                _pingNow = true;
                _tailProbe = true;
                _tailProbeSent = true;
            }

            if (KeepAliveDueLocked() is long keepAlive && now >= keepAlive)
            {
                // An acknowledgement owed to the peer refreshes the mappings as well as a PING would: send it now instead.
                if (AckPending)
                {
                    _ackNow = true;
                }
                else
                {
                    _pingNow = true;
                }
            }

            if (_handshakeTail is not null && now >= _lastAckElicitingSentAt + ToTicks(CurrentRto()))
            {
                _sender.Send(_handshakeTail, _remote);
                _lastAckElicitingSentAt = now;
                _rtoBackoff++;
            }

            if (_bytesInFlight > 0 && now >= _lastAckElicitingSentAt + ToTicks(CurrentRto()))
            {
                // At least one retransmission first: a timer that fired late (a stalled process, an RTO longer than the
                // timeout after a slow first round trip) is not evidence that the path is gone.
                if (_rtoBackoff > 0 && _time.GetElapsedTime(_lastProgressAt, now) > _settings.DeliveryTimeout)
                {
                    FailLocked(new PeerLinkException(PeerLinkError.PeerTimeout, $"Nothing sent was acknowledged for {_settings.DeliveryTimeout.TotalSeconds} s: the path to the peer is gone."), sendReset: false);
                    return;
                }

                // RTO (RFC 6298 §5): back off, resend the oldest packet, restart from the minimum window (RFC 5681 §3.1).
                Timeouts++;
                _rtoBackoff++;
                // Two probes, as RFC 9002's PTO sends: one lost probe (or its acknowledgement) then costs no doubling.
                int resent = 0;
                for (int i = 0; i < _sentCount && resent < 2; i++)
                {
                    ref SentPacket oldest = ref SentAt(i);
                    if (!oldest.Settled)
                    {
                        bool probe = oldest.Probe;
                        long recovery = _recoveryStart;
                        DeclareLostLocked(ref oldest, now);
                        _recoveryStart = Math.Max(recovery, now);
                        resent += probe ? 0 : 1;
                    }
                }

                PopSettled();
                if (_rtoBackoff >= 2)
                {
                    // Timeouts in a row: persistent congestion (RFC 9002 §7.6), back to the minimum window. A single
                    // timeout is a probe, as QUIC's PTO: the loss it reveals already halved the window once.
                    _ssthresh = Math.Max(_cwnd / 2, 2L * _maxPayload);
                    _cwnd = 2L * _maxPayload;
                }

                _probesAllowed = 2;
                _lastAckElicitingSentAt = now;
            }

            TrySendLocked();
        }
    }

    private long ToTicks(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    // ---------------------------------------------------------------- lifetime

    private void CheckFinishedLocked()
    {
        if (_peerFinDelivered && _finAcked && _ackedPrefix >= _finOffset && _lingerUntil == long.MaxValue)
        {
            // Both directions are done. Stay a while to acknowledge a FIN the peer resends (our ACK may be lost).
            _lingerUntil = _time.GetTimestamp() + ToTicks(Max(CurrentRto() * 3, TimeSpan.FromSeconds(1)));
            Cancel();
            RearmLocked(_time.GetTimestamp());
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private void FailLocked(PeerLinkException error, bool sendReset)
    {
        if (_failed)
        {
            return;
        }

        _failed = true;
        if (sendReset)
        {
            SendResetLocked();
        }

        _incoming.Writer.Complete(error);
        _outgoing.Reader.Complete(error);
        WakePumpLocked();
        _sendDone.TrySetResult();
        Cancel();
        ReleaseLocked();
    }

    private void SendResetLocked()
    {
        try
        {
            Span<byte> reset = [FrameReset, 0];
            int size = _keys.Seal(_packet, RemoteIndex, reset, out _);
            _sender.Send(_packet.AsSpan(0, size), _remote);
        }
        catch (Exception e) when (e is ObjectDisposedException or PeerLinkException)
        {
        }
    }

    private void ReleaseLocked()
    {
        if (_released)
        {
            return;
        }

        _released = true;
        foreach (byte[] chunk in _chunks)
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }

        _chunks.Clear();
        while (_spareChunks.TryPop(out byte[]? spareChunk))
        {
            ArrayPool<byte>.Shared.Return(spareChunk);
        }
        foreach ((byte[] buffer, int _) in _segments.Values)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        _segments.Clear();
        while (_spareSegments.TryPop(out byte[]? spare))
        {
            ArrayPool<byte>.Shared.Return(spare);
        }
        _timer.Dispose();
        _keys.Dispose();
        _onReleased(this);
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

    public override void Abort(Exception? reason = null)
    {
        lock (_gate)
        {
            FailLocked(reason as PeerLinkException ?? new PeerLinkException(PeerLinkError.ConnectionAborted, "The connection was aborted.", reason), sendReset: true);
        }

        _outgoing.Writer.Complete();
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Graceful: everything written goes out, then FIN; wait (briefly) for the peer to acknowledge it.
        await _outgoing.Writer.CompleteAsync().ConfigureAwait(false);
        try
        {
            await _sendDone.Task.WaitAsync(TimeSpan.FromSeconds(3), _time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // The peer does not acknowledge: give up on the rest and tell it so.
            lock (_gate)
            {
                FailLocked(new PeerLinkException(PeerLinkError.ConnectionAborted, "The connection was closed before the peer acknowledged everything."), sendReset: true);
            }
        }

        await _pump.ConfigureAwait(false);
        await _incoming.Reader.CompleteAsync().ConfigureAwait(false);
        lock (_gate)
        {
            if (!_released && _lingerUntil == long.MaxValue)
            {
                // The peer has not finished its side: linger for its last datagrams, then let go.
                _lingerUntil = _time.GetTimestamp() + ToTicks(TimeSpan.FromSeconds(1));
                RearmLocked(_time.GetTimestamp());
            }
        }

        Cancel();
    }

    private struct SentPacket
    {
        public long Number;
        public long SentAt;
        public int Size;
        public bool AckEliciting;
        public bool Settled;
        public bool Lost;
        public bool Probe;
        public long StreamOffset;
        public int StreamLength;
        public bool Fin;
        public bool Limit;   // carried MAX_DATA
    }
}
