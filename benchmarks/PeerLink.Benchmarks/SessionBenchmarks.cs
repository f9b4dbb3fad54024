using System;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.Benchmarks;

/// <summary>One established connection of each kind over loopback: a PeerLink IK session, a TCP pair, a TLS 1.3 pair.</summary>
internal sealed class LoopbackConnections
{
    private PeerIdentity _serverIdentity = null!;
    private PeerIdentity _clientIdentity = null!;
    private PeerNode _server = null!;
    private PeerNode _client = null!;
    private PeerNode _clientAesGcm = null!;
    private Socket _listener = null!;

    public SecureSession Session { get; private set; } = null!;

    public SecureSession Accepted { get; private set; } = null!;

    /// <summary>A second PeerLink session whose initiator prefers AES-256-GCM (what TLS uses), and its accepted end.</summary>
    public SecureSession SessionAesGcm { get; private set; } = null!;

    public SecureSession AcceptedAesGcm { get; private set; } = null!;

    public Socket TcpClient { get; private set; } = null!;

    public Socket TcpServer { get; private set; } = null!;

    public SslStream TlsClient { get; private set; } = null!;

    public SslStream TlsServer { get; private set; } = null!;

    public async Task OpenAsync()
    {
        _serverIdentity = PeerIdentity.Generate();
        _clientIdentity = PeerIdentity.Generate();
        _server = await new PeerNodeBuilder(_serverIdentity).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
        _client = await new PeerNodeBuilder(_clientIdentity).StartAsync();
        Session = await _client.ConnectAsync(_server.LocalEndPoints[0], _server.PeerId);
        Accepted = (await _server.AcceptAsync())!;
        _clientAesGcm = await new PeerNodeBuilder(_clientIdentity).Configure(o => o.Session.PreferAesGcm = true).StartAsync();
        SessionAesGcm = await _clientAesGcm.ConnectAsync(_server.LocalEndPoints[0], _server.PeerId);
        AcceptedAesGcm = (await _server.AcceptAsync())!;
        _listener = Loopback.Listen();
        (Socket tcpClient, Socket tcpServer) = await Loopback.ConnectAsync(_listener);
        (TcpClient, TcpServer) = (tcpClient, tcpServer);
        (SslStream tlsClient, SslStream tlsServer) = await Loopback.ConnectTlsAsync(_listener);
        (TlsClient, TlsServer) = (tlsClient, tlsServer);
    }

    public async Task CloseAsync()
    {
        await _client.DisposeAsync();
        await _clientAesGcm.DisposeAsync();
        await _server.DisposeAsync();
        TcpClient.Dispose();
        TcpServer.Dispose();
        await TlsClient.DisposeAsync();
        await TlsServer.DisposeAsync();
        _listener.Dispose();
        _clientIdentity.Dispose();
        _serverIdentity.Dispose();
    }
}

/// <summary>
/// Throughput over loopback, one connection, sender and receiver in this process: <see cref="Messages"/> messages
/// sent back to back (pipelined), and the operation ends when the receiver has all of them. One operation is one
/// message. Plain TCP and SslStream (TLS 1.3, mutual ECDSA P-256) write each message with its own call, as an
/// application sending messages would; PeerLink sends each with SendAsync and coalesces them itself.
/// </summary>
public class SessionThroughputBenchmarks
{
    internal const int Messages = 1000;
    private readonly LoopbackConnections _c = new();
    private byte[] _payload = null!;
    private readonly SemaphoreSlim _peerLinkDone = new(0);
    private readonly SemaphoreSlim _peerLinkAesGcmDone = new(0);
    private readonly SemaphoreSlim _tcpDone = new(0);
    private readonly SemaphoreSlim _tlsDone = new(0);

    [Params(64, 16 * 1024)]
    public int MessageSize { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _payload = new byte[MessageSize];
        await _c.OpenAsync();
        _ = CountAsync(_c.Accepted, _peerLinkDone);
        _ = CountAsync(_c.AcceptedAesGcm, _peerLinkAesGcmDone);
        _ = DrainAsync(new NetworkStream(_c.TcpServer), _tcpDone);
        _ = DrainAsync(_c.TlsServer, _tlsDone);
    }

    [GlobalCleanup]
    public Task CleanupAsync() => _c.CloseAsync();

    [Benchmark(Baseline = true, OperationsPerInvoke = Messages)]
    public async Task SslStreamTls13()
    {
        for (int i = 0; i < Messages; i++)
        {
            await _c.TlsClient.WriteAsync(_payload);
        }

        await _tlsDone.WaitAsync();
    }

    [Benchmark(OperationsPerInvoke = Messages)]
    public async Task PlainTcp()
    {
        for (int i = 0; i < Messages; i++)
        {
            await _c.TcpClient.SendAsync(_payload, SocketFlags.None);
        }

        await _tcpDone.WaitAsync();
    }

    [Benchmark(OperationsPerInvoke = Messages)]
    public async Task PeerLinkSession()
    {
        for (int i = 0; i < Messages; i++)
        {
            await _c.Session.SendAsync(_payload);
        }

        await _peerLinkDone.WaitAsync();
    }

    /// <summary>The same with AES-256-GCM, as both peers could agree on where both have AES instructions.</summary>
    [Benchmark(OperationsPerInvoke = Messages)]
    public async Task PeerLinkSessionAesGcm()
    {
        for (int i = 0; i < Messages; i++)
        {
            await _c.SessionAesGcm.SendAsync(_payload);
        }

        await _peerLinkAesGcmDone.WaitAsync();
    }

    /// <summary>Receives until the session ends and signals once per <paramref name="batch"/> messages (the relay benchmarks use it too).</summary>
    internal static Task CountAsync(SecureSession accepted, SemaphoreSlim done, int batch = Messages) => Task.Run(async () =>
    {
        int count = 0;
        while (await accepted.ReceiveAsync() is not null)
        {
            if (++count == batch)
            {
                count = 0;
                done.Release();
            }
        }
    });

    /// <summary>Counts received bytes and signals once per <see cref="Messages"/> messages' worth.</summary>
    private async Task DrainAsync(System.IO.Stream stream, SemaphoreSlim done)
    {
        byte[] buffer = new byte[64 * 1024];
        long batch = (long)Messages * MessageSize;
        long received = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            received += read;
            while (received >= batch)
            {
                received -= batch;
                done.Release();
            }
        }
    }
}

/// <summary>
/// One 64-byte request and its echo on each kind of connection, and the echo servers that answer them.
/// </summary>
internal sealed class EchoConnections
{
    private readonly byte[] _payload = new byte[64];
    private readonly byte[] _reply = new byte[64];

    public LoopbackConnections Connections { get; } = new();

    public async Task OpenAsync()
    {
        await Connections.OpenAsync();
        _ = EchoAsync(Connections.Accepted);
        _ = EchoAsync(new NetworkStream(Connections.TcpServer));
        _ = EchoAsync(Connections.TlsServer);
    }

    public async Task PlainTcpAsync()
    {
        await Connections.TcpClient.SendAsync(_payload, SocketFlags.None);
        int read = 0;
        while (read < _reply.Length)
        {
            read += await Connections.TcpClient.ReceiveAsync(_reply.AsMemory(read), SocketFlags.None);
        }
    }

    public async Task TlsAsync()
    {
        await Connections.TlsClient.WriteAsync(_payload);
        await Connections.TlsClient.ReadExactlyAsync(_reply);
    }

    public async Task PeerLinkAsync()
    {
        await Connections.Session.SendAsync(_payload);
        await Connections.Session.ReceiveAsync();
    }

    private static Task EchoAsync(SecureSession session) => Task.Run(async () =>
    {
        while (await session.ReceiveAsync() is { } message)
        {
            await session.SendAsync(message.Payload);
        }
    });

    private static async Task EchoAsync(System.IO.Stream stream)
    {
        byte[] buffer = new byte[64];
        while (true)
        {
            try
            {
                await stream.ReadExactlyAsync(buffer);
            }
            catch (Exception e) when (e is System.IO.EndOfStreamException or System.IO.IOException or ObjectDisposedException)
            {
                return;
            }

            await stream.WriteAsync(buffer);
        }
    }
}

/// <summary>
/// A 64-byte request and its 64-byte echo over loopback, one at a time: the latency an application sees. Plain TCP is
/// the baseline (target: PeerLink within 1.1×); SslStream TLS 1.3 is beside it. The client is the benchmark's main
/// thread, which blocks and is woken once per round trip; <see cref="SessionRoundTripLoopBenchmarks"/> avoids that.
/// </summary>
public class SessionRoundTripBenchmarks
{
    private readonly EchoConnections _c = new();

    [GlobalSetup]
    public Task SetupAsync() => _c.OpenAsync();

    [GlobalCleanup]
    public Task CleanupAsync() => _c.Connections.CloseAsync();

    [Benchmark(Baseline = true)]
    public Task PlainTcp() => _c.PlainTcpAsync();

    [Benchmark]
    public Task SslStreamTls13() => _c.TlsAsync();

    [Benchmark]
    public Task PeerLinkSession() => _c.PeerLinkAsync();
}

/// <summary>
/// The same round trips, 100 in a row from one async loop: the client's code stays on the thread pool, as in an
/// application, instead of the benchmark's main thread blocking and waking for each one. One operation is one round trip.
/// </summary>
public class SessionRoundTripLoopBenchmarks
{
    private const int RoundTrips = 100;
    private readonly EchoConnections _c = new();

    [GlobalSetup]
    public Task SetupAsync() => _c.OpenAsync();

    [GlobalCleanup]
    public Task CleanupAsync() => _c.Connections.CloseAsync();

    [Benchmark(Baseline = true, OperationsPerInvoke = RoundTrips)]
    public Task PlainTcp() => LoopAsync(_c.PlainTcpAsync);

    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public Task SslStreamTls13() => LoopAsync(_c.TlsAsync);

    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public Task PeerLinkSession() => LoopAsync(_c.PeerLinkAsync);

    private static Task LoopAsync(Func<Task> roundTrip) => Task.Run(async () =>
    {
        for (int i = 0; i < RoundTrips; i++)
        {
            await roundTrip();
        }
    });
}

/// <summary>
/// Complete session set-ups over loopback, one at a time, both sides in this process: TCP connect and accept, then the
/// security handshake, then close. SslStream TLS 1.3 with mutual ECDSA P-256 authentication is the baseline (target:
/// PeerLink at least 4× as many per second); a bare TCP connect is beside them.
/// </summary>
public class SessionHandshakeBenchmarks
{
    private PeerIdentity _serverIdentity = null!;
    private PeerIdentity _clientIdentity = null!;
    private PeerNode _server = null!;
    private PeerNode _client = null!;
    private Socket _listener = null!;
    private SecureSessionOptions _serverOptions = null!;
    private SecureSessionOptions _clientOptions = null!;

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _serverIdentity = PeerIdentity.Generate();
        _clientIdentity = PeerIdentity.Generate();
        _server = await new PeerNodeBuilder(_serverIdentity).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
        _client = await new PeerNodeBuilder(_clientIdentity).StartAsync();
        _listener = Loopback.Listen();
        _serverOptions = new SecureSessionOptions { Identity = _serverIdentity };
        _clientOptions = new SecureSessionOptions { Identity = _clientIdentity };
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
        _listener.Dispose();
        _clientIdentity.Dispose();
        _serverIdentity.Dispose();
    }

    [Benchmark]
    public async Task PlainTcpConnect()
    {
        (Socket client, Socket server) = await Loopback.ConnectAsync(_listener);
        client.Dispose();
        server.Dispose();
    }

    [Benchmark(Baseline = true)]
    public async Task SslStreamTls13Mutual()
    {
        (SslStream client, SslStream server) = await Loopback.ConnectTlsAsync(_listener);
        await client.DisposeAsync();
        await server.DisposeAsync();
    }

    [Benchmark]
    public Task PeerLinkIK() => ConnectAsync(ik: true);

    [Benchmark]
    public Task PeerLinkXX() => ConnectAsync(ik: false);

    /// <summary>The same IK session over an in-memory connection pair: the handshake without sockets (for the breakdown).</summary>
    [Benchmark]
    public async Task PeerLinkIKInMemory()
    {
        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        Task<SecureSession> accept = SecureSession.AcceptAsync(b, _serverOptions);
        SecureSession client = await SecureSession.ConnectAsync(a, _clientOptions, _serverIdentity.PeerId);
        SecureSession server = await accept;
        client.Abort();
        server.Abort();
        await client.DisposeAsync();
        await server.DisposeAsync();
    }

    private async Task ConnectAsync(bool ik)
    {
        SecureSession client = await _client.ConnectAsync(_server.LocalEndPoints[0], ik ? _server.PeerId : null);
        SecureSession server = (await _server.AcceptAsync())!;
        client.Abort();
        server.Abort();
        await client.DisposeAsync();
        await server.DisposeAsync();
    }
}
