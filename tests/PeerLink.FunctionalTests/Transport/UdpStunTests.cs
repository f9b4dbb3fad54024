using System;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Sessions;
using PeerLink.Testing;
using PeerLink.Transport;
using Xunit;

namespace PeerLink.FunctionalTests.Transport;

/// <summary>One socket for everything on a port: STUN asked from a UDP transport's own socket while its session runs.</summary>
public sealed class UdpStunTests : PeerIdentities
{
    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    [Fact]
    public async Task TheSessionSocketLearnsItsReflexiveAddressWhileItsSessionGoesOn()
    {
        await using StunServer stun = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        await using UdpPair pair = await UdpPair.OpenAsync(new SecureSessionOptions { Identity = Alice }, new SecureSessionOptions { Identity = Bob }, Bob.PeerId);
        UdpTransport transport = pair.ClientTransport;

        // Several Binding requests at once from the session socket, with a message exchange in the middle of them.
        Task<StunBindingResult>[] queries = [.. Enumerable.Range(0, 4).Select(_ => StunClient.BindingAsync(transport, stun.LocalEndPoints[0], cancellationToken: Timeout))];
        await pair.A.SendAsync("during stun"u8.ToArray(), Timeout);
        Assert.Equal("during stun"u8.ToArray(), (await pair.B.ReceiveAsync(Timeout))!.Value.Payload.ToArray());

        foreach (Task<StunBindingResult> query in queries)
        {
            StunBindingResult result = await query;
            Assert.Equal(transport.LocalEndPoint, result.MappedAddress);   // the session's own address and port
        }

        await pair.B.SendAsync("after stun"u8.ToArray(), Timeout);
        Assert.Equal("after stun"u8.ToArray(), (await pair.A.ReceiveAsync(Timeout))!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task NoAnswerIsAStunTimeoutAndTheTransportStaysUsable()
    {
        using var silent = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await using UdpPair pair = await UdpPair.OpenAsync(new SecureSessionOptions { Identity = Alice }, new SecureSessionOptions { Identity = Bob }, Bob.PeerId);
        var options = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(20), MaxTransmissions = 2 };
        PeerLinkException e = await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(pair.ClientTransport, (IPEndPoint)silent.LocalEndPoint!, options, cancellationToken: Timeout));
        Assert.Equal(PeerLinkError.StunTimeout, e.Error);
        await pair.A.SendAsync("still here"u8.ToArray(), Timeout);
        Assert.Equal("still here"u8.ToArray(), (await pair.B.ReceiveAsync(Timeout))!.Value.Payload.ToArray());
    }
}
