using System;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Sessions;
using PeerLink.Testing;
using PeerLink.Transport;
using PeerLink.Transport.Datagrams;
using Xunit;

namespace PeerLink.FunctionalTests.Transport;

/// <summary>
/// Roaming: the client's NAT rebinds (its datagrams reach the server from a new port) in the middle of a transfer. The
/// session follows after a path challenge and loses nothing; an address that cannot answer the challenge does not get
/// the session's traffic.
/// </summary>
public sealed class UdpRoamingTests : PeerIdentities
{
    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    [Fact]
    public async Task ASessionSurvivesANatRebindingMidTransferWithNothingLost()
    {
        RebindingUdpNat? created = null;
        await using UdpPair pair = await OpenAsync(server => (created = new RebindingUdpNat(server)).EndPoint);
        RebindingUdpNat nat = created!;
        pair.Between = nat;
        (SecureSession a, SecureSession b) = (pair.A, pair.B);
        EndPoint before = b.RemoteEndPoint!;

        const int Count = 3000;
        Task<int> receivedByB = CountAsync(b, Count);
        Task<int> receivedByA = CountAsync(a, Count);
        for (int i = 0; i < Count; i++)
        {
            if (i == Count / 2)
            {
                nat.Rebind();     // the old mapping is gone; later datagrams leave from a new port
            }

            await a.SendAsync(BitConverter.GetBytes(i), Timeout);
            await b.SendAsync(BitConverter.GetBytes(i), Timeout);
        }

        Assert.Equal(Count, await receivedByB);
        Assert.Equal(Count, await receivedByA);
        var connection = (DatagramConnection)b.Connection;
        Assert.Equal(1, connection.Migrations);
        Assert.NotEqual(before, b.RemoteEndPoint);
        Assert.Equal(nat.BackEndPoint, b.RemoteEndPoint);
    }

    [Fact]
    public async Task ADatagramFromAnAddressThatCannotAnswerDoesNotMoveTheSession()
    {
        RecordingUdpRelay? created = null;
        await using UdpPair pair = await OpenAsync(server => (created = new RecordingUdpRelay(server)).EndPoint);
        RecordingUdpRelay relay = created!;
        pair.Between = relay;
        (SecureSession a, SecureSession b) = (pair.A, pair.B);
        EndPoint home = b.RemoteEndPoint!;

        // An attacker on the path sends the peer's next authenticated datagram from its own address first (it holds it
        // back from the relay): the server challenges the attacker's address, which cannot answer, and stays.
        using var attacker = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        attacker.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        relay.Divert = datagram => datagram[0] == DatagramWire.Transport ? attacker : null;
        await a.SendAsync("diverted"u8.ToArray(), Timeout);
        Assert.Equal("diverted"u8.ToArray(), (await b.ReceiveAsync(Timeout))!.Value.Payload.ToArray());
        relay.Divert = null;

        for (int i = 0; i < 20; i++)
        {
            await a.SendAsync(BitConverter.GetBytes(i), Timeout);
            await b.SendAsync(BitConverter.GetBytes(i), Timeout);
            Assert.Equal(i, BitConverter.ToInt32((await b.ReceiveAsync(Timeout))!.Value.Payload.Span));
            Assert.Equal(i, BitConverter.ToInt32((await a.ReceiveAsync(Timeout))!.Value.Payload.Span));
        }

        Assert.Equal(home, b.RemoteEndPoint);
        Assert.Equal(0, ((DatagramConnection)b.Connection).Migrations);
    }

    private Task<UdpPair> OpenAsync(Func<IPEndPoint, IPEndPoint> via) =>
        UdpPair.OpenAsync(new SecureSessionOptions { Identity = Alice }, new SecureSessionOptions { Identity = Bob }, Bob.PeerId, via);

    private static Task<int> CountAsync(SecureSession session, int count) => Task.Run(async () =>
    {
        for (int i = 0; i < count; i++)
        {
            PeerMessage? m = await session.ReceiveAsync(Timeout);
            Assert.Equal(i, BitConverter.ToInt32(m!.Value.Payload.Span));
        }

        return count;
    });
}

/// <summary>
/// A NAT of the test's own between one client and a server: the client talks to <see cref="EndPoint"/>; the server
/// sees the NAT's back socket. <see cref="Rebind"/> replaces the back socket (a new public port) and forgets the old one.
/// </summary>
internal sealed class RebindingUdpNat : IDisposable
{
    private readonly Socket _front = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private readonly IPEndPoint _server;
    private readonly object _gate = new();
    private Socket _back;
    private EndPoint? _client;

    public RebindingUdpNat(IPEndPoint server)
    {
        _server = server;
        _front.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        EndPoint = (IPEndPoint)_front.LocalEndPoint!;
        _back = NewBack();
        _ = Task.Run(FrontLoopAsync);
    }

    public IPEndPoint EndPoint { get; }

    public IPEndPoint BackEndPoint
    {
        get
        {
            lock (_gate)
            {
                return (IPEndPoint)_back.LocalEndPoint!;
            }
        }
    }

    public void Rebind()
    {
        Socket old;
        lock (_gate)
        {
            old = _back;
            _back = NewBack();
        }

        old.Dispose();
    }

    private Socket NewBack()
    {
        var back = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        back.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _ = Task.Run(() => BackLoopAsync(back));
        return back;
    }

    private async Task FrontLoopAsync()
    {
        byte[] buffer = new byte[65536];
        while (true)
        {
            try
            {
                SocketReceiveFromResult r = await _front.ReceiveFromAsync(buffer, new IPEndPoint(IPAddress.Any, 0));
                _client = r.RemoteEndPoint;
                Socket back;
                lock (_gate)
                {
                    back = _back;
                }

                back.SendTo(buffer.AsSpan(0, r.ReceivedBytes), _server);
            }
            catch (SocketException)
            {
            }
            catch (ObjectDisposedException)
            {
                if (!_front.IsBound || _disposed)
                {
                    return;
                }
            }
        }
    }

    private async Task BackLoopAsync(Socket back)
    {
        byte[] buffer = new byte[65536];
        while (true)
        {
            try
            {
                SocketReceiveFromResult r = await back.ReceiveFromAsync(buffer, new IPEndPoint(IPAddress.Any, 0));
                if (_client is not null)
                {
                    _front.SendTo(buffer.AsSpan(0, r.ReceivedBytes), _client);
                }
            }
            catch (SocketException)
            {
            }
            catch (ObjectDisposedException)
            {
                return;
            }
        }
    }

    private bool _disposed;

    public void Dispose()
    {
        _disposed = true;
        _front.Dispose();
        lock (_gate)
        {
            _back.Dispose();
        }
    }
}
