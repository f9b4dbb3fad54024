using System;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;
using LiteNetLib;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.Benchmarks;

/// <summary>
/// Over loopback, one established pair of each: LiteNetLib 2.1.5 (ReliableOrdered, which does not encrypt), a PeerLink
/// session over UDP, and a PeerLink session over TCP. Each receiving side counts messages (or echoes them).
/// </summary>
internal sealed class UdpPairs
{
    private const string Key = "peerlink-bench";
    private PeerIdentity _a = null!;
    private PeerIdentity _b = null!;
    private UdpTransport _udpServer = null!;
    private UdpTransport _udpClient = null!;
    private NetManager _liteServer = null!;
    private NetManager _liteClient = null!;
    private Action<NetPeer, NetPacketReader>? _liteServerReceive;
    private Action<NetPacketReader>? _liteClientReceive;

    public LoopbackConnections Tcp { get; } = new();

    public SecureSession Udp { get; private set; } = null!;

    public SecureSession UdpAccepted { get; private set; } = null!;

    public NetPeer LiteToServer { get; private set; } = null!;

    public NetManager LiteClient => _liteClient;

    public async Task OpenAsync(Action<NetPeer, NetPacketReader> liteServerReceive, Action<NetPacketReader>? liteClientReceive = null)
    {
        _liteServerReceive = liteServerReceive;
        _liteClientReceive = liteClientReceive;
        _a = PeerIdentity.Generate();
        _b = PeerIdentity.Generate();
        _udpServer = UdpTransport.Bind(new IPEndPoint(IPAddress.Loopback, 0), new SecureSessionOptions { Identity = _b });
        _udpClient = UdpTransport.Bind(new IPEndPoint(IPAddress.Loopback, 0), new SecureSessionOptions { Identity = _a });
        ValueTask<SecureSession> accepting = _udpServer.AcceptAsync();
        Udp = await _udpClient.ConnectAsync(_udpServer.LocalEndPoint, _b.PeerId);
        UdpAccepted = await accepting;
        await Tcp.OpenAsync();

        var serverListener = new EventBasedNetListener();
        serverListener.ConnectionRequestEvent += request => request.AcceptIfKey(Key);
        serverListener.NetworkReceiveEvent += (peer, reader, channel, method) =>
        {
            _liteServerReceive?.Invoke(peer, reader);
            reader.Recycle();
        };
        _liteServer = new NetManager(serverListener) { UnsyncedEvents = true, UpdateTime = 1, DisconnectTimeout = 60_000 };
        _liteServer.Start(IPAddress.Loopback, IPAddress.IPv6Loopback, 0);

        var clientListener = new EventBasedNetListener();
        var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        clientListener.PeerConnectedEvent += _ => connected.TrySetResult();
        clientListener.NetworkReceiveEvent += (peer, reader, channel, method) =>
        {
            _liteClientReceive?.Invoke(reader);
            reader.Recycle();
        };
        _liteClient = new NetManager(clientListener) { UnsyncedEvents = true, UpdateTime = 1, DisconnectTimeout = 60_000 };
        _liteClient.Start();
        LiteToServer = _liteClient.Connect(new IPEndPoint(IPAddress.Loopback, _liteServer.LocalPort), Key);
        await connected.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    public async Task CloseAsync()
    {
        _liteClient.Stop();
        _liteServer.Stop();
        await Udp.DisposeAsync();
        await UdpAccepted.DisposeAsync();
        await _udpClient.DisposeAsync();
        await _udpServer.DisposeAsync();
        await Tcp.CloseAsync();
        _a.Dispose();
        _b.Dispose();
    }
}

/// <summary>
/// Messages sent back to back (pipelined) over loopback; the operation ends when the receiver has all of them. One
/// operation is one message. LiteNetLib is the baseline (target: PeerLink over UDP at least as fast while encrypting).
/// </summary>
public class UdpThroughputBenchmarks
{
    private const int Messages = 1000;
    private readonly UdpPairs _c = new();
    private byte[] _payload = null!;
    private readonly SemaphoreSlim _liteDone = new(0);
    private readonly SemaphoreSlim _udpDone = new(0);
    private readonly SemaphoreSlim _tcpDone = new(0);
    private int _liteCount;

    [Params(64, 16 * 1024)]
    public int MessageSize { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _payload = new byte[MessageSize];
        await _c.OpenAsync((_, _) =>
        {
            if (Interlocked.Increment(ref _liteCount) == Messages)
            {
                _liteCount = 0;
                _liteDone.Release();
            }
        });
        _ = SessionThroughputBenchmarks.CountAsync(_c.UdpAccepted, _udpDone, Messages);
        _ = SessionThroughputBenchmarks.CountAsync(_c.Tcp.Accepted, _tcpDone, Messages);
    }

    [GlobalCleanup]
    public Task CleanupAsync() => _c.CloseAsync();

    [Benchmark(Baseline = true, OperationsPerInvoke = Messages)]
    public async Task LiteNetLibReliableOrdered()
    {
        for (int i = 0; i < Messages; i++)
        {
            _c.LiteToServer.Send(_payload, 0, DeliveryMethod.ReliableOrdered);
        }

        _c.LiteClient.TriggerUpdate();
        await _liteDone.WaitAsync();
    }

    [Benchmark(OperationsPerInvoke = Messages)]
    public async Task PeerLinkUdp()
    {
        for (int i = 0; i < Messages; i++)
        {
            await _c.Udp.SendAsync(_payload);
        }

        await _udpDone.WaitAsync();
    }

    [Benchmark(OperationsPerInvoke = Messages)]
    public async Task PeerLinkTcp()
    {
        for (int i = 0; i < Messages; i++)
        {
            await _c.Tcp.Session.SendAsync(_payload);
        }

        await _tcpDone.WaitAsync();
    }
}

/// <summary>
/// A 64-byte message and its echo, 100 in a row from one async loop. One operation is one round trip. LiteNetLib is the
/// baseline (target: PeerLink over UDP within 1.1×).
/// </summary>
public class UdpRoundTripBenchmarks
{
    private const int RoundTrips = 100;
    private readonly UdpPairs _c = new();
    private readonly byte[] _payload = new byte[64];
    private readonly SemaphoreSlim _liteReply = new(0);

    [GlobalSetup]
    public async Task SetupAsync()
    {
        await _c.OpenAsync(
            (peer, reader) =>
            {
                peer.Send(reader.GetRemainingBytesSpan(), 0, DeliveryMethod.ReliableOrdered);
                peer.NetManager.TriggerUpdate();
            },
            _ => _liteReply.Release());
        _ = EchoAsync(_c.UdpAccepted);
        _ = EchoAsync(_c.Tcp.Accepted);
    }

    [GlobalCleanup]
    public Task CleanupAsync() => _c.CloseAsync();

    [Benchmark(Baseline = true, OperationsPerInvoke = RoundTrips)]
    public Task LiteNetLibReliableOrdered() => Task.Run(async () =>
    {
        for (int i = 0; i < RoundTrips; i++)
        {
            _c.LiteToServer.Send(_payload, 0, DeliveryMethod.ReliableOrdered);
            _c.LiteClient.TriggerUpdate();
            await _liteReply.WaitAsync();
        }
    });

    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public Task PeerLinkUdp() => Task.Run(async () =>
    {
        for (int i = 0; i < RoundTrips; i++)
        {
            await _c.Udp.SendAsync(_payload);
            await _c.Udp.ReceiveAsync();
        }
    });

    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public Task PeerLinkTcp() => Task.Run(async () =>
    {
        for (int i = 0; i < RoundTrips; i++)
        {
            await _c.Tcp.Session.SendAsync(_payload);
            await _c.Tcp.Session.ReceiveAsync();
        }
    });

    private static Task EchoAsync(SecureSession session) => Task.Run(async () =>
    {
        while (await session.ReceiveAsync() is { } message)
        {
            await session.SendAsync(message.Payload);
        }
    });
}
