using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Sessions;
using PeerLink.Transport;
using Xunit;

namespace PeerLink.Tests.Sessions;

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
        await using PeerNode server = await new PeerNodeBuilder(Bob).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
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

            // At most four are kept: the others are closed at once. Wait for all of them together.
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            bool[] wasClosed = await Task.WhenAll(silent.Select(async socket =>
            {
                try
                {
                    return await socket.ReceiveAsync(new byte[1], SocketFlags.None, wait.Token) == 0;
                }
                catch (SocketException)
                {
                    return true;
                }
                catch (OperationCanceledException)
                {
                    return false;   // still open: a pending handshake
                }
            }));
            int closed = wasClosed.Count(c => c);

            Assert.Equal(4, closed);
        }
        finally
        {
            silent.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task BadArgumentsAreNamed()
    {
        await using PeerNode node = await new PeerNodeBuilder(Alice).StartAsync();
        Assert.Throws<ArgumentNullException>("identity", () => new PeerNodeBuilder(null!));
        await Assert.ThrowsAsync<ArgumentNullException>("remoteEndPoint", () => node.ConnectAsync(null!));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>("options", () => new PeerNodeBuilder(Alice).Configure(o => o.MaxSessions = 0).StartAsync());
    }
}
