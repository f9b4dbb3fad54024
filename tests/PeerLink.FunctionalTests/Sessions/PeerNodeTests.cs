using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Sessions;
using PeerLink.Transport;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.FunctionalTests.Sessions;

/// <summary>PeerNode over loopback TCP: connect, accept, refuse, shed, survive bad peers, close everything on dispose.</summary>
public sealed class PeerNodeTests : PeerIdentities
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    public async Task TwoNodesTalkOverTcpWithIk(string address)
    {
        await using PeerNode bob = await new PeerNodeBuilder(Bob).ListenOn(new IPEndPoint(IPAddress.Parse(address), 0)).StartAsync();
        await using PeerNode alice = await new PeerNodeBuilder(Alice).StartAsync();
        var bobEndPoint = (IPEndPoint)bob.LocalEndPoints[0];

        SecureSession toBob = await alice.ConnectAsync(bobEndPoint, bob.PeerId).WaitAsync(Limit);
        SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
        await toBob.SendAsync("motion in the hallway"u8.ToArray());
        PeerMessage? message = await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit);

        Assert.NotEqual(0, bobEndPoint.Port);
        Assert.Equal("Noise_IK_25519_ChaChaPoly_SHA256", toBob.Protocol.Name);
        Assert.Equal(Alice.PeerId, fromAlice.RemotePeerId);
        Assert.Equal("motion in the hallway"u8.ToArray(), message!.Value.Payload.ToArray());
        Assert.Equal(bobEndPoint, toBob.RemoteEndPoint);
        Assert.Single(alice.Sessions);
        Assert.Single(bob.Sessions);
    }

    [Fact]
    public async Task ARefusedPeerDoesNotDisturbTheOthers()
    {
        await using PeerNode bob = await new PeerNodeBuilder(Bob)
            .ListenOn(new IPEndPoint(IPAddress.Loopback, 0))
            .Configure(o => o.Session.AllowedPeers = new HashSet<PeerId> { Alice.PeerId })
            .StartAsync();
        await using PeerNode alice = await new PeerNodeBuilder(Alice).StartAsync();
        await using PeerNode mallory = await new PeerNodeBuilder(Mallory).StartAsync();

        SecureSession toBob = await alice.ConnectAsync(bob.LocalEndPoints[0], bob.PeerId).WaitAsync(Limit);
        SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
        var refused = await Assert.ThrowsAsync<PeerLinkException>(() => mallory.ConnectAsync(bob.LocalEndPoints[0], bob.PeerId).WaitAsync(Limit));
        await toBob.SendAsync(new byte[] { 42 });

        Assert.Equal(PeerLinkError.PeerRefused, refused.Error);
        Assert.Equal(new byte[] { 42 }, (await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
        Assert.Single(bob.Sessions);
    }

    [Fact]
    public async Task GarbageAndAbruptDisconnectsLeaveTheListenerServing()
    {
        await using PeerNode bob = await new PeerNodeBuilder(Bob).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
        await using PeerNode alice = await new PeerNodeBuilder(Alice).StartAsync();
        var endpoint = (IPEndPoint)bob.LocalEndPoints[0];

        // Not PeerLink at all.
        using (var http = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await http.ConnectAsync(endpoint);
            await http.SendAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
            byte[] answer = new byte[16];
            Assert.Equal(0, await http.ReceiveAsync(answer, SocketFlags.None).WaitAsync(Limit));   // closed without a word
        }

        // A real session whose peer vanishes in the middle of a message.
        PeerConnection connection = await new TcpPeerConnector().ConnectAsync(endpoint);
        using (var raw = new RawInitiator(connection))
        {
            await raw.HandshakeAsync(Mallory).WaitAsync(Limit);
            await raw.SendPlaintextAsync(RawInitiator.Record(SessionWire.Accept, 0, default));
            SecureSession victim = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
            byte[] framed = await raw.EncryptAsync(RawInitiator.Record(SessionWire.Data, 0, new byte[1000]));
            await raw.Output.WriteAsync(framed.AsMemory(0, 300));
            connection.Abort();
            var error = await Assert.ThrowsAsync<PeerLinkException>(() => victim.Completion.WaitAsync(Limit));
            Assert.Contains(error.Error, new[] { PeerLinkError.ConnectionReset, PeerLinkError.Truncated });
        }

        await connection.DisposeAsync();
        SecureSession session = await alice.ConnectAsync(endpoint, bob.PeerId).WaitAsync(Limit);
        Assert.Equal(bob.PeerId, session.RemotePeerId);
    }

    [Fact]
    public async Task AnIkConnectToAChangedKeyFailsOrFallsBackToXxWhenAllowed()
    {
        // The device at this address was reset and has a new identity (Mallory's key) since Alice last saw it as Bob.
        await using PeerNode device = await new PeerNodeBuilder(Mallory).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
        await using PeerNode strict = await new PeerNodeBuilder(Alice).StartAsync();
        await using PeerNode lenient = await new PeerNodeBuilder(Alice).Configure(o => o.Session.FallbackToXX = true).StartAsync();

        var mismatch = await Assert.ThrowsAsync<PeerLinkException>(() => strict.ConnectAsync(device.LocalEndPoints[0], Bob.PeerId).WaitAsync(Limit));
        SecureSession session = await lenient.ConnectAsync(device.LocalEndPoints[0], Bob.PeerId).WaitAsync(Limit);

        Assert.Equal(PeerLinkError.RemoteKeyMismatch, mismatch.Error);
        Assert.Equal(Mallory.PeerId, session.RemotePeerId);
        Assert.Equal("Noise_XX_25519_ChaChaPoly_SHA256", session.Protocol.Name);
    }

    [Fact]
    public async Task AThousandConcurrentSessionsOnOneNode()
    {
        const int Sessions = 1000;
        // All thousand come from one address here, so the per-address limit is raised to the node's own.
        await using PeerNode server = await new PeerNodeBuilder(Bob).ListenOn(new IPEndPoint(IPAddress.Loopback, 0))
            .Configure(o => o.MaxPendingHandshakesPerAddress = o.MaxPendingHandshakes)
            .StartAsync();
        await using PeerNode client = await new PeerNodeBuilder(Alice).StartAsync();
        var allAccepted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int accepted = 0;
        Task echo = Task.Run(async () =>
        {
            await foreach (SecureSession session in server.AcceptAllAsync())
            {
                if (++accepted == Sessions)
                {
                    allAccepted.SetResult();
                }

                _ = Task.Run(async () =>
                {
                    await foreach (PeerMessage message in session.ReadAllAsync())
                    {
                        await session.SendAsync(message.Payload);
                    }
                });
            }
        });

        using var gate = new SemaphoreSlim(64);   // the server sheds beyond 128 pending handshakes
        SecureSession[] sessions = await Task.WhenAll(Enumerable.Range(0, Sessions).Select(async _ =>
        {
            await gate.WaitAsync();
            try
            {
                // Under a loaded CI machine a loopback TCP connect is occasionally reset before the node sees it
                // (observed once in about twenty runs); a client retries that, and so does this one, twice at most.
                for (int attempt = 1; ; attempt++)
                {
                    try
                    {
                        return await client.ConnectAsync(server.LocalEndPoints[0], server.PeerId);
                    }
                    catch (PeerLinkException e) when (e.Error == PeerLinkError.ConnectionRefused && attempt < 3)
                    {
                    }
                }
            }
            finally
            {
                gate.Release();
            }
        })).WaitAsync(Limit);
        await allAccepted.Task.WaitAsync(Limit);
        Assert.Equal(Sessions, server.Sessions.Count);
        Assert.Equal(Sessions, client.Sessions.Count);

        // Every session carries its own message at the same time.
        await Task.WhenAll(sessions.Select(async (s, i) =>
        {
            await s.SendAsync(BitConverter.GetBytes(i));
            PeerMessage? reply = await s.ReceiveAsync();
            Assert.Equal(i, BitConverter.ToInt32(reply!.Value.Payload.Span));
        })).WaitAsync(Limit);

        // Disposing the server closes all of them gracefully: each client sees the end, not an abort.
        await server.DisposeAsync().AsTask().WaitAsync(Limit);
        await Task.WhenAll(sessions.Select(async s => Assert.Null(await s.ReceiveAsync()))).WaitAsync(Limit);
        await Task.WhenAll(sessions.Select(s => s.Completion)).WaitAsync(Limit);
        await echo.WaitAsync(Limit);
    }

    [Fact]
    public async Task FloodsOfHandshakesAreShedBeyondTheLimit()
    {
        await using PeerNode server = await new PeerNodeBuilder(Bob)
            .ListenOn(new IPEndPoint(IPAddress.Loopback, 0))
            .Configure(o => o.MaxPendingHandshakes = 4)
            .StartAsync();
        var silent = new List<Socket>();
        try
        {
            // Eight connections that never say a word hold their handshakes open. The kernel completes the TCP
            // handshake before the node sees them, so the shed ones are reset afterwards (sometimes while connecting).
            for (int i = 0; i < 8; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                silent.Add(socket);
                try
                {
                    await socket.ConnectAsync(server.LocalEndPoints[0]);
                }
                catch (SocketException)
                {
                    // Reset while connecting: shed. Its receive below fails and counts it.
                }
            }

            // At most four are kept: the others are reset at once. Wait until the node has dropped four (no guess of how
            // long that takes), then look at each socket without waiting: a reset one is readable (end or error).
            static bool IsReset(Socket s) => !s.Connected || s.Poll(0, SelectMode.SelectRead);
            Assert.True(SpinWait.SpinUntil(() => server.ShedConnections >= 4, SessionPair.Limit));
            Assert.True(SpinWait.SpinUntil(() => silent.Count(IsReset) >= 4, SessionPair.Limit));   // the resets have arrived
            int closed = silent.Count(IsReset);

            Assert.Equal(4, closed);
            Assert.Equal(4, server.ShedConnections);
        }
        finally
        {
            silent.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task OneHostHoldingSilentConnectionsCannotTakeTheOtherPeersSlots()
    {
        await using PeerNode server = await new PeerNodeBuilder(Bob)
            .ListenOn(new IPEndPoint(IPAddress.Loopback, 0))
            .Configure(o =>
            {
                o.MaxPendingHandshakes = 6;
                o.MaxPendingHandshakesPerAddress = 2;
            })
            .StartAsync();
        await using PeerNode alice = await new PeerNodeBuilder(Alice).StartAsync();
        var silent = new List<Socket>();
        try
        {
            // Ten silent connections from 127.0.0.2 (another host, as far as the node can tell): two may wait for their
            // handshake, the other eight are dropped at once; without the per-address limit six would wait and the
            // listener's slots would be full.
            for (int i = 0; i < 10; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                silent.Add(socket);
                socket.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
                try
                {
                    await socket.ConnectAsync(server.LocalEndPoints[0]);
                }
                catch (SocketException)
                {
                    // reset while connecting: dropped
                }
            }

            // A peer from 127.0.0.1 still gets a session. The node decides in accept order, so by the time this session
            // is up, every silent connection has been kept or reset.
            await using SecureSession session = await alice.ConnectAsync(server.LocalEndPoints[0], Bob.PeerId).WaitAsync(SessionPair.Limit);
            await using SecureSession accepted = (await server.AcceptAsync().AsTask().WaitAsync(SessionPair.Limit))!;

            static bool IsReset(Socket s) => !s.Connected || s.Poll(0, SelectMode.SelectRead);
            Assert.Equal(8, server.ShedConnections);
            Assert.True(SpinWait.SpinUntil(() => silent.Count(IsReset) >= 8, SessionPair.Limit));   // the resets have arrived
            int kept = silent.Count(s => !IsReset(s));
            Assert.Equal(2, kept);
        }
        finally
        {
            silent.ForEach(s => s.Dispose());
        }
    }

    [Theory]
    [InlineData("192.0.2.1", "192.0.2.1", true)]
    [InlineData("192.0.2.1", "::ffff:192.0.2.1", true)]
    [InlineData("192.0.2.1", "192.0.2.2", false)]
    [InlineData("2001:db8:1:2::1", "2001:db8:1:2:aaaa::9", true)]     // one /64: one host
    [InlineData("2001:db8:1:2::1", "2001:db8:1:3::1", false)]
    public void SourcesAreIPv4AddressesOrIPv6Slash64s(string a, string b, bool same)
    {
        UInt128 first = HandshakeAdmission.SourceOf(new IPEndPoint(IPAddress.Parse(a), 1));
        UInt128 second = HandshakeAdmission.SourceOf(new IPEndPoint(IPAddress.Parse(b), 2));
        Assert.Equal(same, first == second);
    }

    [Fact]
    public void RefusalsAreLoggedAtMostOnceASecondWithTheCountLeftOut()
    {
        var clock = new FakeTimeProvider();
        var admission = new HandshakeAdmission(maxPending: 1, maxPerSource: 1, maxSessions: 10, clock);
        Assert.Equal(ShedReason.None, admission.TryAdmit(null, 0, null, out HandshakeAdmission.Ticket source));
        Assert.Equal(ShedReason.PendingFromAddress, admission.TryAdmit(null, 0, null, out _));
        Assert.Equal(ShedReason.Sessions, admission.TryAdmit(null, 10, null, out _));

        Assert.True(admission.ShouldLog(out int unlogged));
        Assert.Equal(0, unlogged);
        Assert.False(admission.ShouldLog(out _));
        Assert.False(admission.ShouldLog(out _));
        clock.Advance(TimeSpan.FromMilliseconds(999));
        Assert.False(admission.ShouldLog(out _));
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(admission.ShouldLog(out unlogged));
        Assert.Equal(3, unlogged);

        admission.Release(source);
        Assert.Equal(0, admission.Pending);
        Assert.Equal(ShedReason.None, admission.TryAdmit(null, 0, null, out _));
    }

    [Fact]
    public void WhenFullANewcomerTakesTheOldestSlotOfTheBusiestSource()
    {
        var admission = new HandshakeAdmission(maxPending: 4, maxPerSource: 3, maxSessions: 100, new FakeTimeProvider());
        var evicted = new List<string>();
        IPEndPoint Host(int n) => new(IPAddress.Parse($"192.0.2.{n}"), 1000);

        // Source 1 holds three slots, source 2 one: the node is full.
        Assert.Equal(ShedReason.None, admission.TryAdmit(Host(1), 0, () => evicted.Add("1a"), out _));
        Assert.Equal(ShedReason.None, admission.TryAdmit(Host(1), 0, () => evicted.Add("1b"), out _));
        Assert.Equal(ShedReason.None, admission.TryAdmit(Host(1), 0, () => evicted.Add("1c"), out _));
        Assert.Equal(ShedReason.None, admission.TryAdmit(Host(2), 0, () => evicted.Add("2a"), out HandshakeAdmission.Ticket twoA));
        Assert.Equal(4, admission.Pending);

        // A newcomer from a quiet source takes source 1's oldest slot; source 2 and source 1 themselves cannot.
        Assert.Equal(ShedReason.None, admission.TryAdmit(Host(3), 0, () => evicted.Add("3a"), out HandshakeAdmission.Ticket threeA));
        Assert.Equal(["1a"], evicted);
        Assert.Equal(4, admission.Pending);
        Assert.Equal(ShedReason.None, admission.TryAdmit(Host(2), 0, () => evicted.Add("2b"), out _));   // 1 < 2: takes 1b
        Assert.Equal(["1a", "1b"], evicted);
        Assert.Equal(ShedReason.None, admission.TryAdmit(Host(1), 0, () => evicted.Add("1d"), out _));   // 1 < 2: takes 2a
        Assert.Equal(["1a", "1b", "2a"], evicted);
        Assert.Equal(ShedReason.PendingHandshakes, admission.TryAdmit(Host(1), 0, null, out _));   // source 1 is the busiest now

        // A handshake that ended gives its slot back; releasing an evicted one changes nothing.
        admission.Release(threeA);
        Assert.Equal(3, admission.Pending);
        admission.Release(twoA);
        Assert.Equal(3, admission.Pending);
        Assert.Equal(3, admission.Evicted);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task PeersWithAesInstructionsAgreeOnAesGcmFromTheirSecondSession(bool agree)
    {
        await using PeerNode server = await new PeerNodeBuilder(Bob).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
        await using PeerNode client = await new PeerNodeBuilder(Alice).Configure(o => o.Session.AgreeOnAesGcm = agree).StartAsync();

        await using SecureSession first = await client.ConnectAsync(server.LocalEndPoints[0], Bob.PeerId).WaitAsync(SessionPair.Limit);
        await using SecureSession firstAccepted = (await server.AcceptAsync().AsTask().WaitAsync(SessionPair.Limit))!;
        Assert.Equal("ChaChaPoly", first.Protocol.CipherName);        // nothing is known of the peer yet
        Assert.Equal(SessionWire.HasAesHardware, firstAccepted.RemoteHasAesHardware);

        await using SecureSession second = await client.ConnectAsync(server.LocalEndPoints[0], Bob.PeerId).WaitAsync(SessionPair.Limit);
        await using SecureSession secondAccepted = (await server.AcceptAsync().AsTask().WaitAsync(SessionPair.Limit))!;
        string expected = agree && SessionWire.HasAesHardware ? "AESGCM" : "ChaChaPoly";   // both ends are this machine
        Assert.Equal(expected, second.Protocol.CipherName);
        Assert.Equal(expected, secondAccepted.Protocol.CipherName);
    }

    [Fact]
    public async Task BadArgumentsAreNamed()
    {
        await using PeerNode node = await new PeerNodeBuilder(Alice).StartAsync();
        Assert.Throws<ArgumentNullException>("identity", () => new PeerNodeBuilder(null!));
        await Assert.ThrowsAsync<ArgumentNullException>("remoteEndPoint", () => node.ConnectAsync(null!));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>("options", () => new PeerNodeBuilder(Alice).Configure(o => o.MaxSessions = 0).StartAsync());
    }

    [Fact]
    public async Task TheBuilderLeavesTheCallersOptionsAsTheyWere()
    {
        PeerNodeOptions? seen = null;
        await using PeerNode node = await new PeerNodeBuilder(Alice).Configure(o => seen = o).StartAsync();
        Assert.NotNull(seen);
        Assert.Null(seen.Session.Identity);      // the node's identity went into its own copy only
        Assert.Equal(Alice.PeerId, node.PeerId);
    }

    [Fact]
    public async Task ADisposedNetworkKeyFailsTheHandshakeInsteadOfUsingZeros()
    {
        var key = NetworkKey.Generate();
        Assert.Equal("NetworkKey (hidden)", key.ToString());
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true, o => o.NetworkKey = key, o => o.NetworkKey = key);
        key.Dispose();

        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        await using (b)
        {
            await Assert.ThrowsAsync<ObjectDisposedException>(() => SecureSession.ConnectAsync(a, SessionPair.Options(Alice, o => o.NetworkKey = key), Bob.PeerId));
        }
    }
}
