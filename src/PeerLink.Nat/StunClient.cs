// A STUN client (RFC 8489 §6.2, §9): Binding requests over UDP with the RFC's retransmission schedule, on a socket the
// caller owns, so that the same local port can later be used to punch through a NAT.
using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
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

/// <summary>Learns a socket's reflexive (public) address from a STUN server.</summary>
public static class StunClient
{
    /// <summary>
    /// Sends a Binding request from <paramref name="socket"/> to <paramref name="server"/> and returns the answer.
    /// Datagrams that are not the answer (other traffic on the socket) are ignored while waiting.
    /// </summary>
    /// <param name="socket">
    /// A bound UDP socket, or a TCP socket connected to <paramref name="server"/> (STUN over TCP, RFC 8489 §6.2.2). The
    /// caller owns it, and it stays open, so that its local port can be used again to punch. Do not read from it meanwhile.
    /// </param>
    /// <param name="server">The STUN server.</param>
    /// <param name="options">Retransmission and credentials; defaults when null.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <exception cref="PeerLinkException"><see cref="PeerLinkError.StunTimeout"/> when no answer came in time;
    /// <see cref="PeerLinkError.StunError"/> for an error response or a response that does not verify; a socket failure's own
    /// code (<see cref="PeerLinkError.HostUnreachable"/>, <see cref="PeerLinkError.ConnectionReset"/>, …) when the request
    /// cannot be sent or the TCP connection fails.</exception>
    public static Task<StunBindingResult> BindingAsync(Socket socket, IPEndPoint server, StunClientOptions? options = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default) =>
        BindingAsync(socket, server, changeRequest: 0, options, loggerFactory, cancellationToken);

    /// <summary>
    /// Sends Binding requests from one UDP socket to several servers at once, each on its own retransmission schedule,
    /// and compares their answers. It returns when every server has answered or given up; it does not throw for servers
    /// that fail (see <see cref="StunQueryResult.Failures"/>).
    /// </summary>
    /// <param name="socket">A bound UDP socket the caller owns; it is not closed. Do not read from it meanwhile.</param>
    /// <param name="servers">The STUN servers, at least one.</param>
    /// <param name="options">Retransmission and short-term credentials; defaults when null. Long-term credentials need
    /// <see cref="BindingAsync(Socket, IPEndPoint, StunClientOptions?, ILoggerFactory?, CancellationToken)"/> per server.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the query.</param>
    public static async Task<StunQueryResult> QueryAsync(Socket socket, IReadOnlyList<IPEndPoint> servers, StunClientOptions? options = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(servers);
        if (socket.SocketType != SocketType.Dgram)
        {
            throw new ArgumentException("QueryAsync needs a UDP socket.", nameof(socket));
        }

        if (servers.Count == 0 || servers.Any(s => s is null))
        {
            throw new ArgumentException("Give at least one server, and no null ones.", nameof(servers));
        }

        options ??= new StunClientOptions();
        options.Validate(nameof(options));
        if (options.UseLongTermCredentials)
        {
            throw new ArgumentException("Long-term credentials need a challenge per server: use BindingAsync for each.", nameof(options));
        }

        ILogger logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger(typeof(StunClient));
        byte[]? key = options.Password is null ? null : StunCredentials.ShortTermKey(options.Password);
        var pending = new Dictionary<UInt128, TaskCompletionSource<(StunMessage Message, IPEndPoint From)>>();
        var requests = new (byte[] Request, UInt128 Id, TaskCompletionSource<(StunMessage Message, IPEndPoint From)> Answer)[servers.Count];
        for (int i = 0; i < servers.Count; i++)
        {
            byte[] request = BuildRequest(0, options, key, null, out byte[] transactionId);
            var answer = new TaskCompletionSource<(StunMessage, IPEndPoint)>(TaskCreationOptions.RunContinuationsAsynchronously);
            UInt128 id = IdOf(transactionId);
            pending[id] = answer;
            requests[i] = (request, id, answer);
        }

        using var stopReceiving = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task receiver = ReceiveAnswersAsync(socket, pending, stopReceiving.Token);
        var timings = new TimeSpan[servers.Count];
        try
        {
            await Task.WhenAll(Enumerable.Range(0, servers.Count).Select(async i =>
            {
                for (int attempt = 1; attempt <= options.MaxTransmissions; attempt++)
                {
                    TimeSpan wait = WaitAfter(attempt, options);
                    NatLog.Transmission(logger, servers[i], attempt, (int)wait.TotalMilliseconds);
                    long sentAt = options.TimeProvider.GetTimestamp();
                    try
                    {
                        await socket.SendToAsync(requests[i].Request, SocketFlags.None, servers[i], cancellationToken).ConfigureAwait(false);
                    }
                    catch (SocketException e)
                    {
                        // This server cannot be reached from here (no route, say): it fails alone, the others go on.
                        requests[i].Answer.TrySetException(SocketErrors.Map(e, $"Cannot send a Binding request to {servers[i]}"));
                        return;
                    }

                    Task answered = requests[i].Answer.Task;
                    if (await Task.WhenAny(answered, Task.Delay(wait, options.TimeProvider, cancellationToken)).ConfigureAwait(false) == answered)
                    {
                        timings[i] = options.TimeProvider.GetElapsedTime(sentAt);
                        return;
                    }

                    cancellationToken.ThrowIfCancellationRequested();
                }

                requests[i].Answer.TrySetException(new PeerLinkException(PeerLinkError.StunTimeout, $"{servers[i]} did not answer {options.MaxTransmissions} Binding transmissions."));
            })).ConfigureAwait(false);
        }
        finally
        {
            await stopReceiving.CancelAsync().ConfigureAwait(false);
            await receiver.ConfigureAwait(false);
        }

        var answers = new List<StunBindingResult>();
        var failures = new List<(IPEndPoint, PeerLinkException)>();
        for (int i = 0; i < servers.Count; i++)
        {
            try
            {
                (StunMessage response, IPEndPoint from) = await requests[i].Answer.Task.ConfigureAwait(false);
                answers.Add(ToResult(response, servers[i], from, timings[i], key));
                NatTelemetry.CountStunClient(Diagnostics.Telemetry.Success);
            }
            catch (PeerLinkException e)
            {
                NatTelemetry.CountStunClient(Diagnostics.Telemetry.OutcomeOf(e));
                failures.Add((servers[i], e));
            }
        }

        return new StunQueryResult(answers, failures);
    }

    private static async Task ReceiveAnswersAsync(Socket socket, Dictionary<UInt128, TaskCompletionSource<(StunMessage, IPEndPoint)>> pending, CancellationToken cancellationToken)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(2048);
        try
        {
            EndPoint any = new IPEndPoint(socket.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
            while (!cancellationToken.IsCancellationRequested)
            {
                SocketReceiveFromResult received;
                try
                {
                    received = await socket.ReceiveFromAsync(buffer, SocketFlags.None, any, cancellationToken).ConfigureAwait(false);
                }
                catch (SocketException e) when (SocketErrors.IsTransientDatagramError(e))
                {
                    continue;
                }

                if (StunMessage.TryParse(buffer.AsSpan(0, received.ReceivedBytes), out StunMessage? message, out _)
                    && message!.Class is StunClass.SuccessResponse or StunClass.ErrorResponse
                    && message.Method == StunMethod.Binding
                    && (!message.Has(StunAttributeType.Fingerprint) || message.HasValidFingerprint())
                    && pending.TryGetValue(IdOf(message.TransactionId), out var answer))
                {
                    answer.TrySetResult((message, (IPEndPoint)received.RemoteEndPoint));
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Every server has answered or given up.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Sends a Binding request from a <see cref="UdpTransport"/>'s own socket, the one its sessions use, so that the
    /// reflexive address learned is the one a peer must punch towards; the transport's sessions go on meanwhile.
    /// </summary>
    /// <param name="transport">The UDP transport whose socket asks.</param>
    /// <param name="server">The STUN server.</param>
    /// <param name="options">Retransmission and short-term credentials; defaults when null (long-term credentials need a socket of their own).</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <exception cref="PeerLinkException"><see cref="PeerLinkError.StunTimeout"/> when no answer came in time;
    /// <see cref="PeerLinkError.StunError"/> for an error response or one that does not verify; a socket failure's own code.</exception>
    public static async Task<StunBindingResult> BindingAsync(UdpTransport transport, IPEndPoint server, StunClientOptions? options = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(server);
        options ??= new StunClientOptions();
        options.Validate(nameof(options));
        if (options.UseLongTermCredentials)
        {
            throw new ArgumentException("Long-term credentials need a challenge round: use BindingAsync with a socket.", nameof(options));
        }

        ILogger logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger(typeof(StunClient));
        byte[]? key = options.Password is null ? null : StunCredentials.ShortTermKey(options.Password);
        byte[] request = BuildRequest(0, options, key, null, out byte[] transactionId);
        TransportAnswers answers = TransportAnswers.For(transport);
        UInt128 id = IdOf(transactionId);
        var answer = answers.Expect(id);
        try
        {
            for (int attempt = 1; attempt <= options.MaxTransmissions; attempt++)
            {
                TimeSpan wait = WaitAfter(attempt, options);
                NatLog.Transmission(logger, server, attempt, (int)wait.TotalMilliseconds);
                long sentAt = options.TimeProvider.GetTimestamp();
                transport.SendRaw(request, server);
                Task answered = answer.Task;
                if (await Task.WhenAny(answered, Task.Delay(wait, options.TimeProvider, cancellationToken)).ConfigureAwait(false) == answered)
                {
                    (StunMessage response, IPEndPoint from) = await answer.Task.ConfigureAwait(false);
                    return ToResult(response, server, from, options.TimeProvider.GetElapsedTime(sentAt), key);
                }

                cancellationToken.ThrowIfCancellationRequested();
            }

            throw new PeerLinkException(PeerLinkError.StunTimeout, $"{server} did not answer {options.MaxTransmissions} Binding transmissions (initial RTO {options.InitialRto.TotalMilliseconds} ms).");
        }
        finally
        {
            answers.Forget(id);
        }
    }

    /// <summary>The STUN answers arriving on one UDP transport, matched to the transactions waiting for them.</summary>
    private sealed class TransportAnswers
    {
        private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<UdpTransport, TransportAnswers> s_all = new();
        private readonly System.Collections.Concurrent.ConcurrentDictionary<UInt128, TaskCompletionSource<(StunMessage, IPEndPoint)>> _pending = new();

        public static TransportAnswers For(UdpTransport transport) => s_all.GetValue(transport, t =>
        {
            var answers = new TransportAnswers();
            t.StunReceived = answers.OnDatagram;
            return answers;
        });

        public TaskCompletionSource<(StunMessage, IPEndPoint)> Expect(UInt128 id)
        {
            var answer = new TaskCompletionSource<(StunMessage, IPEndPoint)>(TaskCreationOptions.RunContinuationsAsynchronously);
            _pending[id] = answer;
            return answer;
        }

        public void Forget(UInt128 id) => _pending.TryRemove(id, out _);

        private void OnDatagram(byte[] datagram, IPEndPoint from)
        {
            if (StunMessage.TryParse(datagram, out StunMessage? message, out _)
                && message!.Class is StunClass.SuccessResponse or StunClass.ErrorResponse
                && message.Method == StunMethod.Binding
                && (!message.Has(StunAttributeType.Fingerprint) || message.HasValidFingerprint())
                && _pending.TryGetValue(IdOf(message.TransactionId), out var answer))
            {
                answer.TrySetResult((message, from));
            }
        }
    }

    /// <summary>RFC 8489 §6.2.1: after transmission k wait RTO·2^(k-1), and Rm·RTO after the last one.</summary>
    private static TimeSpan WaitAfter(int attempt, StunClientOptions options) =>
        attempt < options.MaxTransmissions ? options.InitialRto * Math.Pow(2, attempt - 1) : options.InitialRto * options.FinalWaitMultiplier;

    private static UInt128 IdOf(ReadOnlySpan<byte> transactionId)
    {
        Span<byte> padded = stackalloc byte[16];
        padded.Clear();
        transactionId.CopyTo(padded[4..]);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(padded);
    }

    private static StunBindingResult ToResult(StunMessage response, IPEndPoint server, IPEndPoint from, TimeSpan rtt, byte[]? key, bool sha256 = false)
    {
        if (response.Class != StunClass.SuccessResponse)
        {
            (int code, string reason) = response.GetErrorCode() ?? (0, "an error response without a valid ERROR-CODE");
            throw new PeerLinkException(PeerLinkError.StunError, $"{server} answered the Binding request with error {code} ({reason}).");
        }

        if (key is not null && !(sha256 ? response.VerifyMessageIntegritySha256(key) : response.VerifyMessageIntegrity(key)))
        {
            throw new PeerLinkException(PeerLinkError.StunError, $"The response of {server} does not carry a valid {(sha256 ? "MESSAGE-INTEGRITY-SHA256" : "MESSAGE-INTEGRITY")}.");
        }

        IPEndPoint mapped = response.GetXorMappedAddress() ?? response.GetMappedAddress()
            ?? throw new PeerLinkException(PeerLinkError.StunError, $"The response of {server} has no mapped address.");
        return new StunBindingResult(mapped, server, from, response.GetResponseOrigin(), response.GetOtherAddress(), response.GetSoftware(), rtt);
    }

    /// <summary>A Binding request with a CHANGE-REQUEST (RFC 5780 §7.2), for behaviour discovery.</summary>
    internal static async Task<StunBindingResult> BindingAsync(Socket socket, IPEndPoint server, uint changeRequest, StunClientOptions? options, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(server);
        bool tcp = socket.SocketType == SocketType.Stream;
        if (!tcp && socket.SocketType != SocketType.Dgram)
        {
            throw new ArgumentException("The socket must be a UDP socket or a connected TCP socket.", nameof(socket));
        }

        if (tcp && !socket.Connected)
        {
            throw new ArgumentException("A TCP socket must be connected to the server first.", nameof(socket));
        }

        if (tcp && changeRequest != 0)
        {
            throw new ArgumentException("CHANGE-REQUEST is a UDP test.", nameof(changeRequest));
        }

        options ??= new StunClientOptions();
        options.Validate(nameof(options));
        ILogger logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger(typeof(StunClient));

        byte[]? key = options.Password is not null && !options.UseLongTermCredentials ? StunCredentials.ShortTermKey(options.Password) : null;
        LongTermState? longTerm = null;
        for (int round = 0; ; round++)
        {
            byte[] request = BuildRequest(changeRequest, options, key, longTerm, out byte[] transactionId);
            (StunMessage response, IPEndPoint from, TimeSpan rtt) = tcp
                ? await TransactTcpAsync(socket, server, request, transactionId, options, cancellationToken).ConfigureAwait(false)
                : await TransactAsync(socket, server, request, transactionId, options, logger, cancellationToken).ConfigureAwait(false);

            if (response.Class == StunClass.SuccessResponse)
            {
                return ToResult(response, server, from, rtt, key, longTerm?.Sha256Integrity ?? false);
            }

            (int code, string reason) = response.GetErrorCode() ?? (0, "an error response without a valid ERROR-CODE");
            bool challenge = code == 401 && options.UseLongTermCredentials && options.Password is not null && round == 0;
            bool stale = code == 438 && options.UseLongTermCredentials && longTerm is not null && round < 3;
            if ((challenge || stale) && response.GetRealm() is { } realm && response.GetNonce() is { } nonce)
            {
                longTerm = LongTermState.FromChallenge(realm, nonce, response.GetPasswordAlgorithms());
                key = StunCredentials.LongTermKey(options.Username!, realm, options.Password!, longTerm.Algorithm);
                continue;
            }

            throw new PeerLinkException(PeerLinkError.StunError, $"{server} answered the Binding request with error {code} ({reason}).");
        }
    }

    /// <summary>
    /// What a long-term challenge (RFC 8489 §9.2.5) asks for: its REALM and NONCE and, when the nonce carries the RFC 8489
    /// cookie with the password-algorithms feature, the server's PASSWORD-ALGORITHMS echoed with the chosen one (SHA-256
    /// when offered) and MESSAGE-INTEGRITY-SHA256. Against an RFC 5389 server: MD5 and MESSAGE-INTEGRITY.
    /// </summary>
    private sealed record LongTermState(string Realm, string Nonce, IReadOnlyList<ushort> Offered, ushort Algorithm, bool Sha256Integrity)
    {
        public static LongTermState FromChallenge(string realm, string nonce, IReadOnlyList<ushort> offered)
        {
            if (!StunLongTermAuth.AnnouncesPasswordAlgorithms(nonce) || offered.Count == 0)
            {
                return new LongTermState(realm, nonce, [], StunConstants.PasswordAlgorithmMd5, StunLongTermAuth.HasNonceCookie(nonce));
            }

            ushort algorithm = offered.Contains(StunConstants.PasswordAlgorithmSha256) ? StunConstants.PasswordAlgorithmSha256
                : offered.Contains(StunConstants.PasswordAlgorithmMd5) ? StunConstants.PasswordAlgorithmMd5
                : throw new PeerLinkException(PeerLinkError.StunError, "The server offers no password algorithm this client knows (MD5 or SHA-256).");
            return new LongTermState(realm, nonce, offered, algorithm, Sha256Integrity: true);
        }
    }

    /// <summary>
    /// RFC 5780 §4.6: a Binding request from <paramref name="from"/> whose answer the server sends, through RESPONSE-PORT,
    /// to the mapped port of <paramref name="receiveOn"/>. True when that answer arrives: the older mapping still lives.
    /// </summary>
    internal static async Task<bool> ProbeMappingAsync(Socket from, Socket receiveOn, IPEndPoint server, ushort mappedPort, StunClientOptions options, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        ILogger logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger(typeof(StunClient));
        byte[] request = BuildRequest(0, options, null, null, out byte[] transactionId, mappedPort);
        try
        {
            (StunMessage response, _, _) = await TransactAsync(from, server, request, transactionId, options, logger, cancellationToken, receiveOn).ConfigureAwait(false);
            if (response.Class != StunClass.SuccessResponse)
            {
                (int code, string reason) = response.GetErrorCode() ?? (0, "no valid ERROR-CODE");
                throw new PeerLinkException(PeerLinkError.StunError, $"{server} answered a RESPONSE-PORT request with error {code} ({reason}); it does not support RFC 5780 lifetime tests.");
            }

            return true;
        }
        catch (PeerLinkException e) when (e.Error == PeerLinkError.StunTimeout)
        {
            return false;
        }
    }

    private static byte[] BuildRequest(uint changeRequest, StunClientOptions options, byte[]? key, LongTermState? longTerm, out byte[] transactionId, ushort responsePort = 0)
    {
        transactionId = StunMessageBuilder.NewTransactionId();
        var builder = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, transactionId);
        if (changeRequest != 0)
        {
            builder.AddUInt32(StunAttributeType.ChangeRequest, changeRequest);
        }

        if (responsePort != 0)
        {
            builder.AddResponsePort(responsePort);
        }

        if (options.Software is not null)
        {
            builder.AddString(StunAttributeType.Software, options.Software);
        }

        if (key is not null)
        {
            builder.AddString(StunAttributeType.Username, options.Username!);
            if (longTerm is not null)
            {
                builder.AddString(StunAttributeType.Realm, longTerm.Realm).AddString(StunAttributeType.Nonce, longTerm.Nonce);
                if (longTerm.Offered.Count > 0)
                {
                    builder.AddPasswordAlgorithms([.. longTerm.Offered]).AddPasswordAlgorithm(longTerm.Algorithm);
                }
            }

            if (longTerm?.Sha256Integrity == true)
            {
                builder.AddMessageIntegritySha256(key);
            }
            else
            {
                builder.AddMessageIntegrity(key);
            }
        }

        return builder.AddFingerprint().ToArray();
    }

    /// <summary>Over TCP: send once, then read framed messages until the answer or Ti (RFC 8489 §6.2.2).</summary>
    private static Task<(StunMessage Response, IPEndPoint From, TimeSpan Rtt)> TransactTcpAsync(
        Socket socket, IPEndPoint server, byte[] request, byte[] transactionId, StunClientOptions options, CancellationToken cancellationToken) =>
        CountedAsync(TransactTcpUncountedAsync(socket, server, request, transactionId, options, cancellationToken));

    /// <summary>Counts a client transaction by its outcome ("peerlink.stun.requests").</summary>
    private static async Task<T> CountedAsync<T>(Task<T> transaction)
    {
        try
        {
            T result = await transaction.ConfigureAwait(false);
            NatTelemetry.CountStunClient(Diagnostics.Telemetry.Success);
            return result;
        }
        catch (Exception e)
        {
            NatTelemetry.CountStunClient(Diagnostics.Telemetry.OutcomeOf(e));
            throw;
        }
    }

    private static async Task<(StunMessage Response, IPEndPoint From, TimeSpan Rtt)> TransactTcpUncountedAsync(
        Socket socket, IPEndPoint server, byte[] request, byte[] transactionId, StunClientOptions options, CancellationToken cancellationToken)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(StunConstants.HeaderSize + 65535);
        using var deadline = new CancellationTokenSource(options.TcpTransactionTimeout, options.TimeProvider);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        try
        {
            long sentAt = options.TimeProvider.GetTimestamp();
            await socket.SendAsync(request, SocketFlags.None, timeout.Token).ConfigureAwait(false);
            while (true)
            {
                await ReadExactlyAsync(socket, buffer.AsMemory(0, StunConstants.HeaderSize), server, timeout.Token).ConfigureAwait(false);
                int length = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(2));
                await ReadExactlyAsync(socket, buffer.AsMemory(StunConstants.HeaderSize, length), server, timeout.Token).ConfigureAwait(false);
                if (!StunMessage.TryParse(buffer.AsSpan(0, StunConstants.HeaderSize + length), out StunMessage? message, out string? error))
                {
                    throw new PeerLinkException(PeerLinkError.StunError, $"{server} sent something over TCP that is not STUN: {error}");
                }

                if (message!.Class is StunClass.SuccessResponse or StunClass.ErrorResponse && message.TransactionId.SequenceEqual(transactionId)
                    && (!message.Has(StunAttributeType.Fingerprint) || message.HasValidFingerprint()))
                {
                    return (message, server, options.TimeProvider.GetElapsedTime(sentAt));
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new PeerLinkException(PeerLinkError.StunTimeout, $"{server} did not answer over TCP within {options.TcpTransactionTimeout.TotalSeconds} s.");
        }
        catch (SocketException e)
        {
            throw SocketErrors.Map(e, $"The TCP connection to STUN server {server} failed");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async ValueTask ReadExactlyAsync(Socket socket, Memory<byte> destination, IPEndPoint server, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            int read = await socket.ReceiveAsync(destination, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                throw new PeerLinkException(PeerLinkError.ConnectionReset, $"{server} closed the TCP connection before answering.");
            }

            destination = destination[read..];
        }
    }

    /// <summary>One transaction: send, wait RTO, resend with the RTO doubled, … then wait Rm × RTO after the last (§6.2.1).</summary>
    private static Task<(StunMessage Response, IPEndPoint From, TimeSpan Rtt)> TransactAsync(
        Socket socket, IPEndPoint server, byte[] request, byte[] transactionId, StunClientOptions options, ILogger logger, CancellationToken cancellationToken, Socket? receiveOn = null) =>
        CountedAsync(TransactUncountedAsync(socket, server, request, transactionId, options, logger, cancellationToken, receiveOn));

    private static async Task<(StunMessage Response, IPEndPoint From, TimeSpan Rtt)> TransactUncountedAsync(
        Socket socket, IPEndPoint server, byte[] request, byte[] transactionId, StunClientOptions options, ILogger logger, CancellationToken cancellationToken, Socket? receiveOn)
    {
        receiveOn ??= socket;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(2048);
        try
        {
            for (int attempt = 1; attempt <= options.MaxTransmissions; attempt++)
            {
                TimeSpan wait = WaitAfter(attempt, options);
                NatLog.Transmission(logger, server, attempt, (int)wait.TotalMilliseconds);
                long sentAt = options.TimeProvider.GetTimestamp();
                await socket.SendToAsync(request, SocketFlags.None, server, cancellationToken).ConfigureAwait(false);

                using var deadline = new CancellationTokenSource(wait, options.TimeProvider);
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
                try
                {
                    while (true)
                    {
                        EndPoint any = new IPEndPoint(server.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
                        SocketReceiveFromResult received;
                        try
                        {
                            received = await receiveOn.ReceiveFromAsync(buffer, SocketFlags.None, any, timeout.Token).ConfigureAwait(false);
                        }
                        catch (SocketException e) when (SocketErrors.IsTransientDatagramError(e))
                        {
                            continue;   // an ICMP error or an oversized datagram: keep waiting for the answer
                        }

                        if (StunMessage.TryParse(buffer.AsSpan(0, received.ReceivedBytes), out StunMessage? message, out _)
                            && message!.Class is StunClass.SuccessResponse or StunClass.ErrorResponse
                            && message.Method == StunMethod.Binding
                            && message.TransactionId.SequenceEqual(transactionId)
                            && (!message.Has(StunAttributeType.Fingerprint) || message.HasValidFingerprint()))
                        {
                            return (message, (IPEndPoint)received.RemoteEndPoint, options.TimeProvider.GetElapsedTime(sentAt));
                        }
                    }
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    // This transmission's wait is over: send again, or give up after the last.
                }
            }

            throw new PeerLinkException(PeerLinkError.StunTimeout, $"{server} did not answer {options.MaxTransmissions} Binding transmissions (initial RTO {options.InitialRto.TotalMilliseconds} ms).");
        }
        catch (SocketException e)
        {
            throw SocketErrors.Map(e, $"The Binding transaction with {server} failed");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
