using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Threading.Tasks;
using NATS.Client.Core;
using PeerLink.Nat.Rendezvous;
using PeerLink.Rendezvous.Nats;
using PeerLink.Sessions;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.FunctionalTests.Rendezvous;

/// <summary>
/// Three rendezvous nodes on loopback joined by a backplane: devices attached to different nodes connect by PeerId, the
/// relay runs on the callee's node, an offline peer is refused at once, and a device attached twice ends up at the
/// newest node. Each test runs with the in-memory backplane and with NATS (a nats-server of the test's own on loopback;
/// the NATS cases are left out where nats-server is not installed, and a test says so where it must be).
/// </summary>
public sealed class RendezvousTierTests : PeerIdentities
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    public static TheoryData<string> Backplanes => NatsTestServer.Executable is null ? ["memory"] : ["memory", "nats"];

    [Fact]
    public void TheNatsCasesRunWhereThePrerequisitesAreInstalled()
    {
        // eng/test.sh installs nats-server as root (CI); a developer's machine without it runs the in-memory cases only.
        if (Environment.GetEnvironmentVariable("CI") == "true" && Environment.UserName == "root")
        {
            Assert.NotNull(NatsTestServer.Executable);
        }

        Assert.Contains("memory", ((IEnumerable<object[]>)Backplanes).Select(row => (string)row[0]));
    }

    [Theory]
    [MemberData(nameof(Backplanes))]
    public async Task DevicesOnDifferentNodesTalkByPeerIdThroughARelayOnTheCalleesNode(string backplane)
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync(backplane);
        IReadOnlyList<RendezvousServer> Nodes = tier.Nodes;
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, Nodes[0], relayOnly: true);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, Nodes[1], relayOnly: true);

        SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
        await toBob.SendAsync("switch the hall light on"u8.ToArray());
        PeerMessage? request = await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit);

        Assert.Equal("switch the hall light on"u8.ToArray(), request!.Value.Payload.ToArray());
        Assert.Equal(Alice.PeerId, fromAlice.RemotePeerId);
        Assert.Equal(toBob.HandshakeHash.ToArray(), fromAlice.HandshakeHash.ToArray());   // end to end: no node is a party
        Assert.Equal(SessionPathKind.Relayed, toBob.Path.Kind);
        Assert.Equal(0, Nodes[0].RelayCount);   // relayed bytes stay off the caller's node and off the backplane
        Assert.Equal(1, Nodes[1].RelayCount);
        Assert.Equal(Nodes[1].EndPoint, toBob.RemoteEndPoint);
    }

    [Theory]
    [MemberData(nameof(Backplanes))]
    public async Task DevicesOnDifferentNodesEndOnADirectPath(string backplane)
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync(backplane);
        IReadOnlyList<RendezvousServer> Nodes = tier.Nodes;
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, Nodes[0]);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, Nodes[2]);
        SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        var direct = new TaskCompletionSource<SessionPath>(TaskCreationOptions.RunContinuationsAsynchronously);
        toBob.PathChanged += (_, path) =>
        {
            if (path.Kind == SessionPathKind.DirectUdp)
            {
                direct.TrySetResult(path);
            }
        };
        if (toBob.Path.Kind == SessionPathKind.DirectUdp)
        {
            direct.TrySetResult(toBob.Path);
        }

        SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
        SessionPath path = await direct.Task.WaitAsync(Limit);
        await toBob.SendAsync(new byte[] { 7 });

        Assert.StartsWith("direct-udp", path.Description);
        Assert.Equal(new byte[] { 7 }, (await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
    }

    [Theory]
    [MemberData(nameof(Backplanes))]
    public async Task AConnectToAnOfflinePeerFailsAtOnceWithAClearCode(string backplane)
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync(backplane);
        IReadOnlyList<RendezvousServer> Nodes = tier.Nodes;
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, Nodes[0]);

        var missing = await Assert.ThrowsAsync<PeerLinkException>(() => alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.PeerNotFound, missing.Error);
        Assert.Contains("not attached to any node of the rendezvous tier", missing.Message);
    }

    [Theory]
    [MemberData(nameof(Backplanes))]
    public async Task ADeviceAttachedToTwoNodesEndsUpAtTheNewest(string backplane)
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync(backplane);
        IReadOnlyList<RendezvousServer> Nodes = tier.Nodes;
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, Nodes[0], relayOnly: true);
        await using PeerNode bobOld = await StartAttachedDeviceAsync(Bob, Nodes[1], relayOnly: true);
        Task oldDetached = Nodes[1].WhenDetachedAsync(Bob.PeerId);

        // The device roamed: the same identity attaches to another node, which evicts the older attachment everywhere.
        await using PeerNode bobNew = await StartAttachedDeviceAsync(Bob, Nodes[2], relayOnly: true);
        await oldDetached.WaitAsync(Limit);
        SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        SecureSession? atNew = await bobNew.AcceptAsync().AsTask().WaitAsync(Limit);

        Assert.NotNull(atNew);
        Assert.True(bobNew.GetComponent<RendezvousClient>()!.Epoch > bobOld.GetComponent<RendezvousClient>()!.Epoch);
        Assert.Equal(1, Nodes[2].RelayCount);
        Assert.Equal(0, Nodes[1].RelayCount);
        Assert.Empty(bobOld.Sessions);
    }

    [Theory]
    [MemberData(nameof(Backplanes))]
    public async Task ADeviceOnTheSameNodeIsServedThereWithoutTheTier(string backplane)
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync(backplane);
        IReadOnlyList<RendezvousServer> Nodes = tier.Nodes;
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, Nodes[1], relayOnly: true);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, Nodes[1], relayOnly: true);
        int routedBefore = tier.RoutedRequests;

        await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        await bob.AcceptAsync().AsTask().WaitAsync(Limit);

        Assert.Equal(1, Nodes[1].RelayCount);
        Assert.Equal(routedBefore, tier.RoutedRequests);
    }

    [Theory]
    [MemberData(nameof(Backplanes))]
    public async Task WhenADevicesNodeDiesItAttachesToTheNextAndItsDirectSessionCarriesOn(string backplane)
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync(backplane);
        // Alice knows two nodes of the tier; Bob and Mallory are on the third.
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, [tier.Nodes[0], tier.Nodes[1]]);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, [tier.Nodes[2]]);
        await using PeerNode mallory = await StartAttachedDeviceAsync(Mallory, [tier.Nodes[2]], relayOnly: true);
        RendezvousClient client = alice.GetComponent<RendezvousClient>()!;
        SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
        await WaitForPathAsync(toBob, SessionPathKind.DirectUdp);
        RendezvousNode first = client.CurrentNode;
        Task detached = client.WhenDetachedAsync();

        long killed = Stopwatch.GetTimestamp();
        await tier.StopAsync(first.PeerId);   // Alice's node dies
        await detached.WaitAsync(Limit);
        await client.WaitForAttachmentAsync().WaitAsync(Limit);
        TimeSpan reattached = Stopwatch.GetElapsedTime(killed);

        // The direct session never depended on the node; the tier reaches Alice at her new node.
        await toBob.SendAsync("still here"u8.ToArray());
        PeerMessage? carried = await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit);
        SecureSession toAlice = await mallory.ConnectAsync(Alice.PeerId).WaitAsync(Limit);

        Assert.NotEqual(first, client.CurrentNode);
        Assert.Contains(client.CurrentNode, new[] { tier.Nodes[0], tier.Nodes[1] }.Select(n => new RendezvousNode(n.EndPoint, n.PeerId)));
        Assert.Equal("still here"u8.ToArray(), carried!.Value.Payload.ToArray());
        Assert.Equal(SessionPathKind.DirectUdp, toBob.Path.Kind);
        Assert.Equal(Alice.PeerId, toAlice.RemotePeerId);
        // docs/rendezvous-tier.md: back within MinReattachDelay (50 ms here, 1 s by default) + the probe of the nodes + one
        // attach handshake, about 0.1 s here on loopback; the limit leaves room for a loaded machine.
        Assert.True(reattached < TimeSpan.FromSeconds(10), $"re-attached after {reattached.TotalMilliseconds:F0} ms");
    }

    [NatsFact]
    public async Task KillingOneNatsServerDoesNotStopRouting()
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync("nats");
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, tier.Nodes[0], relayOnly: true);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, tier.Nodes[1], relayOnly: true);
        var reconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        tier.Connections[0].ConnectionOpened += (_, _) =>
        {
            reconnected.TrySetResult();
            return ValueTask.CompletedTask;
        };

        await tier.Servers[0].DisposeAsync();   // the NATS server that node 0 (Alice's) prefers dies
        await reconnected.Task.WaitAsync(Limit);   // node 0 is on another server of the cluster, its subscriptions with it
        SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
        await toBob.SendAsync(new byte[] { 42 });

        Assert.Equal(new byte[] { 42 }, (await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
        Assert.Equal(1, tier.Nodes[1].RelayCount);
    }

    [NatsFact]
    public async Task AConnectToAPeerThatWentOfflineSaysWhenItWasLastSeen()
    {
        await using NatsTestServer server = await NatsTestServer.StartAsync(jetStream: true);
        await using var connection = new NatsConnection(new NatsOpts { Url = server.Url });
        var presence = new NatsRendezvousBackplaneOptions { PresenceBucket = "peerlink-presence-test", PresenceMaxAge = TimeSpan.FromHours(1) };
        await using var first = new NatsRendezvousBackplane(connection, presence);
        await using var second = new NatsRendezvousBackplane(connection, presence);
        using PeerIdentity firstId = PeerIdentity.Generate(), secondId = PeerIdentity.Generate();
        var listen = new IPEndPoint(IPAddress.Loopback, 0);
        await using RendezvousServer nodeA = await RendezvousServer.StartAsync(firstId, new RendezvousServerOptions { ListenEndPoint = listen, StunPort = null, Backplane = first });
        await using RendezvousServer nodeB = await RendezvousServer.StartAsync(secondId, new RendezvousServerOptions { ListenEndPoint = listen, StunPort = null, Backplane = second });
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, nodeA, relayOnly: true);
        PeerNode bob = await StartAttachedDeviceAsync(Bob, nodeB, relayOnly: true);
        await bob.DisposeAsync();   // Bob goes offline
        await nodeB.WhenDetachedAsync(Bob.PeerId).WaitAsync(Limit);

        var offline = await Assert.ThrowsAsync<PeerLinkException>(() => alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit));
        var never = await Assert.ThrowsAsync<PeerLinkException>(() => alice.ConnectAsync(Mallory.PeerId).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.PeerNotFound, offline.Error);
        Assert.Matches(@"is offline; last seen \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", offline.Message);
        Assert.Equal(PeerLinkError.PeerNotFound, never.Error);
        Assert.Contains("not attached to any node of the rendezvous tier", never.Message);
    }

    [Fact]
    public async Task ADeviceSkipsANodeThatDoesNotAnswer()
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync("memory");
        using var dead = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        dead.Bind(new IPEndPoint(IPAddress.Loopback, 0));   // bound, never listening: connects are refused
        var deadNode = new RendezvousNode((IPEndPoint)dead.LocalEndPoint!, Relay.PeerId);
        var live = new RendezvousNode(tier.Nodes[1].EndPoint, tier.Nodes[1].PeerId);

        PeerNode alice = await new PeerNodeBuilder(Alice)
            .UseRendezvous([deadNode, live], o => o.UdpEndPoint = new IPEndPoint(IPAddress.Loopback, 0))
            .StartAsync();
        await using (alice)
        {
            RendezvousClient client = alice.GetComponent<RendezvousClient>()!;
            await client.WaitForAttachmentAsync().WaitAsync(Limit);

            Assert.Equal(live, client.CurrentNode);
            Assert.True(tier.Nodes[1].IsAttached(Alice.PeerId));
            Assert.Equal([deadNode, live], client.Nodes);
        }
    }

    [Fact]
    public void ATierOfNodesMustNameEachNodeOnce()
    {
        var node = new RendezvousNode(new IPEndPoint(IPAddress.Loopback, 7400), Relay.PeerId);

        Assert.Equal("nodes", Assert.Throws<ArgumentException>(() => new PeerNodeBuilder(Alice).UseRendezvous([node, node with { EndPoint = new IPEndPoint(IPAddress.Loopback, 7401) }])).ParamName);
        Assert.Equal("nodes", Assert.Throws<ArgumentException>(() => new PeerNodeBuilder(Alice).UseRendezvous(Array.Empty<RendezvousNode>())).ParamName);
    }

    [Fact]
    public async Task WhenTheTierIsDownAConnectToAnotherNodeSaysSoAndTheSameNodeStillWorks()
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync("memory");
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, tier.Nodes[0], relayOnly: true);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, tier.Nodes[1], relayOnly: true);
        await using PeerNode mallory = await StartAttachedDeviceAsync(Mallory, tier.Nodes[0], relayOnly: true);
        tier.Memory!.Down = true;

        var down = await Assert.ThrowsAsync<PeerLinkException>(() => alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit));
        SecureSession sameNode = await alice.ConnectAsync(Mallory.PeerId).WaitAsync(Limit);

        Assert.Equal(PeerLinkError.TierUnavailable, down.Error);
        Assert.Equal(Mallory.PeerId, sameNode.RemotePeerId);
    }

    [Fact]
    public async Task AStaleAttachmentThatMissedItsEvictionGoesWithTheNextRoutedMessageOfTheDevice()
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync("memory");
        await using PeerNode bobOld = await StartAttachedDeviceAsync(Bob, tier.Nodes[1], relayOnly: true);
        await using PeerNode mallory = await StartAttachedDeviceAsync(Mallory, tier.Nodes[1], relayOnly: true);
        tier.Memory!.Down = true;   // Bob moves while the tier is down: node 1 never hears of it
        await using PeerNode bobNew = await StartAttachedDeviceAsync(Bob, tier.Nodes[2], relayOnly: true);
        tier.Memory.Down = false;
        Assert.True(tier.Nodes[1].IsAttached(Bob.PeerId));
        Task staleGone = tier.Nodes[1].WhenDetachedAsync(Bob.PeerId);

        // Bob's next routed message carries his new epoch to node 1, which closes its stale copy.
        await bobNew.ConnectAsync(Mallory.PeerId).WaitAsync(Limit);
        await staleGone.WaitAsync(Limit);

        Assert.False(tier.Nodes[1].IsAttached(Bob.PeerId));
        Assert.True(tier.Nodes[2].IsAttached(Bob.PeerId));
    }

    [Fact]
    public async Task TheTierRoutesEachDeviceToTheNodeItAttachedTo()
    {
        await using RendezvousTestTier tier = await RendezvousTestTier.StartAsync("memory");
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, tier.Nodes[0], relayOnly: true);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, tier.Nodes[2], relayOnly: true);

        Assert.Equal(tier.Nodes[0].PeerId, tier.Memory!.HomeOf(Alice.PeerId));
        Assert.Equal(tier.Nodes[2].PeerId, tier.Memory.HomeOf(Bob.PeerId));
        Assert.Null(tier.Memory.HomeOf(Mallory.PeerId));

        await bob.DisposeAsync();
        await tier.Nodes[2].WhenDetachedAsync(Bob.PeerId).WaitAsync(Limit);
        Assert.Null(tier.Memory.HomeOf(Bob.PeerId));
    }

    private static Task<PeerNode> StartAttachedDeviceAsync(PeerIdentity identity, RendezvousServer node, bool relayOnly = false) =>
        StartAttachedDeviceAsync(identity, [node], relayOnly);

    private static async Task<PeerNode> StartAttachedDeviceAsync(PeerIdentity identity, RendezvousServer[] nodes, bool relayOnly = false)
    {
        PeerNode device = await new PeerNodeBuilder(identity)
            .UseRendezvous(nodes.Select(n => new RendezvousNode(n.EndPoint, n.PeerId)), o =>
            {
                o.MinReattachDelay = TimeSpan.FromMilliseconds(50);
                o.PunchAddresses = [IPAddress.Loopback];   // loopback only: nothing goes to a real interface
                o.UdpEndPoint = new IPEndPoint(IPAddress.Loopback, 0);
                o.UpgradeToDirect = !relayOnly;
            })
            .StartAsync();
        await device.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync().WaitAsync(Limit);
        return device;
    }

    private static async Task WaitForPathAsync(SecureSession session, SessionPathKind kind)
    {
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        session.PathChanged += (_, path) =>
        {
            if (path.Kind == kind)
            {
                reached.TrySetResult();
            }
        };
        if (session.Path.Kind == kind)
        {
            reached.TrySetResult();
        }

        await reached.Task.WaitAsync(Limit);
    }
}

/// <summary>A test that needs nats-server: skipped, saying why, where it is not installed.</summary>
public sealed class NatsFactAttribute : FactAttribute
{
    public NatsFactAttribute()
    {
        if (NatsTestServer.Executable is null)
        {
            Skip = "nats-server (Debian package nats-server) is not installed; eng/install-test-prerequisites.sh installs it when run as root.";
        }
    }
}
