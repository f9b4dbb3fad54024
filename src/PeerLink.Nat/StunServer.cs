// A STUN server (RFC 8489 §6.3, §9.1) with RFC 5780 behaviour discovery when the host has two addresses.
using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Nat.Stun;
using PeerLink.Transport;

namespace PeerLink.Nat;

/// <summary>
/// A STUN server over UDP and TCP. It answers Binding requests with the requester's reflexive address (XOR-MAPPED-ADDRESS),
/// RESPONSE-ORIGIN, SOFTWARE and FINGERPRINT; with an alternate address it also supports CHANGE-REQUEST and OTHER-ADDRESS
/// (RFC 5780). Anything that is not a valid STUN request is dropped; bad requests get the error the RFC names.
/// </summary>
/// <remarks>Thread-safe. Dispose it to close its sockets.</remarks>
public sealed class StunServer : IAsyncDisposable
{
    private readonly Endpoint[] _endpoints;
    private readonly string? _software;
    private readonly string? _username;
    private readonly byte[]? _shortTermKey;
    private readonly StunLongTermAuth? _longTerm;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task[] _loops;
    private readonly Socket? _tcpListener;
    private readonly int _maxTcpConnections;
    private readonly TimeSpan _tcpIdleTimeout;
    private readonly ConcurrentDictionary<Socket, Task> _tcpConnections = new();
    private int _disposed;

    private StunServer(Endpoint[] endpoints, Socket? tcpListener, StunServerOptions options, ILogger logger)
    {
        _tcpListener = tcpListener;
        _maxTcpConnections = options.MaxTcpConnections;
        _tcpIdleTimeout = options.TcpIdleTimeout;
        _endpoints = endpoints;
        _software = options.Software;
        _username = options.Username;
        if (options.Realm is not null)
        {
            _longTerm = new StunLongTermAuth(options.Realm, options.Username!, options.Password!, options.NonceLifetime, options.TimeProvider);
        }
        else if (options.Password is not null)
        {
            _shortTermKey = StunCredentials.ShortTermKey(options.Password);
        }
        _logger = logger;
        _loops = endpoints.Select(e => Task.Run(() => ReceiveLoopAsync(e)))
            .Concat(tcpListener is null ? [] : [Task.Run(AcceptLoopAsync)])
            .ToArray();
    }

    /// <summary>The TCP endpoint (the primary address and port), or null when TCP is off.</summary>
    public IPEndPoint? TcpEndPoint => (IPEndPoint?)_tcpListener?.LocalEndPoint;

    /// <summary>
    /// The bound UDP endpoints with their real ports: the primary first; with an alternate address also
    /// (primary address, alternate port), (alternate address, primary port) and (alternate address, alternate port).
    /// </summary>
    public IReadOnlyList<IPEndPoint> LocalEndPoints => _endpoints.Select(e => e.LocalEndPoint).ToArray();

    /// <summary>Binds the sockets and starts answering.</summary>
    /// <param name="options">Where to listen and how to answer.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <exception cref="ArgumentException">The options are inconsistent; the message says how.</exception>
    /// <exception cref="PeerLinkException">
    /// A socket could not be bound: <see cref="PeerLinkError.AddressInUse"/>, <see cref="PeerLinkError.AddressNotAvailable"/>,
    /// or another code that says why.
    /// </exception>
    public static Task<StunServer> StartAsync(StunServerOptions options, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(nameof(options));
        cancellationToken.ThrowIfCancellationRequested();
        ILogger logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<StunServer>();

        // With port 0 the UDP port is picked first, and TCP must get the same number; another program may hold it for
        // TCP (an outgoing connection's local port, say). Then pick again, a few times.
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                (List<Endpoint> endpoints, Socket? tcp) = Bind(options);
                foreach (Endpoint endpoint in endpoints)
                {
                    NatLog.ServerListening(logger, endpoint.LocalEndPoint);
                }

                return Task.FromResult(new StunServer([.. endpoints], tcp, options, logger));
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse && (options.PrimaryEndPoint.Port == 0 || options.AlternatePort == 0) && attempt < 10)
            {
            }
            catch (SocketException e)
            {
                throw SocketErrors.Map(e, $"The STUN server cannot bind {options.PrimaryEndPoint}{(options.AlternateAddress is { } a ? $" and {a}" : "")}");
            }
        }
    }

    private static (List<Endpoint> Endpoints, Socket? Tcp) Bind(StunServerOptions options)
    {
        var endpoints = new List<Endpoint>();
        try
        {
            Endpoint primary = Endpoint.Bind(options.PrimaryEndPoint, changedIp: false, changedPort: false);
            endpoints.Add(primary);
            if (options.AlternateAddress is { } alternate)
            {
                Endpoint primaryAltPort = Endpoint.Bind(new IPEndPoint(options.PrimaryEndPoint.Address, options.AlternatePort), false, true);
                endpoints.Add(primaryAltPort);
                endpoints.Add(Endpoint.Bind(new IPEndPoint(alternate, primary.LocalEndPoint.Port), true, false));
                endpoints.Add(Endpoint.Bind(new IPEndPoint(alternate, primaryAltPort.LocalEndPoint.Port), true, true));
            }
        }
        catch
        {
            foreach (Endpoint endpoint in endpoints)
            {
                endpoint.Socket.Dispose();
            }

            throw;
        }

        Socket? tcp = null;
        if (options.EnableTcp)
        {
            try
            {
                tcp = new Socket(options.PrimaryEndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                tcp.Bind(endpoints[0].LocalEndPoint);   // the primary's real port, also when 0 was asked for
                tcp.Listen(128);
            }
            catch
            {
                tcp?.Dispose();
                foreach (Endpoint endpoint in endpoints)
                {
                    endpoint.Socket.Dispose();
                }

                throw;
            }
        }

        return (endpoints, tcp);
    }

    /// <summary>Stops answering and closes the sockets. Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (Endpoint endpoint in _endpoints)
        {
            endpoint.Socket.Dispose();
        }

        _tcpListener?.Dispose();
        await Task.WhenAll(_loops).ConfigureAwait(false);
        await Task.WhenAll(_tcpConnections.Values).ConfigureAwait(false);
        _stopping.Dispose();
    }

    private async Task ReceiveLoopAsync(Endpoint endpoint)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(65536);
        EndPoint any = endpoint.LocalEndPoint.AddressFamily == AddressFamily.InterNetworkV6 ? new IPEndPoint(IPAddress.IPv6Any, 0) : new IPEndPoint(IPAddress.Any, 0);
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                SocketReceiveMessageFromResult received;
                try
                {
                    received = await endpoint.Socket.ReceiveMessageFromAsync(buffer, SocketFlags.None, any, _stopping.Token).ConfigureAwait(false);
                }
                catch (SocketException e) when (SocketErrors.IsTransientDatagramError(e))
                {
                    continue;   // ICMP errors from earlier sends, or an oversized datagram: not fatal for a server
                }

                var remote = (IPEndPoint)received.RemoteEndPoint;
                byte[]? response = HandleRequest(endpoint, buffer.AsSpan(0, received.ReceivedBytes), remote, received.PacketInformation.Address, out Endpoint? replyFrom, out IPEndPoint replyTo);
                if (response is not null)
                {
                    try
                    {
                        await replyFrom!.Socket.SendToAsync(response, SocketFlags.None, replyTo, _stopping.Token).ConfigureAwait(false);
                    }
                    catch (SocketException)
                    {
                        // The requester is unreachable now; nothing to do for a stateless server.
                    }
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException && _stopping.IsCancellationRequested)
        {
            // Stopping.
        }
        catch (Exception e)
        {
            NatLog.ReceiveLoopFailed(_logger, endpoint.LocalEndPoint, e);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task AcceptLoopAsync()
    {
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                Socket connection = await _tcpListener!.AcceptAsync(_stopping.Token).ConfigureAwait(false);
                if (_tcpConnections.Count >= _maxTcpConnections)
                {
                    connection.Dispose();
                    continue;
                }

                _tcpConnections[connection] = Task.Run(() => ServeTcpAsync(connection));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException && _stopping.IsCancellationRequested)
        {
            // Stopping.
        }
        catch (Exception e)
        {
            NatLog.ReceiveLoopFailed(_logger, _tcpListener!.LocalEndPoint!, e);
        }
    }

    /// <summary>
    /// STUN over TCP (RFC 8489 §6.2.2): messages back to back, each framed by its own header's length. Anything that is
    /// not STUN closes the connection; so does idleness.
    /// </summary>
    private async Task ServeTcpAsync(Socket connection)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(StunConstants.HeaderSize + 65535);
        try
        {
            var remote = (IPEndPoint)connection.RemoteEndPoint!;
            var local = (IPEndPoint)connection.LocalEndPoint!;
            while (!_stopping.IsCancellationRequested)
            {
                using var idle = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
                idle.CancelAfter(_tcpIdleTimeout);
                if (!await ReadExactlyAsync(connection, buffer.AsMemory(0, StunConstants.HeaderSize), idle.Token).ConfigureAwait(false))
                {
                    return;
                }

                int length = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(2));
                if ((buffer[0] & 0xC0) != 0 || System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(4)) != StunConstants.MagicCookie || (length & 3) != 0)
                {
                    NatLog.DatagramDropped(_logger, StunConstants.HeaderSize, remote, "not STUN over TCP; connection closed");
                    return;
                }

                if (!await ReadExactlyAsync(connection, buffer.AsMemory(StunConstants.HeaderSize, length), idle.Token).ConfigureAwait(false))
                {
                    return;
                }

                byte[]? response = HandleRequest(null, buffer.AsSpan(0, StunConstants.HeaderSize + length), Normalize(remote), local.Address, out _, out _);
                if (response is not null)
                {
                    await connection.SendAsync(response, SocketFlags.None, _stopping.Token).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Idle, closed by the peer, or stopping.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            _tcpConnections.TryRemove(connection, out _);
            connection.Dispose();
        }
    }

    private static async ValueTask<bool> ReadExactlyAsync(Socket socket, Memory<byte> destination, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            int read = await socket.ReceiveAsync(destination, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                return false;
            }

            destination = destination[read..];
        }

        return true;
    }

    /// <summary>Decides the answer to one datagram; null to drop it. Bounded work: one parse, one response.</summary>
    /// <summary>Handles one datagram as if it reached the primary UDP endpoint from <paramref name="remote"/>: the answer, or null (fuzzing).</summary>
    internal byte[]? HandleDatagram(ReadOnlySpan<byte> datagram, IPEndPoint remote) =>
        HandleRequest(_endpoints[0], datagram, remote, _endpoints[0].LocalEndPoint.Address, out _, out _);

    private byte[]? HandleRequest(Endpoint? endpoint, ReadOnlySpan<byte> datagram, IPEndPoint remote, IPAddress localAddress, out Endpoint? replyFrom, out IPEndPoint replyTo)
    {
        byte[]? response = HandleRequestUncounted(endpoint, datagram, remote, localAddress, out replyFrom, out replyTo);
        NatTelemetry.CountStunServer(answered: response is not null);
        return response;
    }

    private byte[]? HandleRequestUncounted(Endpoint? endpoint, ReadOnlySpan<byte> datagram, IPEndPoint remote, IPAddress localAddress, out Endpoint? replyFrom, out IPEndPoint replyTo)
    {
        // endpoint is null for TCP: the answer goes back on the connection, from the primary address and port.
        replyFrom = endpoint;
        replyTo = remote;
        if (!StunMessage.TryParse(datagram, out StunMessage? request, out string? reason, allowClassic: true))
        {
            NatLog.DatagramDropped(_logger, datagram.Length, remote, reason!);
            return null;
        }

        if (request!.Class != StunClass.Request || request.Method != StunMethod.Binding)
        {
            NatLog.DatagramDropped(_logger, datagram.Length, remote, $"class {request.Class}, method 0x{request.Method:x3} is not a Binding request");
            return null;
        }

        if (request.IsClassic)
        {
            return HandleClassic(request, endpoint, remote, localAddress, ref replyFrom);
        }

        if (request.UnknownComprehensionRequired.Count > 0)
        {
            return Error(request, remote, 420, "Unknown Attribute", request.UnknownComprehensionRequired);
        }

        StunAuthOutcome auth = Authenticate(request, remote.Address);
        if (auth.ErrorCode != 0)
        {
            return Error(request, remote, auth.ErrorCode, auth.Reason!, challenge: auth.Challenge);
        }

        // RFC 5780 §7.5: RESPONSE-PORT sends the answer to another port of the requester's address (its filtering tests
        // listen there); the mapped address still reports where the request came from.
        if (endpoint is not null && request.GetResponsePort() is { } responsePort && responsePort != 0)
        {
            replyTo = new IPEndPoint(remote.Address, responsePort);
        }

        if (request.GetChangeRequest() is { } change && change != 0)
        {
            if (endpoint is null)
            {
                // A TCP answer can only come back on its connection: CHANGE-REQUEST is a UDP test (RFC 5780 §7.2).
                return Error(request, remote, 400, "Bad Request: CHANGE-REQUEST needs UDP", auth: auth);
            }

            bool changeIp = (change & StunConstants.ChangeIp) != 0;
            bool changePort = (change & StunConstants.ChangePort) != 0;
            Endpoint? target = FindEndpoint(endpoint.ChangedIp ^ changeIp, endpoint.ChangedPort ^ changePort);
            if (target is null)
            {
                return Error(request, remote, 420, "Unknown Attribute", [StunAttributeType.ChangeRequest], auth: auth);
            }

            replyFrom = target;
        }

        var response = new StunMessageBuilder(StunClass.SuccessResponse, StunMethod.Binding, request.TransactionId)
            .AddAddress(StunAttributeType.XorMappedAddress, Normalize(remote));
        Endpoint from = replyFrom ?? _endpoints[0];
        IPAddress origin = from == endpoint && IsWildcard(from.LocalEndPoint.Address) || replyFrom is null ? localAddress : from.LocalEndPoint.Address;
        if (!IsWildcard(origin))
        {
            response.AddAddress(StunAttributeType.ResponseOrigin, new IPEndPoint(Normalize(origin), from.LocalEndPoint.Port));
        }

        if (FindEndpoint(!from.ChangedIp, !from.ChangedPort) is { } other)
        {
            response.AddAddress(StunAttributeType.OtherAddress, other.LocalEndPoint);
        }

        return Finish(response, auth);
    }

    /// <summary>
    /// An RFC 3489 Binding request (no magic cookie), answered as RFC 8489 §12 says deployed servers do: MAPPED-ADDRESS
    /// (not XOR'd: a classic client knows no XOR-MAPPED-ADDRESS), SOURCE-ADDRESS and, with an alternate address,
    /// CHANGED-ADDRESS; the whole 16-byte transaction id copied back; no FINGERPRINT. CHANGE-REQUEST is honoured as for
    /// RFC 5780; RESPONSE-ADDRESS is ignored (answering to an address the request names would make the server a
    /// reflector). A server that asks for credentials does not answer classic requests: RFC 3489's own scheme is not
    /// implemented.
    /// </summary>
    private byte[]? HandleClassic(StunMessage request, Endpoint? endpoint, IPEndPoint remote, IPAddress localAddress, ref Endpoint? replyFrom)
    {
        if (_longTerm is not null || _shortTermKey is not null)
        {
            NatLog.DatagramDropped(_logger, request.Bytes.Length, remote, "an RFC 3489 request to a server that asks for credentials");
            return null;
        }

        if (request.GetChangeRequest() is { } change && change != 0)
        {
            if (endpoint is null)
            {
                return null;   // over TCP there is no other address to answer from
            }

            Endpoint? target = FindEndpoint(endpoint.ChangedIp ^ (change & StunConstants.ChangeIp) != 0, endpoint.ChangedPort ^ (change & StunConstants.ChangePort) != 0);
            if (target is null)
            {
                var refused = StunMessageBuilder.ClassicResponse(StunClass.ErrorResponse, StunMethod.Binding, request.ClassicTransactionId);
                return refused.AddErrorCode(420, "Unknown Attribute").AddUnknownAttributes([StunAttributeType.ChangeRequest]).ToArray();
            }

            replyFrom = target;
        }

        Endpoint from = replyFrom ?? _endpoints[0];
        IPAddress origin = from == endpoint && IsWildcard(from.LocalEndPoint.Address) || replyFrom is null ? localAddress : from.LocalEndPoint.Address;
        var response = StunMessageBuilder.ClassicResponse(StunClass.SuccessResponse, StunMethod.Binding, request.ClassicTransactionId)
            .AddAddress(StunAttributeType.MappedAddress, Normalize(remote));
        if (!IsWildcard(origin))
        {
            response.AddAddress(StunAttributeType.SourceAddress, new IPEndPoint(Normalize(origin), from.LocalEndPoint.Port));
        }

        if (FindEndpoint(!from.ChangedIp, !from.ChangedPort) is { } other)
        {
            response.AddAddress(StunAttributeType.ChangedAddress, other.LocalEndPoint);
        }

        if (_software is not null)
        {
            response.AddString(StunAttributeType.Software, _software);
        }

        return response.ToArray();
    }

    /// <summary>Checks the request's credentials, if the server asks for any.</summary>
    private StunAuthOutcome Authenticate(StunMessage request, IPAddress client)
    {
        if (_longTerm is not null)
        {
            return _longTerm.Check(request, client);
        }

        if (_shortTermKey is null)
        {
            return default;
        }

        // RFC 8489 §9.1.3: USERNAME and MESSAGE-INTEGRITY(-SHA256), or 400; a wrong user or MAC is 401.
        bool sha256 = request.Has(StunAttributeType.MessageIntegritySha256);
        if (!sha256 && !request.Has(StunAttributeType.MessageIntegrity) || request.GetUsername() is not { } username)
        {
            return StunAuthOutcome.Error(400, "Bad Request");
        }

        bool valid = username == _username
            && (sha256 ? request.VerifyMessageIntegritySha256(_shortTermKey) : request.VerifyMessageIntegrity(_shortTermKey));
        return valid ? StunAuthOutcome.Success(_shortTermKey, sha256) : StunAuthOutcome.Error(401, "Unauthenticated");
    }

    // auth is default (no key) for the errors of authentication itself: those carry no integrity, since the requester's
    // credentials are what failed; a 401 or 438 of the long-term mechanism carries the challenge instead.
    private byte[] Error(StunMessage request, IPEndPoint remote, int code, string reason, IReadOnlyList<ushort>? unknown = null, bool challenge = false, StunAuthOutcome auth = default)
    {
        NatLog.ErrorAnswered(_logger, remote, code);
        var response = new StunMessageBuilder(StunClass.ErrorResponse, StunMethod.Binding, request.TransactionId).AddErrorCode(code, reason);
        if (unknown is not null)
        {
            response.AddUnknownAttributes(unknown);
        }

        if (challenge)
        {
            _longTerm!.AddChallenge(response, remote.Address);
        }

        return Finish(response, auth);
    }

    private byte[] Finish(StunMessageBuilder response, StunAuthOutcome auth)
    {
        if (_software is not null)
        {
            response.AddString(StunAttributeType.Software, _software);
        }

        if (auth.Key is { } key)
        {
            if (auth.Sha256)
            {
                response.AddMessageIntegritySha256(key);
            }
            else
            {
                response.AddMessageIntegrity(key);
            }
        }

        return response.AddFingerprint().ToArray();
    }

    private Endpoint? FindEndpoint(bool changedIp, bool changedPort) =>
        Array.Find(_endpoints, e => e.ChangedIp == changedIp && e.ChangedPort == changedPort);

    private static IPEndPoint Normalize(IPEndPoint endPoint) =>
        endPoint.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(endPoint.Address.MapToIPv4(), endPoint.Port) : endPoint;

    private static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    private static bool IsWildcard(IPAddress address) => address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);

    /// <summary>One bound socket and where it stands among the four RFC 5780 endpoints.</summary>
    private sealed class Endpoint(Socket socket, bool changedIp, bool changedPort)
    {
        public Socket Socket { get; } = socket;

        public bool ChangedIp { get; } = changedIp;

        public bool ChangedPort { get; } = changedPort;

        public IPEndPoint LocalEndPoint { get; } = (IPEndPoint)socket.LocalEndPoint!;

        public static Endpoint Bind(IPEndPoint endPoint, bool changedIp, bool changedPort)
        {
            var socket = new Socket(endPoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            try
            {
                if (endPoint.AddressFamily == AddressFamily.InterNetworkV6)
                {
                    socket.DualMode = false;
                }

                socket.SetSocketOption(endPoint.AddressFamily == AddressFamily.InterNetworkV6 ? SocketOptionLevel.IPv6 : SocketOptionLevel.IP, SocketOptionName.PacketInformation, true);
                socket.Bind(endPoint);
                return new Endpoint(socket, changedIp, changedPort);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }
}
