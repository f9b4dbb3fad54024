using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Discovery;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;
using PeerLink.Testing;
using PeerLink.Transport;
using Xunit;

namespace PeerLink.FunctionalTests.Rendezvous;

/// <summary>
/// A rendezvous node and devices on loopback: attach, connect by PeerId through the end-to-end encrypted relay, the
/// callee's authorization, eviction by a newer attachment, the relay limits, and hostile devices.
/// </summary>
public sealed class RendezvousTests : PeerIdentities
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ADeviceAttachesAndKeepsAliveAtTheIntervalTheNodeSets()
    {
        long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;
        await using RendezvousServer server = await StartServerAsync(o => o.KeepAliveInterval = TimeSpan.FromSeconds(7));
        await using PeerNode alice = await StartDeviceAsync(Alice, server);
        RendezvousClient client = alice.GetComponent<RendezvousClient>()!;

        await client.WaitForAttachmentAsync().WaitAsync(Limit);

        Assert.True(client.IsAttached);
        Assert.True(server.IsAttached(Alice.PeerId));
        Assert.Equal(TimeSpan.FromSeconds(7), client.KeepAliveInterval);
        Assert.InRange(client.Epoch, before, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000);   // µs of the node's clock: ordered across a tier
        Assert.StartsWith("127.0.0.1:", client.ObservedEndPoint);
        Assert.Equal(1, server.AttachedCount);
    }

    [Fact]
    public async Task TwoDevicesTalkByPeerIdThroughAnEndToEndRelay()
    {
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, server);

        (SecureSession toBob, SecureSession fromAlice) = await ConnectAsync(alice, bob, Bob.PeerId);
        await toBob.SendAsync("switch the hall light on"u8.ToArray());
        PeerMessage? request = await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit);
        await fromAlice.SendAsync("done"u8.ToArray());
        PeerMessage? answer = await toBob.ReceiveAsync().AsTask().WaitAsync(Limit);

        Assert.Equal("switch the hall light on"u8.ToArray(), request!.Value.Payload.ToArray());
        Assert.Equal("done"u8.ToArray(), answer!.Value.Payload.ToArray());
        Assert.Equal(Bob.PeerId, toBob.RemotePeerId);
        Assert.Equal(Alice.PeerId, fromAlice.RemotePeerId);
        Assert.Equal("Noise_IK_25519_ChaChaPoly_SHA256", toBob.Protocol.Name);

        // One Noise session end to end: the node relays it and is not a party to it (it would have a hash of its own).
        Assert.Equal(toBob.HandshakeHash.ToArray(), fromAlice.HandshakeHash.ToArray());
        Assert.Equal(1, server.RelayCount);
    }

    [Theory]
    [InlineData(SessionPathKind.DirectUdp)]
    [InlineData(SessionPathKind.DirectTcp)]
    public async Task ARelayedSessionMovesToADirectPathWithoutLosingAMessage(SessionPathKind kind)
    {
        Action<RendezvousClientOptions> transports = o => o.PunchUdp = kind == SessionPathKind.DirectUdp;
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server, rendezvous: transports);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, server, rendezvous: transports);
        SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        var direct = new TaskCompletionSource<SessionPath>(TaskCreationOptions.RunContinuationsAsynchronously);
        toBob.PathChanged += (_, path) =>
        {
            if (path.Kind == kind)
            {
                direct.TrySetResult(path);
            }
        };
        if (toBob.Path.Kind == kind)
        {
            direct.TrySetResult(toBob.Path);   // it moved before the handler was attached
        }

        SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;

        // Messages flow the whole time: before, during and after the move.
        const int Count = 4000;
        Task sending = Task.Run(async () =>
        {
            for (int i = 0; i < Count; i++)
            {
                await toBob.SendAsync(BitConverter.GetBytes(i));
                if (i == Count / 2)
                {
                    await direct.Task.WaitAsync(Limit);   // the second half goes after the move
                }
            }
        });
        for (int i = 0; i < Count; i++)
        {
            PeerMessage? message = await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit);
            Assert.Equal(i, BitConverter.ToInt32(message!.Value.Payload.Span));
        }

        await sending.WaitAsync(Limit);
        SessionPath path = await direct.Task.WaitAsync(Limit);

        Assert.Equal(kind, toBob.Path.Kind);
        if (kind == SessionPathKind.DirectTcp)
        {
            Assert.StartsWith("direct-tcp 127.0.0.1:", path.Description);
            Assert.Contains("UDP punching is off here", path.Description);
        }
        else
        {
            Assert.StartsWith($"direct-udp {alice.GetComponent<RendezvousClient>()!.UdpEndPoint!.Port} -> 127.0.0.1:{bob.GetComponent<RendezvousClient>()!.UdpEndPoint!.Port}", path.Description);
            // UDP is the path; a TCP path that also formed is closed ("preferred to a TCP path that also formed"), but on
            // a loaded machine the UDP path may win before a TCP one forms: either way no TCP path is kept.
            Assert.DoesNotContain("direct-tcp", ((MigratingConnection)toBob.Connection).Paths);
        }

        Assert.Contains(path.Attempts, a => a.Outcome is PathAttemptOutcome.Success or PathAttemptOutcome.Reversed);
        Assert.NotEqual(server.EndPoint, toBob.RemoteEndPoint);
    }

    [Theory]
    [InlineData(true)]    // the callee, which drives the attempts
    [InlineData(false)]   // the caller, which answers them
    public async Task AFailureInsideAPunchIsAFailedAttemptThatIsRecordedAndTheNextAttemptGoesDirect(bool calleeFails)
    {
        const string Injected = "injected into the first punch";
        Action<RendezvousClientOptions> sound = o => o.PunchUdp = false;
        Action<RendezvousClientOptions> faulty = o =>
        {
            o.PunchUdp = false;
            o.PunchFault = (_, number) => number == 1 ? new InvalidOperationException(Injected) : null;
        };
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server, rendezvous: calleeFails ? sound : faulty);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, server, rendezvous: calleeFails ? faulty : sound);
        SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        Task<SessionPath> aliceDirect = WaitForPathAsync(toBob, SessionPathKind.DirectTcp);
        SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
        Task<SessionPath> bobDirect = WaitForPathAsync(fromAlice, SessionPathKind.DirectTcp);

        // Before the fix an exception out of a punch ended the callee's attempts for good, and the caller's went unseen.
        SessionPath faultySide = calleeFails ? await bobDirect.WaitAsync(Limit) : await aliceDirect.WaitAsync(Limit);
        await (calleeFails ? aliceDirect : bobDirect).WaitAsync(Limit);
        Assert.Contains(faultySide.Attempts, a => a.Number == 1 && a.Outcome == PathAttemptOutcome.NoConnection && a.Detail.Contains(Injected, StringComparison.Ordinal));
        Assert.DoesNotContain(faultySide.Attempts, a => a.Number == 1 && a.Outcome is PathAttemptOutcome.Success or PathAttemptOutcome.Reversed);

        await toBob.SendAsync("after the failed attempt"u8.ToArray()).AsTask().WaitAsync(Limit);
        PeerMessage? received = await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit);
        Assert.Equal("after the failed attempt", System.Text.Encoding.UTF8.GetString(received!.Value.Payload.Span));
    }

    /// <summary>Completes with the session's path once it is of <paramref name="kind"/> (at once if it already is).</summary>
    private static Task<SessionPath> WaitForPathAsync(SecureSession session, SessionPathKind kind)
    {
        var reached = new TaskCompletionSource<SessionPath>(TaskCreationOptions.RunContinuationsAsynchronously);
        session.PathChanged += (_, path) =>
        {
            if (path.Kind == kind)
            {
                reached.TrySetResult(path);
            }
        };
        if (session.Path is { } now && now.Kind == kind)
        {
            reached.TrySetResult(now);   // it moved before the handler was attached
        }

        return reached.Task;
    }

    [Theory]
    [InlineData(SessionPathKind.DirectUdp, "direct-udp")]
    [InlineData(SessionPathKind.DirectTcp, "direct-tcp")]
    public async Task WhenTheDirectPathDiesTheSessionFallsBackToTheRelayAndGoesDirectAgain(SessionPathKind kind, string name)
    {
        Action<RendezvousClientOptions> transports = o =>
        {
            o.PunchUdp = kind == SessionPathKind.DirectUdp;
            o.DirectRetryInterval = TimeSpan.FromSeconds(1);   // a loaded machine may fail the quick attempts
        };
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server, rendezvous: transports);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, server, rendezvous: transports);
        SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        var paths = System.Threading.Channels.Channel.CreateUnbounded<SessionPath>();
        toBob.PathChanged += (_, path) => paths.Writer.TryWrite(path);
        SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
        if (toBob.Path.Kind != kind)
        {
            await NextPathAsync(kind);   // (unless it moved before the handler was attached)
        }

        ((MigratingConnection)toBob.Connection).DropPath(name);   // the direct connection breaks
        await toBob.SendAsync(new byte[] { 42 });
        SessionPath fallback = await NextPathAsync(SessionPathKind.Relayed);
        byte[] message = (await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray();   // valid until the next receive
        await NextPathAsync(kind);
        await toBob.SendAsync(new byte[] { 43 });
        PeerMessage? after = await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit);

        Assert.Contains("direct path failed", fallback.Description);
        Assert.Equal(new byte[] { 42 }, message);
        Assert.Equal(new byte[] { 43 }, after!.Value.Payload.ToArray());

        async Task<SessionPath> NextPathAsync(SessionPathKind kind)
        {
            while (true)
            {
                SessionPath path = await paths.Reader.ReadAsync().AsTask().WaitAsync(Limit);
                if (path.Kind == kind)
                {
                    return path;
                }
            }
        }
    }

    [Fact]
    public async Task ARelayedSessionCarriesBulkBothWaysAndClosesGracefully()
    {
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartRelayOnlyDeviceAsync(Alice, server);
        await using PeerNode bob = await StartRelayOnlyDeviceAsync(Bob, server);
        (SecureSession toBob, SecureSession fromAlice) = await ConnectAsync(alice, bob, Bob.PeerId);

        byte[] block = RandomNumberGenerator.GetBytes(16 * 1024);
        const int Count = 256;   // 4 MiB each way
        Task sending = Task.Run(async () =>
        {
            for (int i = 0; i < Count; i++)
            {
                block[0] = (byte)i;
                await toBob.SendAsync(block);
            }

            await toBob.CloseAsync();
        });
        int received = 0;
        await foreach (PeerMessage message in fromAlice.ReadAllAsync().WithCancellation(new CancellationTokenSource(Limit).Token))
        {
            Assert.Equal((byte)received, message.Payload.Span[0]);
            Assert.Equal(block.Length, message.Payload.Length);
            received++;
        }

        await sending.WaitAsync(Limit);
        await fromAlice.Completion.WaitAsync(Limit);

        Assert.Equal(Count, received);
        Assert.True(server.RelayedBytes >= Count * block.Length || server.RelayCount <= 1);
    }

    [Fact]
    public async Task AnEchoOfBulkThroughTheRelayNeverWaitsForItself()
    {
        // The echo reads a message, then writes it back: if a sender waited for ACKs (which travel behind data) before
        // writing, both directions would wait for each other. 32 MiB each way.
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartRelayOnlyDeviceAsync(Alice, server);
        await using PeerNode bob = await StartRelayOnlyDeviceAsync(Bob, server);
        (SecureSession toBob, SecureSession fromAlice) = await ConnectAsync(alice, bob, Bob.PeerId);
        Task echo = Task.Run(async () =>
        {
            while (await fromAlice.ReceiveAsync() is { } message)
            {
                await fromAlice.SendAsync(message.Payload);
            }
        });

        const int Count = 2048;
        byte[] block = new byte[16 * 1024];
        Task sending = Task.Run(async () =>
        {
            for (int i = 0; i < Count; i++)
            {
                BitConverter.TryWriteBytes(block, i);
                await toBob.SendAsync(block);
            }
        });
        for (int i = 0; i < Count; i++)
        {
            PeerMessage? back = await toBob.ReceiveAsync().AsTask().WaitAsync(Limit);
            Assert.Equal(i, BitConverter.ToInt32(back!.Value.Payload.Span));
        }

        await sending.WaitAsync(Limit);
        await toBob.CloseAsync();
        await echo.WaitAsync(Limit);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task PeersThatDiscoveryFoundOnTheLanConnectDirectlyWithoutTheNode(bool nodeUp)
    {
        // With the rendezvous node up, the LAN still comes first; with it down (no internet), the LAN is all it takes.
        await using RendezvousServer server = await StartServerAsync();
        IPEndPoint rendezvous = server.EndPoint;
        if (!nodeUp)
        {
            await server.DisposeAsync();
        }

        var net = new MdnsTestNetwork(realTime: true);
        await using PeerNode alice = await LanDeviceAsync(Alice, "127.0.0.1");
        await using PeerNode bob = await LanDeviceAsync(Bob, "127.0.0.2");
        await bob.GetDiscovery().WaitForPeerAsync(alice.PeerId).WaitAsync(Limit);

        (SecureSession toAlice, SecureSession fromBob) = await ConnectAsync(bob, alice, alice.PeerId);
        await toAlice.SendAsync(new byte[] { 5 });

        Assert.Equal(new byte[] { 5 }, (await fromBob.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
        Assert.Equal(SessionPathKind.Direct, toAlice.Path.Kind);
        Assert.Equal(0, nodeUp ? server.RelayCount : 0);

        Task<PeerNode> LanDeviceAsync(PeerIdentity identity, string address) =>
            new PeerNodeBuilder(identity)
                .ListenOn(new IPEndPoint(IPAddress.Parse(address), 0))
                .UseMdnsDiscovery(o => o.StartDiscovery = (_, _) => net.Node(address, "host-" + address.Replace('.', '-'), seed: address.GetHashCode()))
                .UseRendezvous(rendezvous, Relay.PeerId, o =>
                {
                    o.PunchAddresses = [IPAddress.Loopback];
                    o.UdpEndPoint = new IPEndPoint(IPAddress.Loopback, 0);
                })
                .StartAsync();
    }

    [Fact]
    public async Task ABusyRelayedPairDoesNotStarveAQuietOne()
    {
        await using RendezvousServer server = await StartServerAsync();
        using PeerIdentity carol = PeerIdentity.Generate();
        await using PeerNode alice = await StartRelayOnlyDeviceAsync(Alice, server);
        await using PeerNode bob = await StartRelayOnlyDeviceAsync(Bob, server);
        await using PeerNode mallory = await StartRelayOnlyDeviceAsync(Mallory, server);
        await using PeerNode carolNode = await StartRelayOnlyDeviceAsync(carol, server);
        (SecureSession busy, SecureSession busyEnd) = await ConnectAsync(alice, bob, Bob.PeerId);
        (SecureSession quiet, SecureSession quietEnd) = await ConnectAsync(mallory, carolNode, carol.PeerId);

        using var done = new CancellationTokenSource();
        long streamed = 0;
        Task streaming = Task.Run(async () =>
        {
            byte[] block = new byte[16 * 1024];
            while (!done.IsCancellationRequested)
            {
                await busy.SendAsync(block);
                Interlocked.Increment(ref streamed);
            }
        });
        Task draining = Task.Run(async () =>
        {
            while (await busyEnd.ReceiveAsync() is not null)
            {
            }
        });
        Task answering = Task.Run(async () =>
        {
            while (await quietEnd.ReceiveAsync() is { } request)
            {
                await quietEnd.RespondAsync(request, request.Payload);
            }
        });

        // The quiet pair's round trips all complete while the busy pair saturates the node.
        long before = Interlocked.Read(ref streamed);
        for (int i = 0; i < 100; i++)
        {
            byte[] answer = await quiet.RequestAsync(BitConverter.GetBytes(i)).WaitAsync(Limit);
            Assert.Equal(i, BitConverter.ToInt32(answer));
        }

        long during = Interlocked.Read(ref streamed) - before;
        await done.CancelAsync();
        await streaming.WaitAsync(Limit);

        Assert.True(during > 0, "the busy pair moved nothing meanwhile: the test did not load the node");
    }

    [Fact]
    public async Task TheCalleesOwnAuthorizationDecides()
    {
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, server, o => o.Session.AllowedPeers = new HashSet<PeerId> { Mallory.PeerId });

        var refused = await Assert.ThrowsAsync<PeerLinkException>(() => alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.PeerRefused, refused.Error);
        Assert.Empty(bob.Sessions);
    }

    [Fact]
    public async Task APeerThatIsNotAttachedIsNotFound()
    {
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server);

        var missing = await Assert.ThrowsAsync<PeerLinkException>(() => alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.PeerNotFound, missing.Error);
        Assert.Contains("not attached", missing.Message);
    }

    [Fact]
    public async Task WithoutAnAttachmentConnectByPeerIdSaysSo()
    {
        // A rendezvous endpoint where nothing listens: the device keeps trying; a connect waits AttachWait, then fails.
        using var unused = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        unused.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await using PeerNode alice = await new PeerNodeBuilder(Alice)
            .UseRendezvous((IPEndPoint)unused.LocalEndPoint!, Relay.PeerId, o =>
            {
                o.AttachWait = TimeSpan.FromMilliseconds(200);
                o.UdpEndPoint = new IPEndPoint(IPAddress.Loopback, 0);
            })
            .StartAsync();

        var error = await Assert.ThrowsAsync<PeerLinkException>(() => alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.NotAttached, error.Error);
        Assert.False(alice.GetComponent<RendezvousClient>()!.IsAttached);
    }

    [Fact]
    public async Task ANewerAttachmentOfTheSamePeerReplacesTheOlder()
    {
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server);
        await using PeerNode bobOld = await StartAttachedDeviceAsync(Bob, server);
        long oldEpoch = bobOld.GetComponent<RendezvousClient>()!.Epoch;

        // The device moved: the same identity attaches from elsewhere, and is reachable there at once.
        await using PeerNode bobNew = await StartAttachedDeviceAsync(Bob, server);
        SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        SecureSession? atNew = await bobNew.AcceptAsync().AsTask().WaitAsync(Limit);

        Assert.True(bobNew.GetComponent<RendezvousClient>()!.Epoch > oldEpoch);
        Assert.NotNull(atNew);
        Assert.Empty(bobOld.Sessions);
        Assert.Equal(2, server.AttachedCount);
        await toBob.SendAsync(new byte[] { 1 });
        Assert.Equal(new byte[] { 1 }, (await atNew!.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task OverTheByteLimitBothEndsLearnWhy()
    {
        await using RendezvousServer server = await StartServerAsync(o => o.MaxRelayBytes = 256 * 1024);
        await using PeerNode alice = await StartRelayOnlyDeviceAsync(Alice, server);
        await using PeerNode bob = await StartRelayOnlyDeviceAsync(Bob, server);
        (SecureSession toBob, SecureSession fromAlice) = await ConnectAsync(alice, bob, Bob.PeerId);

        Task reading = Task.Run(async () =>
        {
            await foreach (PeerMessage _ in fromAlice.ReadAllAsync())
            {
            }
        });
        byte[] block = new byte[16 * 1024];
        var sendFailure = await Assert.ThrowsAsync<PeerLinkException>(async () =>
        {
            for (int i = 0; i < 1000; i++)
            {
                await toBob.SendAsync(block);
            }
        }).WaitAsync(Limit);
        var aliceEnd = await Assert.ThrowsAsync<PeerLinkException>(() => toBob.Completion.WaitAsync(Limit));
        var bobEnd = await Assert.ThrowsAsync<PeerLinkException>(() => fromAlice.Completion.WaitAsync(Limit));

        Assert.Equal(PeerLinkError.RelayLimitExceeded, aliceEnd.Error);
        Assert.Equal(PeerLinkError.RelayLimitExceeded, bobEnd.Error);
        Assert.Contains("bytes", aliceEnd.Message);
        await Assert.ThrowsAsync<PeerLinkException>(() => reading.WaitAsync(Limit));
        Assert.Equal(0, server.RelayCount);
    }

    [Fact]
    public async Task OverTheDurationLimitBothEndsLearnWhy()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using RendezvousServer server = await StartServerAsync(o =>
        {
            o.TimeProvider = clock;
            o.MaxRelayDuration = TimeSpan.FromSeconds(10);
        });
        await using PeerNode alice = await StartRelayOnlyDeviceAsync(Alice, server);
        await using PeerNode bob = await StartRelayOnlyDeviceAsync(Bob, server);
        (SecureSession toBob, SecureSession fromAlice) = await ConnectAsync(alice, bob, Bob.PeerId);
        await toBob.SendAsync(new byte[] { 1 });
        await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit);   // the relay is joined and carrying

        clock.Advance(TimeSpan.FromSeconds(10));
        var aliceEnd = await Assert.ThrowsAsync<PeerLinkException>(() => toBob.Completion.WaitAsync(Limit));
        var bobEnd = await Assert.ThrowsAsync<PeerLinkException>(() => fromAlice.Completion.WaitAsync(Limit));

        Assert.Equal(PeerLinkError.RelayLimitExceeded, aliceEnd.Error);
        Assert.Equal(PeerLinkError.RelayLimitExceeded, bobEnd.Error);
        Assert.Contains("minutes", bobEnd.Message);
    }

    [Fact]
    public async Task RelaysPerDeviceAreLimited()
    {
        await using RendezvousServer server = await StartServerAsync(o => o.MaxRelaysPerDevice = 1);
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, server);
        await using PeerNode mallory = await StartAttachedDeviceAsync(Mallory, server);
        SecureSession first = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);

        var second = await Assert.ThrowsAsync<PeerLinkException>(() => mallory.ConnectAsync(Bob.PeerId).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.RelayLimitExceeded, second.Error);
        Assert.Contains("1 relayed sessions", second.Message);
        await first.SendAsync(new byte[] { 7 });   // the first relay is untouched
        SecureSession atBob = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
        Assert.Equal(new byte[] { 7 }, (await atBob.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task AFloodOfConnectRequestsIsRefusedBeyondTheRate()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using RendezvousServer server = await StartServerAsync(o =>
        {
            o.TimeProvider = clock;
            o.MaxConnectRequestsPerSecond = 2;   // bursts of 4
        });
        await using PeerNode mallory = await StartAttachedDeviceAsync(Mallory, server);

        var errors = new List<PeerLinkError>();
        for (int i = 0; i < 6; i++)
        {
            using var unknown = PeerIdentity.Generate();
            errors.Add((await Assert.ThrowsAsync<PeerLinkException>(() => mallory.ConnectAsync(unknown.PeerId).WaitAsync(Limit))).Error);
        }

        clock.Advance(TimeSpan.FromSeconds(1));
        using var later = PeerIdentity.Generate();
        PeerLinkError afterASecond = (await Assert.ThrowsAsync<PeerLinkException>(() => mallory.ConnectAsync(later.PeerId).WaitAsync(Limit))).Error;

        Assert.Equal([.. Enumerable.Repeat(PeerLinkError.PeerNotFound, 4), PeerLinkError.RelayLimitExceeded, PeerLinkError.RelayLimitExceeded], errors);
        Assert.Equal(PeerLinkError.PeerNotFound, afterASecond);
        Assert.True(server.IsAttached(Mallory.PeerId));
    }

    [Fact]
    public async Task MalformedAndOversizedSignallingDropsOnlyThatDevice()
    {
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server);

        SecureSession garbage = await AttachRawAsync(Mallory, server);
        await garbage.SendAsync(new byte[] { 0xc1, 0x00, 0x01 });   // 0xc1 is never valid MessagePack
        var garbageEnd = await Assert.ThrowsAsync<PeerLinkException>(() => garbage.ReceiveAsync().AsTask().WaitAsync(Limit));

        // The node announces 4 KiB for signalling; a message over it never leaves a PeerLink sender, and a receiver
        // refuses one from any other (MessageTooLarge, covered by the session tests).
        SecureSession oversized = await AttachRawAsync(Mallory, server);
        var tooLarge = await Record.ExceptionAsync(() => oversized.SendAsync(new byte[64 * 1024]).AsTask());

        Assert.True(garbageEnd.RemoteCloseCode == SessionCloseCode.ProtocolViolation, $"{garbageEnd.Error}: {garbageEnd.Message}");
        Assert.Equal(4096, oversized.MaxMessageSize);
        Assert.IsType<ArgumentOutOfRangeException>(tooLarge);
        Task detached = server.WhenDetachedAsync(Mallory.PeerId);
        await oversized.DisposeAsync();
        await detached.WaitAsync(Limit);
        Assert.True(server.IsAttached(Alice.PeerId));
        Assert.False(server.IsAttached(Mallory.PeerId));
    }

    [Fact]
    public async Task ARelayConnectionWithAForgedTokenIsDropped()
    {
        await using RendezvousServer server = await StartServerAsync();
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(server.EndPoint);
        byte[] preamble = [.. "PLRY"u8.ToArray(), 1, .. RandomNumberGenerator.GetBytes(16)];
        await socket.SendAsync(preamble);

        byte[] buffer = new byte[16];
        int read;
        try
        {
            read = await socket.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(Limit);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            read = 0;
        }

        Assert.Equal(0, read);
        Assert.Equal(0, server.RelayCount);
    }

    [Fact]
    public async Task DevicesAttachAgainAfterTheNodeRestarts()
    {
        RendezvousServer first = await StartServerBelowEphemeralPortsAsync();
        IPEndPoint endPoint = first.EndPoint;
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, first);
        RendezvousClient client = alice.GetComponent<RendezvousClient>()!;

        Task detached = client.WhenDetachedAsync();
        await first.DisposeAsync();
        await detached.WaitAsync(Limit);
        await using RendezvousServer second = await StartServerAsync(o => o.ListenEndPoint = endPoint);
        await client.WaitForAttachmentAsync().WaitAsync(Limit);

        Assert.True(second.IsAttached(Alice.PeerId));
    }

    [Fact]
    public async Task WhenTheCalleeVanishesTheCallerGetsAClearError()
    {
        await using RendezvousServer server = await StartServerAsync();
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server);
        PeerNode bob = await StartAttachedDeviceAsync(Bob, server);
        (SecureSession toBob, SecureSession fromAlice) = await ConnectAsync(alice, bob, Bob.PeerId);

        fromAlice.Abort();   // the device goes away without a CLOSE
        await bob.DisposeAsync();
        var end = await Assert.ThrowsAsync<PeerLinkException>(() => toBob.Completion.WaitAsync(Limit));

        Assert.True(end.Error is PeerLinkError.ConnectionReset or PeerLinkError.ConnectionAborted, end.Error.ToString());
    }

    /// <summary>A session from <paramref name="caller"/> to <paramref name="callee"/> by PeerId, and the callee's end of it.</summary>
    private static async Task<(SecureSession Caller, SecureSession Callee)> ConnectAsync(PeerNode caller, PeerNode callee, PeerId calleeId)
    {
        SecureSession session = await caller.ConnectAsync(calleeId).WaitAsync(Limit);
        return (session, (await callee.AcceptAsync().AsTask().WaitAsync(Limit))!);
    }

    /// <summary>
    /// A node on a port that the node may take again after a restart. Port 0 gives a port from the kernel's ephemeral
    /// range, and in the moment between stop and restart any outgoing connection or port-0 bind on this machine (another
    /// test's) may be given it; the kernel never hands out a port below that range on its own.
    /// </summary>
    private async Task<RendezvousServer> StartServerBelowEphemeralPortsAsync()
    {
        int first = 32768;
        if (System.IO.File.Exists("/proc/sys/net/ipv4/ip_local_port_range")
            && int.TryParse(System.IO.File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[0], out int start))
        {
            first = start;
        }

        int port = Random.Shared.Next(Math.Max(1024, first / 2), first);
        for (int tries = 0; ; tries++)
        {
            try
            {
                return await StartServerAsync(o => o.ListenEndPoint = new IPEndPoint(IPAddress.Loopback, port));
            }
            catch (PeerLinkException e) when (e.Error == PeerLinkError.AddressInUse && tries < 100)
            {
                port = port + 1 < first ? port + 1 : Math.Max(1024, first / 2);   // taken by something else: the next one
            }
        }
    }

    private Task<RendezvousServer> StartServerAsync(Action<RendezvousServerOptions>? configure = null)
    {
        var options = new RendezvousServerOptions { ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0), StunPort = 0 };
        configure?.Invoke(options);
        return RendezvousServer.StartAsync(Relay, options);
    }

    private static Task<PeerNode> StartDeviceAsync(PeerIdentity identity, RendezvousServer server, Action<PeerNodeOptions>? configure = null, Action<RendezvousClientOptions>? rendezvous = null) =>
        new PeerNodeBuilder(identity)
            .UseRendezvous(server.EndPoint, server.PeerId, o =>
            {
                o.MinReattachDelay = TimeSpan.FromMilliseconds(50);
                o.PunchAddresses = [IPAddress.Loopback];   // host candidates on loopback only: nothing goes to a real interface
                o.UdpEndPoint = new IPEndPoint(IPAddress.Loopback, 0);
                rendezvous?.Invoke(o);
            })
            .Configure(o => configure?.Invoke(o))
            .StartAsync();

    private static Task<PeerNode> StartRelayOnlyDeviceAsync(PeerIdentity identity, RendezvousServer server) =>
        StartAttachedDeviceAsync(identity, server, rendezvous: o => o.UpgradeToDirect = false);

    private static async Task<PeerNode> StartAttachedDeviceAsync(PeerIdentity identity, RendezvousServer server, Action<PeerNodeOptions>? configure = null, Action<RendezvousClientOptions>? rendezvous = null)
    {
        PeerNode node = await StartDeviceAsync(identity, server, configure, rendezvous);
        await node.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync().WaitAsync(Limit);
        return node;
    }

    /// <summary>An attach session by hand, to send what a real device never would.</summary>
    private static async Task<SecureSession> AttachRawAsync(PeerIdentity identity, RendezvousServer server)
    {
        PeerConnection connection = await new TcpPeerConnector().ConnectAsync(server.EndPoint);
        var options = new SecureSessionOptions { Identity = identity, ApplicationId = "peerlink-rendezvous", MaxMessageSize = 1024 * 1024 };
        SecureSession session = await SecureSession.ConnectAsync(connection, options, server.PeerId).WaitAsync(Limit);
        await session.ReceiveAsync().AsTask().WaitAsync(Limit);   // the welcome
        return session;
    }
}
