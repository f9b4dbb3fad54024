using System;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.FunctionalTests.Diagnostics;

/// <summary>Tests that read the process-wide "PeerLink" meter and activity source: they run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TelemetryCollection
{
    public const string Name = "Telemetry (alone)";
}

/// <summary>The metrics and spans of connects by PeerId, the rendezvous node, punching and STUN, on loopback.</summary>
[Collection(TelemetryCollection.Name)]
public sealed class TelemetryTests : PeerIdentities
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task AConnectByPeerIdThroughARendezvousNodeIsTracedAndCountedUntilItGoesDirect()
    {
        using var recorder = new TelemetryRecorder();
        await using (RendezvousServer server = await RendezvousServer.StartAsync(Relay, new RendezvousServerOptions { ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0), StunPort = 0 }))
        {
            await using PeerNode alice = await StartAttachedDeviceAsync(Alice, server);
            await using PeerNode bob = await StartAttachedDeviceAsync(Bob, server);
            Assert.Equal(2, recorder.Sum("peerlink.rendezvous.attached"));

            SecureSession toBob = await alice.ConnectAsync(Bob.PeerId).WaitAsync(Limit);
            var direct = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            toBob.PathChanged += (_, path) =>
            {
                if (path.Kind == SessionPathKind.DirectUdp)
                {
                    direct.TrySetResult();
                }
            };
            if (toBob.Path.Kind == SessionPathKind.DirectUdp)
            {
                direct.TrySetResult();
            }

            SecureSession fromAlice = (await bob.AcceptAsync().AsTask().WaitAsync(Limit))!;
            await toBob.SendAsync(new byte[1000]);
            Assert.Equal(1000, (await fromAlice.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Length);
            await direct.Task.WaitAsync(Limit);

            // The connect span: the peer by PeerId, relayed at first, with the handshake beneath it.
            Activity connect = Assert.Single(recorder.SpansNamed("peerlink.connect"));
            Assert.Equal(Bob.PeerId.ToString(), connect.GetTagItem("peerlink.peer.id"));
            Assert.Equal(nameof(SessionPathKind.Relayed), connect.GetTagItem("peerlink.path"));
            Assert.Equal("success", connect.GetTagItem("peerlink.outcome"));
            Assert.Contains(recorder.SpansNamed("peerlink.handshake"), h => h.ParentSpanId == connect.SpanId && Equals(h.GetTagItem("peerlink.peer.id"), Bob.PeerId.ToString()));

            // The node forwarded the relayed handshake and the first message: ciphertext, so more than 1000 bytes.
            Assert.True(recorder.Sum("peerlink.relay.bytes") > 1000, $"relayed {recorder.Sum("peerlink.relay.bytes")} bytes");

            // Both sides record the attempt that formed the UDP path (a span each, too); the devices asked STUN for their
            // public addresses and the node's STUN server answered.
            Assert.True(recorder.Sum("peerlink.punch.attempts", ("peerlink.path", "udp"), ("peerlink.outcome", "success")) >= 1);
            Assert.Contains(recorder.SpansNamed("peerlink.punch"), s => Equals(s.GetTagItem("peerlink.path"), "udp"));
            Assert.True(recorder.Sum("peerlink.stun.requests", ("peerlink.stun.role", "client"), ("peerlink.outcome", "success")) >= 2);
            Assert.True(recorder.Sum("peerlink.stun.requests", ("peerlink.stun.role", "server"), ("peerlink.outcome", "answered")) >= 2);
        }

        Assert.Equal(0, recorder.Sum("peerlink.rendezvous.attached"));
    }

    [Fact]
    public async Task StunTransactionsAreCountedByRoleAndOutcome()
    {
        using var recorder = new TelemetryRecorder();
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await StunClient.BindingAsync(socket, server.LocalEndPoints[0]).WaitAsync(Limit);

        // A port where nothing answers: the client gives up after its transmissions.
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var quick = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(10), MaxTransmissions = 2 };
        await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(socket, (IPEndPoint)silent.LocalEndPoint!, quick).WaitAsync(Limit));

        Assert.Equal(1, recorder.Sum("peerlink.stun.requests", ("peerlink.stun.role", "client"), ("peerlink.outcome", "success")));
        Assert.Equal(1, recorder.Sum("peerlink.stun.requests", ("peerlink.stun.role", "client"), ("peerlink.outcome", "StunTimeout")));
        Assert.Equal(1, recorder.Sum("peerlink.stun.requests", ("peerlink.stun.role", "server"), ("peerlink.outcome", "answered")));
    }

    private static async Task<PeerNode> StartAttachedDeviceAsync(PeerIdentity identity, RendezvousServer server)
    {
        PeerNode node = await new PeerNodeBuilder(identity)
            .UseRendezvous(server.EndPoint, server.PeerId, o =>
            {
                o.PunchAddresses = [IPAddress.Loopback];   // host candidates on loopback only
                o.UdpEndPoint = new IPEndPoint(IPAddress.Loopback, 0);
            })
            .StartAsync();
        await node.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync().WaitAsync(Limit);
        return node;
    }
}
