using System;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// Bulk transfers over a UDP or a TCP session between two lab hosts, for the lossy-link tests and eng/udp-goodput.sh:
/// `sink udp|tcp LISTEN` prints "ready PEERID" and, for each session, receives everything and answers the final request
/// with the byte count and SHA-256; `send udp|tcp SERVER PEERID BYTES` sends BYTES of random data in 16 KiB messages
/// and prints "sent BYTES MS HASH-MATCH".
/// </summary>
internal static class UdpLabHelper
{
    public const string Usage = "sink udp|tcp LISTEN | send udp|tcp SERVER PEERID BYTES";

    public static async Task<int> RunAsync(string[] args)
    {
        using PeerIdentity identity = PeerIdentity.Generate();
        // PEERLINK_LAB_LOG=1 logs to standard error (the lab tests show it when a run fails).
        using Microsoft.Extensions.Logging.ILoggerFactory? logs = Environment.GetEnvironmentVariable("PEERLINK_LAB_LOG") == "1"
            ? Microsoft.Extensions.Logging.LoggerFactory.Create(b => b.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace).SetMinimumLevel(LogLevel.Debug))
            : null;
        var options = new SecureSessionOptions { Identity = identity, HandshakeTimeout = TimeSpan.FromSeconds(20), IdleTimeout = TimeSpan.FromSeconds(120), KeepAliveInterval = TimeSpan.FromSeconds(10) };
        bool udp = args[1] == "udp";
        if (args[0] == "sink")
        {
            var listen = IPEndPoint.Parse(args[2]);
            if (udp)
            {
                await using UdpTransport transport = UdpTransport.Bind(listen, options, null, logs);
                Console.WriteLine("ready " + identity.PeerId);
                Task stdin = Task.Run(WaitForStdinToCloseAsync);   // Console.In reads block: off this thread
                while (!stdin.IsCompleted)
                {
                    Task<SecureSession> next = transport.AcceptAsync().AsTask();
                    if (await Task.WhenAny(next, stdin) == next)
                    {
                        _ = SinkAsync(await next);
                    }
                }
            }
            else
            {
                await using PeerNode node = await new PeerNodeBuilder(identity).ListenOn(listen).Configure(o => CopyTo(options, o.Session)).StartAsync();
                Console.WriteLine("ready " + identity.PeerId);
                Task stdin = Task.Run(WaitForStdinToCloseAsync);   // Console.In reads block: off this thread
                while (!stdin.IsCompleted)
                {
                    Task<SecureSession?> next = node.AcceptAsync().AsTask();
                    if (await Task.WhenAny(next, stdin) == next && await next is { } accepted)
                    {
                        _ = SinkAsync(accepted);
                    }
                }
            }

            return 0;
        }

        var server = IPEndPoint.Parse(args[2]);
        PeerId peer = PeerId.Parse(args[3]);
        long bytes = long.Parse(args[4], CultureInfo.InvariantCulture);
        SecureSession session;
        await using UdpTransport? client = udp ? UdpTransport.Bind(new IPEndPoint(IPAddress.Any, 0), options, null, logs) : null;
        await using PeerNode? tcpNode = udp ? null : await new PeerNodeBuilder(identity).Configure(o => CopyTo(options, o.Session)).StartAsync();
        // PEERLINK_LAB_TCP_CC picks the TCP sender's congestion control (TCP_CONGESTION; root may choose any the
        // kernel has, such as cubic, reno or bbr), for eng/udp-fairness.sh.
        string? congestionControl = udp ? null : Environment.GetEnvironmentVariable("PEERLINK_LAB_TCP_CC");
        session = udp ? await client!.ConnectAsync(server, peer)
            : congestionControl is { Length: > 0 } ? await ConnectTcpAsync(server, peer, congestionControl, options, logs)
            : await tcpNode!.ConnectAsync(server, peer);
        await using (session)
        {
            byte[] chunk = new byte[16 * 1024];
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var stopwatch = Stopwatch.StartNew();
            // PEERLINK_LAB_TRACE=1: the UDP flow's window and smoothed round trip every 100 ms, on standard error.
            using var traceStop = new CancellationTokenSource();
            Task trace = Environment.GetEnvironmentVariable("PEERLINK_LAB_TRACE") == "1" && session.Connection is Transport.Datagrams.DatagramConnection traced
                ? TraceAsync(traced, stopwatch, traceStop.Token)
                : Task.CompletedTask;
            for (long sent = 0; sent < bytes; sent += chunk.Length)
            {
                RandomNumberGenerator.Fill(chunk);
                int length = (int)Math.Min(chunk.Length, bytes - sent);
                hash.AppendData(chunk, 0, length);
                await session.SendAsync(chunk.AsMemory(0, length));
            }

            byte[] answer = await session.RequestAsync("done"u8.ToArray());
            long ms = stopwatch.ElapsedMilliseconds;
            await traceStop.CancelAsync();
            await trace;
            string expected = bytes.ToString(CultureInfo.InvariantCulture) + " " + Convert.ToHexString(hash.GetHashAndReset());
            Console.WriteLine($"sent {bytes} {ms} {(System.Text.Encoding.ASCII.GetString(answer) == expected ? "match" : "MISMATCH")}");
            if (session.Connection is Transport.Datagrams.DatagramConnection datagrams)
            {
                Console.Error.WriteLine($"udp: retransmissions {datagrams.Retransmissions}, spurious {datagrams.SpuriousLosses}, congestion events {datagrams.CongestionEvents}, undos {datagrams.WindowUndos}, timeouts {datagrams.Timeouts}, tail probes {datagrams.TailProbes}, cwnd {datagrams.CongestionWindow}, datagram {datagrams.DatagramSize}");
            }

            await session.CloseAsync();
        }

        return 0;
    }

    private static async Task<SecureSession> ConnectTcpAsync(IPEndPoint server, PeerId peer, string congestionControl, SecureSessionOptions options, Microsoft.Extensions.Logging.ILoggerFactory? logs)
    {
        var socket = new System.Net.Sockets.Socket(server.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        const int IpProtoTcp = 6, TcpCongestion = 13;
        try
        {
            socket.SetRawSocketOption(IpProtoTcp, TcpCongestion, System.Text.Encoding.ASCII.GetBytes(congestionControl));
            await socket.ConnectAsync(server);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var connection = new SocketConnection(socket, new TcpTransportOptions(), Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        return await SecureSession.ConnectAsync(connection, options, peer, logs);
    }

    private static async Task TraceAsync(Transport.Datagrams.DatagramConnection connection, Stopwatch clock, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                Console.Error.WriteLine($"trace {clock.ElapsedMilliseconds} ms: cwnd {connection.CongestionWindow}, srtt {connection.SmoothedRtt.TotalMilliseconds:F1} ms, events {connection.CongestionEvents}, retransmissions {connection.Retransmissions}");
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task SinkAsync(SecureSession session)
    {
        await using (session)
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long received = 0;
            try
            {
                while (await session.ReceiveAsync() is { } message)
                {
                    if (message.IsRequest)
                    {
                        string answer = received.ToString(CultureInfo.InvariantCulture) + " " + Convert.ToHexString(hash.GetHashAndReset());
                        await session.RespondAsync(message, System.Text.Encoding.ASCII.GetBytes(answer));
                        received = 0;
                        continue;
                    }

                    hash.AppendData(message.Payload.Span);
                    received += message.Length;
                }
            }
            catch (PeerLinkException e)
            {
                Console.Error.WriteLine($"session ended: {e.Error}: {e.Message}");
            }
        }
    }

    private static void CopyTo(SecureSessionOptions from, SecureSessionOptions to)
    {
        to.HandshakeTimeout = from.HandshakeTimeout;
        to.IdleTimeout = from.IdleTimeout;
        to.KeepAliveInterval = from.KeepAliveInterval;
    }

    private static async Task WaitForStdinToCloseAsync()
    {
        while (await Console.In.ReadLineAsync() is not null)
        {
        }
    }
}
