using System;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Sessions;
using PeerLink.Testing;
using PeerLink.Transport;
using PeerLink.Transport.Datagrams;
using Xunit;

namespace PeerLink.FunctionalTests.Transport;

/// <summary>
/// Datagrams an attacker can send to a UDP session's port: junk, truncated and altered datagrams, replays, forged
/// receiver indexes, and a flood of handshake initiations from many source addresses. None of them reaches the
/// application, ends a session, or stops a legitimate peer from connecting.
/// </summary>
public sealed class UdpHostileInputTests : PeerIdentities
{
    private static readonly IPEndPoint AnyLoopback = new(IPAddress.Loopback, 0);

    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    private SecureSessionOptions Options(PeerIdentity identity) => new() { Identity = identity };

    [Fact]
    public async Task JunkReplaysAndForgeriesNeitherReachTheApplicationNorEndTheSession()
    {
        await using UdpTransport server = UdpTransport.Bind(AnyLoopback, Options(Bob));
        await using UdpTransport client = UdpTransport.Bind(AnyLoopback, Options(Alice));
        using var relay = new RecordingUdpRelay(server.LocalEndPoint);
        ValueTask<SecureSession> accepting = server.AcceptAsync(Timeout);
        await using SecureSession a = await client.ConnectAsync(relay.EndPoint, Bob.PeerId, Timeout);
        await using SecureSession b = await accepting;
        for (int i = 0; i < 20; i++)
        {
            await a.SendAsync(BitConverter.GetBytes(i), Timeout);
            Assert.Equal(i, BitConverter.ToInt32((await b.ReceiveAsync(Timeout))!.Value.Payload.Span));
        }

        var random = new Random(7983);
        var hostile = new List<byte[]>();
        foreach (byte[] captured in relay.Captured)
        {
            hostile.Add(captured);                                                    // replayed as is
            hostile.Add(captured[..random.Next(0, captured.Length)]);                  // truncated
            byte[] flipped = (byte[])captured.Clone();
            flipped[random.Next(flipped.Length)] ^= (byte)(1 << random.Next(8));
            hostile.Add(flipped);                                                     // altered
            if (captured[0] == DatagramWire.Transport)
            {
                byte[] forged = (byte[])captured.Clone();
                BinaryPrimitives.WriteUInt32BigEndian(forged.AsSpan(4), (uint)random.Next());
                hostile.Add(forged);                                                  // another receiver index
            }
        }

        for (int i = 0; i < 500; i++)
        {
            byte[] junk = RandomNumberGenerator.GetBytes(random.Next(0, 1600));
            if (junk.Length > 0 && i % 2 == 0)
            {
                junk[0] = (byte)(DatagramWire.Initiation + (i % 5));                  // looks like PeerLink
            }

            hostile.Add(junk);
        }

        foreach (byte[] datagram in hostile)
        {
            relay.InjectToServer(datagram);
        }

        // The session goes on: the next messages arrive in order, and nothing else arrived in between.
        for (int i = 20; i < 40; i++)
        {
            await a.SendAsync(BitConverter.GetBytes(i), Timeout);
            await b.SendAsync(BitConverter.GetBytes(-i), Timeout);
            Assert.Equal(i, BitConverter.ToInt32((await b.ReceiveAsync(Timeout))!.Value.Payload.Span));
            Assert.Equal(-i, BitConverter.ToInt32((await a.ReceiveAsync(Timeout))!.Value.Payload.Span));
        }

        Assert.True(((DatagramConnection)b.Connection).RejectedDatagrams > 0, "the replays reached the session's keys and were refused");
        Assert.False(b.Completion.IsCompleted);
        Assert.Equal(1, server.ConnectionCount);    // a replayed initiation did not open a second session
    }

    [Fact]
    public async Task AHandshakeFloodFromManyAddressesGetsCookiesNotDiffieHellmanAndAPeerStillConnects()
    {
        const int Rate = 20;
        const int FloodRate = 5000;
        await using UdpTransport server = UdpTransport.Bind(AnyLoopback, Options(Bob), new UdpTransportOptions { HandshakesPerSecondBeforeCookies = Rate });
        HandshakeMacKeys keys = HandshakeMacKeys.From(Bob.PeerId.ToArray());   // the attacker knows Bob's PeerId, so mac1 is right

        // 64 spoofed-looking sources on 127.0.0.0/8, none of which ever answers a cookie.
        var flooders = new List<Socket>();
        for (int i = 0; i < 64; i++)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            socket.Bind(new IPEndPoint(IPAddress.Parse($"127.0.{1 + (i / 200)}.{2 + (i % 200)}"), 0));
            flooders.Add(socket);
        }

        var stopwatch = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        long flooded = 0;
        Task flood = Task.Run(async () =>
        {
            // The flood's own pace, 250 times the budget and short of saturating this 2-core machine: a burst on every
            // tick of a 5 ms timer, as many as the rate allows so far.
            var random = new Random(5);
            byte[] initiation = new byte[8 + 96 + 32 + 32];
            using var ticks = new PeriodicTimer(TimeSpan.FromMilliseconds(5));
            while (!stop.IsCancellationRequested && await ticks.WaitForNextTickAsync())
            {
                while (flooded < stopwatch.Elapsed.TotalSeconds * FloodRate && !stop.IsCancellationRequested)
                {
                    initiation[0] = DatagramWire.Initiation;
                    initiation[1] = SessionWire.Version;
                    initiation[2] = SessionWire.PatternByte(ik: true, psk: false, aesGcm: false);
                    random.NextBytes(initiation.AsSpan(4, 4 + 96));
                    int mac1At = initiation.Length - 32;
                    HandshakeMacKeys.Mac(keys.Mac1Key, initiation.AsSpan(0, mac1At), initiation.AsSpan(mac1At, 16));
                    flooders[(int)(flooded % flooders.Count)].SendTo(initiation, server.LocalEndPoint);
                    Interlocked.Increment(ref flooded);
                }
            }
        });

        try
        {
            // Let the flood exhaust the budget, then connect in the middle of it.
            while (server.CookieRepliesSent < 500 || Interlocked.Read(ref flooded) < 2500)
            {
                await Task.Delay(10, Timeout);
            }

            await using UdpTransport client = UdpTransport.Bind(AnyLoopback, Options(Alice));
            ValueTask<SecureSession> accepting = server.AcceptAsync(Timeout);
            await using SecureSession a = await client.ConnectAsync(server.LocalEndPoint, Bob.PeerId, Timeout);
            await using SecureSession b = await accepting;
            await a.SendAsync("through the flood"u8.ToArray(), Timeout);
            Assert.Equal("through the flood"u8.ToArray(), (await b.ReceiveAsync(Timeout))!.Value.Payload.ToArray());
        }
        finally
        {
            stop.Cancel();
            await flood;
            foreach (Socket socket in flooders)
            {
                socket.Dispose();
            }
        }

        double seconds = stopwatch.Elapsed.TotalSeconds;
        long spent = server.HandshakesRun;
        Assert.True(flooded > 2000, $"the flood sent {flooded} initiations");
        Assert.True(spent <= Rate + (Rate * seconds) + 2, $"{spent} handshakes run in {seconds:F1} s of a {flooded}-initiation flood; the budget is {Rate}/s");
        Assert.True(spent * 10 < server.CookieRepliesSent, $"{spent} handshakes against {server.CookieRepliesSent} cookie replies: nine in ten flood initiations must cost no Diffie-Hellman");
    }
}

/// <summary>A UDP relay between one client and a server that records what the client sends and can inject more.</summary>
internal sealed class RecordingUdpRelay : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private readonly IPEndPoint _server;
    private readonly Task _loop;
    private EndPoint? _client;

    public RecordingUdpRelay(IPEndPoint server)
    {
        _server = server;
        _socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        EndPoint = (IPEndPoint)_socket.LocalEndPoint!;
        _loop = Task.Run(LoopAsync);
    }

    public IPEndPoint EndPoint { get; }

    public ConcurrentQueue<byte[]> Captured { get; } = new();

    public void InjectToServer(byte[] datagram) => _socket.SendTo(datagram, _server);

    /// <summary>When it returns a socket for a client datagram, the datagram goes to the server from that socket instead.</summary>
    public Func<byte[], Socket?>? Divert { get; set; }

    private async Task LoopAsync()
    {
        byte[] buffer = new byte[2048];
        while (true)
        {
            SocketReceiveFromResult result;
            try
            {
                result = await _socket.ReceiveFromAsync(buffer, new IPEndPoint(IPAddress.Any, 0));
            }
            catch (Exception e) when (e is ObjectDisposedException or SocketException)
            {
                if (e is SocketException { SocketErrorCode: SocketError.ConnectionReset })
                {
                    continue;
                }

                return;
            }

            byte[] datagram = buffer.AsSpan(0, result.ReceivedBytes).ToArray();
            if (result.RemoteEndPoint.Equals(_server))
            {
                if (_client is not null)
                {
                    _socket.SendTo(datagram, _client);
                }
            }
            else
            {
                _client = result.RemoteEndPoint;
                Captured.Enqueue(datagram);
                (Divert?.Invoke(datagram) ?? _socket).SendTo(datagram, _server);
            }
        }
    }

    public void Dispose()
    {
        _socket.Dispose();
        _loop.Wait(TimeSpan.FromSeconds(5));
    }
}
