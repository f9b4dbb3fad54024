// TCP hole punching (docs/nat-traversal.md §4): learn the reflexive address with STUN over TCP from a port P, then on
// that same port both listen and connect to every candidate of the peer, with address reuse on every socket. The lab
// (shared NATLAB.md) measured listen + connect to succeed wherever TCP punching can; pure simultaneous open loses the
// race against a host that answers an early SYN with RST. The connection kept is authenticated by tokens exchanged
// inside the end-to-end session, so a stranger that connects to the port gets nothing.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Transport;

namespace PeerLink.Nat.Rendezvous;

/// <summary>One side's preparation for a punch attempt: the port, its candidates, and the STUN connection that holds the NAT mapping open.</summary>
internal sealed class PunchPreparation : IDisposable
{
    public PunchPreparation(int port, Socket? stun, IReadOnlyList<IPEndPoint> candidates, IPEndPoint? observed)
    {
        Port = port;
        Stun = stun;
        Candidates = candidates;
        Observed = observed;
        Token = RandomNumberGenerator.GetBytes(RendezvousWire.TokenLength);
    }

    public int Port { get; }

    public Socket? Stun { get; }

    public IReadOnlyList<IPEndPoint> Candidates { get; }

    public IPEndPoint? Observed { get; }

    public byte[] Token { get; }

    public void Dispose() => Stun?.Dispose();
}

/// <summary>The result of a punch: a connection bound to the session, or why not.</summary>
internal readonly record struct PunchResult(PeerConnection? Connection, bool Reversed, string Detail);

internal static class TcpPunch
{
    /// <summary>"PLPT", version, 16-byte token: the first bytes each side sends on a punched connection.</summary>
    private const int HelloLength = 4 + 1 + RendezvousWire.TokenLength;

    private static ReadOnlySpan<byte> Magic => "PLPT"u8;

    /// <summary>Binds a port with address reuse and learns its reflexive address with STUN over TCP (kept open until the punch ends).</summary>
    public static async Task<PunchPreparation> PrepareAsync(IPEndPoint? stunServer, IReadOnlyList<IPAddress>? hostAddresses, ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        var stun = NewSocket();
        try
        {
            stun.Bind(new IPEndPoint(IPAddress.Any, 0));
            int port = ((IPEndPoint)stun.LocalEndPoint!).Port;
            IPEndPoint? observed = null;
            if (stunServer is not null)
            {
                try
                {
                    using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    deadline.CancelAfter(TimeSpan.FromSeconds(3));
                    await stun.ConnectAsync(stunServer, deadline.Token).ConfigureAwait(false);
                    StunBindingResult result = await StunClient.BindingAsync(stun, stunServer, null, loggerFactory, deadline.Token).ConfigureAwait(false);
                    observed = result.MappedAddress;
                }
                catch (Exception e) when (e is PeerLinkException or SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    // No reflexive candidate this time; host candidates may still work.
                }
            }

            var candidates = new List<IPEndPoint>();
            foreach (IPAddress address in hostAddresses ?? HostAddresses())
            {
                candidates.Add(new IPEndPoint(address, port));
            }

            if (observed is not null && !candidates.Contains(observed))
            {
                candidates.Add(observed);
            }

            return new PunchPreparation(port, stun, candidates, observed);
        }
        catch
        {
            stun.Dispose();
            throw;
        }
    }

    /// <summary>IPv4 addresses of the interfaces that are up, loopback excluded: the host candidates.</summary>
    public static IReadOnlyList<IPAddress> HostAddresses()
    {
        var addresses = new List<IPAddress>();
        foreach (NetworkInterface nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (nic.OperationalStatus != OperationalStatus.Up || nic.NetworkInterfaceType == NetworkInterfaceType.Loopback)
            {
                continue;
            }

            foreach (UnicastIPAddressInformation unicast in nic.GetIPProperties().UnicastAddresses)
            {
                if (unicast.Address.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(unicast.Address))
                {
                    addresses.Add(unicast.Address);
                }
            }
        }

        return addresses;
    }

    /// <summary>
    /// Listens on the prepared port and connects from it to each of the peer's candidates until one connection carries the
    /// right tokens or <paramref name="budget"/> runs out. The side with the lower PeerId speaks first and keeps the first
    /// connection that forms; the other answers on whichever connection that turns out to be. Exactly one is kept.
    /// </summary>
    public static async Task<PunchResult> PunchAsync(PunchPreparation mine, IReadOnlyList<IPEndPoint> theirs, byte[] theirToken, bool speakFirst, TimeSpan budget, TcpTransportOptions tcp, ILogger logger, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(budget);
        CancellationToken token = deadline.Token;
        var established = Channel.CreateUnbounded<(Socket Socket, bool Accepted)>();
        using Socket listener = NewSocket();
        var pending = new List<Task>();
        var sockets = new List<Socket>();
        try
        {
            listener.Bind(new IPEndPoint(IPAddress.Any, mine.Port));
            listener.Listen(8);
            pending.Add(AcceptLoopAsync(listener, established.Writer, token));
            foreach (IPEndPoint candidate in theirs.Distinct())
            {
                pending.Add(ConnectLoopAsync(mine.Port, candidate, established.Writer, token));
            }

            string detail = "no TCP connection formed";
            var verifying = new Dictionary<Task<bool>, (Socket Socket, bool Accepted)>();
            var waiting = new Queue<(Socket Socket, bool Accepted)>();   // the first speaker tries one connection at a time
            Task allTried = Task.WhenAll(pending);
            while (!token.IsCancellationRequested)
            {
                Task<bool> next = established.Reader.WaitToReadAsync(token).AsTask();
                Task finished = await Task.WhenAny([next, allTried, .. verifying.Keys]).ConfigureAwait(false);
                if (finished is Task<bool> verified && verifying.Remove(verified, out (Socket Socket, bool Accepted) candidate))
                {
                    if (verified.IsCompletedSuccessfully && verified.Result)
                    {
                        sockets.Remove(candidate.Socket);   // kept: the connection owns it now
                        var connection = new SocketConnection(candidate.Socket, tcp, logger);
                        return new PunchResult(connection, candidate.Accepted, $"{connection.LocalEndPoint} -> {connection.RemoteEndPoint}");
                    }

                    detail = "a TCP connection formed but did not carry this session's token";
                    if (speakFirst && waiting.TryDequeue(out (Socket Socket, bool Accepted) another))
                    {
                        verifying.Add(VerifyAsync(another.Socket, mine.Token, theirToken, speakFirst, token), another);
                    }

                    continue;
                }

                while (established.Reader.TryRead(out (Socket Socket, bool Accepted) item))
                {
                    sockets.Add(item.Socket);
                    if (speakFirst && verifying.Count > 0)
                    {
                        waiting.Enqueue(item);   // the first connection is the one, unless it fails
                        continue;
                    }

                    verifying.Add(VerifyAsync(item.Socket, mine.Token, theirToken, speakFirst, token), item);
                }

                if (finished == allTried && verifying.Count == 0 && !established.Reader.TryPeek(out _))
                {
                    break;
                }
            }

            return new PunchResult(null, false, detail);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new PunchResult(null, false, $"no TCP connection formed within {budget.TotalSeconds} s");
        }
        finally
        {
            await deadline.CancelAsync().ConfigureAwait(false);
            listener.Dispose();
            try
            {
                await Task.WhenAll(pending).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Each loop ends on cancellation.
            }

            while (established.Reader.TryRead(out (Socket Socket, bool Accepted) item))
            {
                sockets.Add(item.Socket);
            }

            foreach (Socket socket in sockets)
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>Exchanges the tokens on one connection; true when it is this session's.</summary>
    private static async Task<bool> VerifyAsync(Socket socket, byte[] myToken, byte[] theirToken, bool speakFirst, CancellationToken cancellationToken)
    {
        try
        {
            byte[] hello = new byte[HelloLength];
            if (speakFirst)
            {
                WriteHello(hello, theirToken);
                await socket.SendAsync(hello, SocketFlags.None, cancellationToken).ConfigureAwait(false);
                return await ReadHelloAsync(socket, hello, myToken, cancellationToken).ConfigureAwait(false);
            }

            if (!await ReadHelloAsync(socket, hello, myToken, cancellationToken).ConfigureAwait(false))
            {
                return false;
            }

            WriteHello(hello, theirToken);
            await socket.SendAsync(hello, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            return false;
        }
    }

    private static void WriteHello(Span<byte> hello, ReadOnlySpan<byte> token)
    {
        Magic.CopyTo(hello);
        hello[4] = RendezvousWire.Version;
        token.CopyTo(hello[5..]);
    }

    private static async Task<bool> ReadHelloAsync(Socket socket, byte[] buffer, byte[] expectedToken, CancellationToken cancellationToken)
    {
        int read = 0;
        while (read < HelloLength)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                return false;
            }

            read += n;
        }

        return buffer.AsSpan(0, 4).SequenceEqual(Magic) && buffer[4] == RendezvousWire.Version
            && CryptographicOperations.FixedTimeEquals(buffer.AsSpan(5, RendezvousWire.TokenLength), expectedToken);
    }

    private static async Task AcceptLoopAsync(Socket listener, ChannelWriter<(Socket, bool)> established, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                Socket accepted = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
                established.TryWrite((accepted, true));
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Connects from the punching port to one candidate, again 100 ms after each refusal, until the budget ends.</summary>
    private static async Task ConnectLoopAsync(int port, IPEndPoint candidate, ChannelWriter<(Socket, bool)> established, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket socket = NewSocket();
            try
            {
                socket.Bind(new IPEndPoint(IPAddress.Any, port));
                await socket.ConnectAsync(candidate, cancellationToken).ConfigureAwait(false);
                established.TryWrite((socket, false));
                return;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset or SocketError.TimedOut or SocketError.AddressAlreadyInUse or SocketError.HostUnreachable or SocketError.NetworkUnreachable)
            {
                socket.Dispose();
                try
                {
                    await Task.Delay(100, cancellationToken).ConfigureAwait(false);   // retry pacing, as the lab's probes
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                socket.Dispose();
                return;
            }
        }
    }

    private static Socket NewSocket()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);   // SO_REUSEADDR and SO_REUSEPORT on Linux
        socket.NoDelay = true;
        return socket;
    }
}
