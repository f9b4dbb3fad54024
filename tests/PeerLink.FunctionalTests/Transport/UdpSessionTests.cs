using System;
using System.Collections.Generic;
using System.Net;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Sessions;
using PeerLink.Testing;
using PeerLink.Transport;
using Xunit;

namespace PeerLink.FunctionalTests.Transport;

/// <summary>Secure sessions over UDP on loopback: the same behaviour as over TCP.</summary>
public sealed class UdpSessionTests : PeerIdentities
{
    private static readonly IPEndPoint AnyLoopback = new(IPAddress.Loopback, 0);

    private SecureSessionOptions Options(PeerIdentity identity) => new() { Identity = identity, HandshakeTimeout = TimeSpan.FromSeconds(10) };

    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task IkAndXxSessionsCarryMessagesBothWays(bool knowsPeer)
    {
        await using UdpPair pair = await UdpPair.OpenAsync(Options(Alice), Options(Bob), knowsPeer ? Bob.PeerId : null);
        (SecureSession a, SecureSession b) = (pair.A, pair.B);

        Assert.Equal(Bob.PeerId, a.RemotePeerId);
        Assert.Equal(Alice.PeerId, b.RemotePeerId);
        Assert.Equal(a.HandshakeHash.ToArray(), b.HandshakeHash.ToArray());
        Assert.Contains(knowsPeer ? "IK" : "XX", a.Protocol.Name, StringComparison.Ordinal);
        Assert.Equal(SessionPathKind.DirectUdp, a.Path.Kind);
        Assert.StartsWith("direct-udp: 127.0.0.1:", a.Path.Description, StringComparison.Ordinal);

        await a.SendAsync("hello over udp"u8.ToArray(), Timeout);
        PeerMessage? received = await b.ReceiveAsync(Timeout);
        Assert.Equal("hello over udp"u8.ToArray(), received!.Value.Payload.ToArray());

        await b.SendAsync("and back"u8.ToArray(), Timeout);
        received = await a.ReceiveAsync(Timeout);
        Assert.Equal("and back"u8.ToArray(), received!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task LargeMessagesAndManySmallOnesArriveWholeAndInOrder()
    {
        await using UdpPair pair = await UdpPair.OpenAsync(Options(Alice), Options(Bob), Bob.PeerId);
        (SecureSession a, SecureSession b) = (pair.A, pair.B);

        byte[] big = RandomNumberGenerator.GetBytes(1024 * 1024);
        const int Small = 5000;
        Task sending = Task.Run(async () =>
        {
            await a.SendAsync(big, Timeout);
            for (int i = 0; i < Small; i++)
            {
                await a.SendAsync(BitConverter.GetBytes(i), Timeout);
            }

            await a.SendAsync(big, Timeout);
        });

        PeerMessage? first = await b.ReceiveAsync(Timeout);
        Assert.True(big.AsSpan().SequenceEqual(first!.Value.Payload.Span));
        for (int i = 0; i < Small; i++)
        {
            PeerMessage? m = await b.ReceiveAsync(Timeout);
            Assert.Equal(i, BitConverter.ToInt32(m!.Value.Payload.Span));
        }

        PeerMessage? last = await b.ReceiveAsync(Timeout);
        Assert.True(big.AsSpan().SequenceEqual(last!.Value.Payload.Span));
        await sending;
    }

    [Fact]
    public async Task RequestsGetResponsesAndCloseReachesThePeer()
    {
        await using UdpPair pair = await UdpPair.OpenAsync(Options(Alice), Options(Bob), Bob.PeerId);
        (SecureSession a, SecureSession b) = (pair.A, pair.B);

        Task answering = Task.Run(async () =>
        {
            PeerMessage? request = await b.ReceiveAsync(Timeout);
            Assert.True(request!.Value.IsRequest);
            await b.RespondAsync(request.Value, "pong"u8.ToArray(), Timeout);
        });
        byte[] response = await a.RequestAsync("ping"u8.ToArray(), Timeout);
        Assert.Equal("pong"u8.ToArray(), response);
        await answering;

        await a.CloseAsync(SessionCloseCode.Normal, Timeout);
        Assert.Null(await b.ReceiveAsync(Timeout));
        await a.Completion.WaitAsync(Timeout);
        await b.Completion.WaitAsync(Timeout);
    }

    [Fact]
    public async Task UnreliableMessagesArriveWholeBesideReliableOnes()
    {
        await using UdpPair pair = await UdpPair.OpenAsync(Options(Alice), Options(Bob), Bob.PeerId);
        (SecureSession a, SecureSession b) = (pair.A, pair.B);

        Assert.InRange(a.MaxUnreliableMessageSize, 900, 1200);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => a.SendAsync(new byte[a.MaxUnreliableMessageSize + 1], MessageDelivery.Unreliable, Timeout).AsTask());

        // On loopback nothing is lost: every telemetry reading arrives, whole, and the reliable marker after them too.
        const int Readings = 200;
        for (int i = 0; i < Readings; i++)
        {
            byte[] reading = new byte[a.MaxUnreliableMessageSize];
            BitConverter.TryWriteBytes(reading, i);
            await a.SendAsync(reading, MessageDelivery.Unreliable, Timeout);
            if (i % 20 == 19)
            {
                await b.ReceiveAsync(Timeout).AsTask().ContinueWith(t => Assert.Equal(reading.Length, t.Result!.Value.Length), TaskScheduler.Default);
            }
        }

        await a.SendAsync("done"u8.ToArray(), MessageDelivery.ReliableOrdered, Timeout);
        int received = Readings / 20;
        while (true)
        {
            PeerMessage m = (await b.ReceiveAsync(Timeout))!.Value;
            if (m.Payload.Span.SequenceEqual("done"u8))
            {
                break;
            }

            Assert.Equal(a.MaxUnreliableMessageSize, m.Length);
            received++;
        }

        Assert.InRange(received, Readings * 9 / 10, Readings);   // at most once; a full window may drop a few
    }

    [Fact]
    public async Task KeysUpdateUnderTrafficWithoutLosingAMessage()
    {
        SecureSessionOptions alice = Options(Alice);
        alice.RekeyAfterMessages = 16;      // a new key every 16 datagrams
        await using UdpPair pair = await UdpPair.OpenAsync(alice, Options(Bob), Bob.PeerId);
        (SecureSession a, SecureSession b) = (pair.A, pair.B);

        var keys = ((PeerLink.Transport.Datagrams.DatagramConnection)a.Connection).Keys;
        var peerKeys = ((PeerLink.Transport.Datagrams.DatagramConnection)b.Connection).Keys;

        // Messages until the keys changed five times (how many datagrams a message takes depends on the path size the
        // connection found and on how the sends batch), then a 1-byte end mark.
        const int MaxCount = 100_000;
        Task<int> sending = Task.Run(async () =>
        {
            int i = 0;
            for (; (keys.SendUpdates < 5 || i < 2000) && i < MaxCount; i++)
            {
                await a.SendAsync(new byte[600 + (i % 7)], Timeout);
            }

            await a.SendAsync(new byte[1], Timeout);
            return i;
        });
        int received = 0;
        for (int length; (length = (await b.ReceiveAsync(Timeout))!.Value.Length) != 1; received++)
        {
            Assert.Equal(600 + (received % 7), length);
        }

        Assert.Equal(await sending, received);
        Assert.True(keys.SendUpdates >= 5, $"{keys.SendUpdates} key updates in {received} messages");
        Assert.Equal(keys.SendUpdates, peerKeys.ReceiveUpdates);
    }

    [Fact]
    public async Task AResponderRefusesAPeerThatIsNotAllowed()
    {
        SecureSessionOptions bob = Options(Bob);
        bob.AllowedPeers = new HashSet<PeerId> { Mallory.PeerId };
        await using UdpTransport server = UdpTransport.Bind(AnyLoopback, bob);
        await using UdpTransport client = UdpTransport.Bind(AnyLoopback, Options(Alice));
        PeerLinkException e = await Assert.ThrowsAsync<PeerLinkException>(() => client.ConnectAsync(server.LocalEndPoint, Bob.PeerId, Timeout));
        Assert.Equal(PeerLinkError.PeerRefused, e.Error);
    }

    [Fact]
    public async Task NoAnswerIsAHandshakeTimeoutThatSaysWhy()
    {
        using var silent = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        silent.Bind(AnyLoopback);
        SecureSessionOptions alice = Options(Alice);
        alice.HandshakeTimeout = TimeSpan.FromSeconds(1);
        await using UdpTransport client = UdpTransport.Bind(AnyLoopback, alice);
        PeerLinkException e = await Assert.ThrowsAsync<PeerLinkException>(() => client.ConnectAsync((IPEndPoint)silent.LocalEndPoint!, Bob.PeerId, Timeout));
        Assert.Equal(PeerLinkError.HandshakeTimeout, e.Error);
        Assert.Contains("No handshake answer", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnIkInitiatorWithTheWrongKeyGetsNoAnswer()
    {
        SecureSessionOptions alice = Options(Alice);
        alice.HandshakeTimeout = TimeSpan.FromSeconds(1);
        await using UdpTransport server = UdpTransport.Bind(AnyLoopback, Options(Bob));
        await using UdpTransport client = UdpTransport.Bind(AnyLoopback, alice);
        PeerLinkException e = await Assert.ThrowsAsync<PeerLinkException>(() => client.ConnectAsync(server.LocalEndPoint, Mallory.PeerId, Timeout));
        Assert.Equal(PeerLinkError.HandshakeTimeout, e.Error);
        Assert.Equal(0, server.HandshakesRun);   // mac1 was for another key: no Diffie-Hellman spent
    }
}

/// <summary>Two UDP transports on loopback and one session between them (a → b), disposed together.</summary>
internal sealed class UdpPair : IAsyncDisposable
{
    private UdpTransport _server = null!;
    private UdpTransport _client = null!;

    public SecureSession A { get; private set; } = null!;

    public SecureSession B { get; private set; } = null!;

    /// <summary>The transport that opened <see cref="A"/>.</summary>
    public UdpTransport ClientTransport => _client;

    /// <summary>Opens the pair; with <paramref name="via"/> the client connects to the address it returns for the server's (a relay or NAT of the test's).</summary>
    public static async Task<UdpPair> OpenAsync(SecureSessionOptions client, SecureSessionOptions server, PeerId? expected, Func<IPEndPoint, IPEndPoint>? via = null)
    {
        var pair = new UdpPair
        {
            _server = UdpTransport.Bind(new IPEndPoint(IPAddress.Loopback, 0), server),
            _client = UdpTransport.Bind(new IPEndPoint(IPAddress.Loopback, 0), client),
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        ValueTask<SecureSession> accepting = pair._server.AcceptAsync(timeout.Token);
        pair.A = await pair._client.ConnectAsync(via?.Invoke(pair._server.LocalEndPoint) ?? pair._server.LocalEndPoint, expected, timeout.Token);
        pair.B = await accepting;
        return pair;
    }

    /// <summary>Something between the two (a relay, a NAT) to dispose after them.</summary>
    public IDisposable? Between { get; set; }

    public async ValueTask DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
        await _client.DisposeAsync();
        await _server.DisposeAsync();
        Between?.Dispose();
    }
}
