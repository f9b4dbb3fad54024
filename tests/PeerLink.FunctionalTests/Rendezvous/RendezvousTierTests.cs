using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Threading.Tasks;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.FunctionalTests.Rendezvous;

/// <summary>
/// Three rendezvous nodes on loopback joined by a backplane: devices attached to different nodes connect by PeerId, the
/// relay runs on the callee's node, an offline peer is refused at once, and a device attached twice ends up at the
/// newest node. Run with each backplane (in memory here; NATS in PeerLink.Rendezvous.Nats's tests).
/// </summary>
public abstract class RendezvousTierTests : PeerIdentities, IAsyncLifetime
{
    protected static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private readonly List<PeerIdentity> _nodeIdentities = [];
    private readonly List<RendezvousServer> _nodes = [];

    /// <summary>The tier's three nodes.</summary>
    protected IReadOnlyList<RendezvousServer> Nodes => _nodes;

    public async Task InitializeAsync()
    {
        await StartTierAsync();
        for (int i = 0; i < 3; i++)
        {
            var identity = PeerIdentity.Generate();
            _nodeIdentities.Add(identity);
            _nodes.Add(await RendezvousServer.StartAsync(identity, new RendezvousServerOptions
            {
                ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
                StunPort = 0,
                Backplane = CreateBackplane(),
            }));
        }
    }

    public async Task DisposeAsync()
    {
        foreach (RendezvousServer node in _nodes)
        {
            await node.DisposeAsync();
        }

        await StopTierAsync();
        foreach (PeerIdentity identity in _nodeIdentities)
        {
            identity.Dispose();
        }

    }

    [Fact]
    public async Task DevicesOnDifferentNodesTalkByPeerIdThroughARelayOnTheCalleesNode()
    {
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

    [Fact]
    public async Task DevicesOnDifferentNodesEndOnADirectPath()
    {
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

    [Fact]
    public async Task AConnectToAnOfflinePeerFailsAtOnceWithAClearCode()
    {
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, Nodes[0]);

        var missing = await Assert.ThrowsAsync<PeerLinkException>(() => alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.PeerNotFound, missing.Error);
        Assert.Contains("not attached to any node of the rendezvous tier", missing.Message);
    }

    [Fact]
    public async Task ADeviceAttachedToTwoNodesEndsUpAtTheNewest()
    {
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

    [Fact]
    public async Task ADeviceOnTheSameNodeIsServedThereWithoutTheTier()
    {
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, Nodes[1], relayOnly: true);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, Nodes[1], relayOnly: true);
        int routedBefore = RoutedRequests;

        await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
        await bob.AcceptAsync().AsTask().WaitAsync(Limit);

        Assert.Equal(1, Nodes[1].RelayCount);
        Assert.Equal(routedBefore, RoutedRequests);
    }

    /// <summary>Starts what the backplanes need (a server), once per test.</summary>
    protected abstract ValueTask StartTierAsync();

    /// <summary>Stops it, after the nodes.</summary>
    protected abstract ValueTask StopTierAsync();

    /// <summary>A backplane for one node.</summary>
    protected abstract IRendezvousBackplane CreateBackplane();

    /// <summary>Connect requests the tier has routed between nodes so far.</summary>
    protected abstract int RoutedRequests { get; }

    protected static async Task<PeerNode> StartAttachedDeviceAsync(PeerIdentity identity, RendezvousServer node, bool relayOnly = false)
    {
        PeerNode device = await new PeerNodeBuilder(identity)
            .UseRendezvous(node.EndPoint, node.PeerId, o =>
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
}

/// <summary>The tier tests on the in-memory backplane, and what only it can show: a tier that is down.</summary>
public sealed class MemoryRendezvousTierTests : RendezvousTierTests
{
    private readonly MemoryRendezvousTier _tier = new();

    protected override int RoutedRequests => _tier.RoutedRequests;

    [Fact]
    public async Task WhenTheTierIsDownAConnectToAnotherNodeSaysSoAndTheSameNodeStillWorks()
    {
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, Nodes[0], relayOnly: true);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, Nodes[1], relayOnly: true);
        await using PeerNode mallory = await StartAttachedDeviceAsync(Mallory, Nodes[0], relayOnly: true);
        _tier.Down = true;

        var down = await Assert.ThrowsAsync<PeerLinkException>(() => alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit));
        SecureSession sameNode = await alice.ConnectAsync(Mallory.PeerId).WaitAsync(Limit);

        Assert.Equal(PeerLinkError.TierUnavailable, down.Error);
        Assert.Equal(Mallory.PeerId, sameNode.RemotePeerId);
    }

    [Fact]
    public async Task TheTierRoutesEachDeviceToTheNodeItAttachedTo()
    {
        await using PeerNode alice = await StartAttachedDeviceAsync(Alice, Nodes[0], relayOnly: true);
        await using PeerNode bob = await StartAttachedDeviceAsync(Bob, Nodes[2], relayOnly: true);

        Assert.Equal(Nodes[0].PeerId, _tier.HomeOf(Alice.PeerId));
        Assert.Equal(Nodes[2].PeerId, _tier.HomeOf(Bob.PeerId));
        Assert.Null(_tier.HomeOf(Mallory.PeerId));

        await bob.DisposeAsync();
        await Nodes[2].WhenDetachedAsync(Bob.PeerId).WaitAsync(Limit);
        Assert.Null(_tier.HomeOf(Bob.PeerId));
    }

    protected override ValueTask StartTierAsync() => ValueTask.CompletedTask;

    protected override ValueTask StopTierAsync() => ValueTask.CompletedTask;

    protected override IRendezvousBackplane CreateBackplane() => _tier.CreateBackplane();
}
