using System;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Discovery;
using PeerLink.Sessions;
using PeerLink.FunctionalTests.Sessions;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.FunctionalTests.Discovery;

/// <summary>PeerNode with mDNS discovery over an in-memory multicast link, in real time, with real loopback TCP sessions.</summary>
public sealed class PeerDiscoveryTests : PeerIdentities
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Two_nodes_discover_each_other_and_connect_by_PeerId_alone()
    {
        var net = new MdnsTestNetwork(realTime: true);
        await using PeerNode alice = await StartAsync(net, Alice, "127.0.0.1", "Alice's sensor");
        await using PeerNode bob = await StartAsync(net, Bob, "127.0.0.2", "Bob's light");

        DiscoveredPeer seen = await bob.GetDiscovery().WaitForPeerAsync(alice.PeerId).WaitAsync(Limit);
        Assert.Equal("Alice's sensor", seen.Instance.InstanceName);
        Assert.Equal("test-app", seen.ApplicationId);
        Assert.Equal("hallway", seen.Instance.Properties["room"]);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, ((IPEndPoint)alice.LocalEndPoints[0]).Port), Assert.Single(seen.EndPoints));
        Assert.DoesNotContain(alice.GetDiscovery().Peers, p => p.PeerId == alice.PeerId);

        await using SecureSession toAlice = await bob.ConnectAsync(alice.PeerId).WaitAsync(Limit);
        SecureSession fromBob = (await alice.AcceptAsync().AsTask().WaitAsync(Limit))!;
        Assert.Equal(bob.PeerId, fromBob.RemotePeerId);
        await toAlice.SendAsync("light on"u8.ToArray());
        PeerMessage? message = await fromBob.ReceiveAsync().AsTask().WaitAsync(Limit);
        Assert.Equal("light on"u8.ToArray(), message!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task A_stopped_node_leaves_the_other_nodes_table()
    {
        var net = new MdnsTestNetwork(realTime: true);
        PeerNode alice = await StartAsync(net, Alice, "127.0.0.1", "Alice");
        await using PeerNode bob = await StartAsync(net, Bob, "127.0.0.2", "Bob");
        await bob.GetDiscovery().WaitForPeerAsync(alice.PeerId).WaitAsync(Limit);

        using var cancel = new CancellationTokenSource(Limit);
        var watching = bob.GetDiscovery().WatchAsync(cancel.Token).GetAsyncEnumerator(cancel.Token);
        Assert.True(await watching.MoveNextAsync());   // the current table: Alice found
        Task<bool> next = watching.MoveNextAsync().AsTask();
        await alice.DisposeAsync();

        Assert.True(await next.WaitAsync(Limit));
        Assert.Equal(ServiceEventKind.Lost, watching.Current.Kind);
        Assert.Equal(alice.PeerId, watching.Current.Peer.PeerId);
        Assert.False(bob.GetDiscovery().TryGetPeer(alice.PeerId, out _));
        await watching.DisposeAsync();
    }

    [Fact]
    public async Task Connecting_to_an_unknown_peer_fails_with_PeerNotFound_after_the_locate_timeout()
    {
        var net = new MdnsTestNetwork(realTime: true);
        await using PeerNode bob = await StartAsync(net, Bob, "127.0.0.2", "Bob", o => o.LocateTimeout = TimeSpan.FromMilliseconds(300));

        PeerLinkException e = await Assert.ThrowsAsync<PeerLinkException>(() => bob.ConnectAsync(Mallory.PeerId).WaitAsync(Limit));
        Assert.Equal(PeerLinkError.PeerNotFound, e.Error);
    }

    [Fact]
    public async Task A_node_without_discovery_says_so()
    {
        await using PeerNode plain = await new PeerNodeBuilder(Alice).StartAsync();
        Assert.Throws<InvalidOperationException>(() => plain.GetDiscovery());
        Assert.Equal(PeerLinkError.PeerNotFound, (await Assert.ThrowsAsync<PeerLinkException>(() => plain.ConnectAsync(Bob.PeerId))).Error);
    }

    [Theory]
    [InlineData("id")]
    [InlineData("v")]
    public void Reserved_txt_keys_are_refused(string key) =>
        Assert.Equal("configure", Assert.Throws<ArgumentException>(() => new PeerNodeBuilder(Alice).UseMdnsDiscovery(o => o.Properties.Add(new(key, "x")))).ParamName);

    private static Task<PeerNode> StartAsync(MdnsTestNetwork net, PeerIdentity identity, string address, string name, Action<PeerDiscoveryOptions>? more = null) =>
        new PeerNodeBuilder(identity)
            .ListenOn(new IPEndPoint(IPAddress.Parse(address), 0))
            .Configure(o => o.Session.ApplicationId = "test-app")
            .UseMdnsDiscovery(o =>
            {
                o.InstanceName = name;
                o.Properties.Add(new("room", "hallway"));
                o.StartDiscovery = (_, _) => net.Node(address, "host-" + address.Replace('.', '-'), seed: address.GetHashCode());
                more?.Invoke(o);
            })
            .StartAsync();
}
