// Birthday probing for the side whose NAT picks a new port for every destination (nat-traversal.md §4c, after HyperDHT):
// it opens many sockets, and each sends a check to the peer's one reflexive address, so that its NAT holds as many
// mappings towards that address, each admitting the peer. The first packets go out with a low TTL: they open the local
// mapping without reaching the far NAT, which might otherwise remember them and move its own port. The peer sends
// checks to random ports of this side's public address; one that lands on a mapping reaches one of the sockets, which
// answers, and that socket becomes a transport of its own that carries the path.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using PeerLink.Transport;

namespace PeerLink.Nat.Rendezvous;

internal static class BirthdayPunch
{
    /// <summary>HyperDHT's BIRTHDAY_SOCKETS.</summary>
    public const int DefaultSockets = 256;

    /// <summary>The TTL of the opening checks (HyperDHT's).</summary>
    public const int OpeningTtl = 5;

    /// <summary>
    /// Runs the random side of a birthday punch. <paramref name="punch"/> has the peer's index and secret already
    /// (<see cref="UdpPunch.SetPeer"/>); its transport lends identity and settings to the transport made on the socket
    /// that wins.
    /// </summary>
    public static async Task<UdpPunchResult> RunAsync(UdpTransport transport, UdpPunch punch, UdpPunch.Keys keys, IPEndPoint target, bool controlling, int socketCount, TimeSpan budget, TimeProvider time, CancellationToken cancellationToken)
    {
        var sockets = new List<Socket>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var events = Channel.CreateBounded<(int Socket, UdpPunch.ProbeEvent Event)>(new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        var receiving = new List<Task>();
        try
        {
            for (int i = 0; i < socketCount; i++)
            {
                var socket = new Socket(target.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
                sockets.Add(socket);
                socket.Bind(new IPEndPoint(target.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0));
                socket.Ttl = OpeningTtl;
            }

            for (int i = 0; i < sockets.Count; i++)
            {
                receiving.Add(ReceiveAsync(i, sockets[i], keys, punch.Index, events.Writer, stop.Token));
            }

            long started = time.GetTimestamp();
            var transactions = new Dictionary<ulong, (int Socket, IPEndPoint To, bool Nominate)>();
            var triggered = new Queue<(int Socket, IPEndPoint To)>();
            var succeeded = new List<(int Socket, IPEndPoint To)>();
            var opened = new HashSet<int>();        // sockets through which the peer got: their TTL is back to normal
            int next = 0;
            int sent = 0;
            long nextSendAt = time.GetTimestamp();

            // The opening burst: every socket opens its mapping at once (low TTL), one millisecond apart at most.
            for (int i = 0; i < sockets.Count; i++)
            {
                Send(i, target, nominate: false);
            }

            while (true)
            {
                while (events.Reader.TryRead(out (int Socket, UdpPunch.ProbeEvent Event) item))
                {
                    (int index, UdpPunch.ProbeEvent e) = item;
                    if (opened.Add(index))
                    {
                        sockets[index].Ttl = 64;   // the peer reached this socket: answer it at full reach
                    }

                    if (!e.IsResponse)
                    {
                        Answer(index, e);
                        if (!succeeded.Contains((index, e.From)) && !triggered.Contains((index, e.From)))
                        {
                            triggered.Enqueue((index, e.From));
                        }

                        if (e.Nominate && !controlling)
                        {
                            return await OpenAsync(index, e.From, $"nominated by the peer after {sent} checks from {sockets.Count} sockets in {Elapsed()} ms").ConfigureAwait(false);
                        }

                        continue;
                    }

                    if (transactions.TryGetValue(e.Transaction, out (int Socket, IPEndPoint To, bool Nominate) asked) && asked.Socket == index && asked.To.Equals(e.From))
                    {
                        if (asked.Nominate && controlling)
                        {
                            return await OpenAsync(index, e.From, $"after {sent} checks from {sockets.Count} sockets in {Elapsed()} ms").ConfigureAwait(false);
                        }

                        if (!succeeded.Contains((index, e.From)))
                        {
                            succeeded.Add((index, e.From));
                        }
                    }
                }

                if (time.GetElapsedTime(started) >= budget)
                {
                    return new UdpPunchResult(null, $"no UDP path: {sockets.Count} sockets kept {sockets.Count} mappings open towards {target} for {budget.TotalSeconds} s, and no check of the peer found one (birthday probing)");
                }

                // One datagram per 20 ms: a nomination, a triggered check, or a refresh of the next socket's mapping.
                // (Answers to the peer's checks go at once, above.)
                if (time.GetTimestamp() >= nextSendAt)
                {
                    if (controlling && succeeded.Count > 0)
                    {
                        Send(succeeded[0].Socket, succeeded[0].To, nominate: true);
                    }
                    else if (triggered.TryDequeue(out (int Socket, IPEndPoint To) check))
                    {
                        Send(check.Socket, check.To, nominate: false);
                    }
                    else
                    {
                        Send(next++ % sockets.Count, target, nominate: false);
                    }

                    nextSendAt = time.GetTimestamp() + (long)(UdpPunch.Pacing.TotalSeconds * time.TimestampFrequency);
                }

                TimeSpan wait = TimeSpan.FromSeconds(Math.Max(0, nextSendAt - time.GetTimestamp()) / (double)time.TimestampFrequency);
                using var timer = new CancellationTokenSource(wait, time);
                using var wake = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
                try
                {
                    await events.Reader.WaitToReadAsync(wake.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                }

                cancellationToken.ThrowIfCancellationRequested();
            }

            long Elapsed() => (long)time.GetElapsedTime(started).TotalMilliseconds;

            void Send(int index, IPEndPoint to, bool nominate)
            {
                ulong transaction = (ulong)Random.Shared.NextInt64();
                transactions[transaction] = (index, to, nominate);
                Span<byte> datagram = stackalloc byte[UdpPunch.MaxProbeSize];
                int length = UdpPunch.WriteProbe(datagram, keys, transaction, nominate, response: false, mapped: null);
                Transmit(sockets[index], datagram[..length], to);
                sent++;
            }

            void Answer(int index, UdpPunch.ProbeEvent e)
            {
                Span<byte> datagram = stackalloc byte[UdpPunch.MaxProbeSize];
                int length = UdpPunch.WriteProbe(datagram, keys, e.Transaction, e.Nominate, response: true, mapped: e.From);
                Transmit(sockets[index], datagram[..length], e.From);
            }

            async Task<UdpPunchResult> OpenAsync(int index, IPEndPoint to, string how)
            {
                // The socket leaves the probing: its receive loop ends, and a transport of its own takes it over.
                await stop.CancelAsync().ConfigureAwait(false);
                try
                {
                    await receiving[index].ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
                {
                }

                Socket socket = sockets[index];
                sockets.RemoveAt(index);
                socket.Ttl = 64;
                UdpTransport own = transport.CreateSibling(socket);
                try
                {
                    own.ReservePunchIndex(punch.Index, (datagram, from) =>
                    {
                        // The peer may check again (its nomination answer was lost): answer from this socket.
                        if (UdpPunch.ReadProbe(datagram, keys, punch.Index, from) is { IsResponse: false } again)
                        {
                            Span<byte> answer = stackalloc byte[UdpPunch.MaxProbeSize];
                            int length = UdpPunch.WriteProbe(answer, keys, again.Transaction, again.Nominate, response: true, mapped: from);
                            try
                            {
                                own.SendRaw(answer[..length], from);
                            }
                            catch (Exception e) when (e is PeerLinkException or ObjectDisposedException)
                            {
                            }
                        }
                    });
                    PeerConnection connection = own.OpenPunched(punch.Index, keys.TheirIndex, to, keys.SendData, keys.ReceiveData);
                    connection.ConnectionClosed.UnsafeRegister(static state => _ = ((UdpTransport)state!).DisposeAsync(), own);
                    return new UdpPunchResult(connection, $"{((IPEndPoint)socket.LocalEndPoint!).Port} -> {to} (birthday probing: one of {socketCount} sockets) {how}");
                }
                catch
                {
                    _ = own.DisposeAsync();
                    throw;
                }
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            foreach (Socket socket in sockets)
            {
                socket.Dispose();
            }

            try
            {
                await Task.WhenAll(receiving).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
            }

        }
    }

    private static void Transmit(Socket socket, ReadOnlySpan<byte> datagram, IPEndPoint to)
    {
        try
        {
            socket.SendTo(datagram, SocketFlags.None, to);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // A refresh that cannot leave: the next round tries again.
        }
    }

    private static async Task ReceiveAsync(int index, Socket socket, UdpPunch.Keys keys, uint punchIndex, ChannelWriter<(int, UdpPunch.ProbeEvent)> events, CancellationToken cancellationToken)
    {
        byte[] buffer = new byte[512];
        var any = new IPEndPoint(socket.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
        while (!cancellationToken.IsCancellationRequested)
        {
            SocketReceiveFromResult received;
            try
            {
                received = await socket.ReceiveFromAsync(buffer, SocketFlags.None, any, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionRefused or SocketError.HostUnreachable or SocketError.NetworkUnreachable)
            {
                continue;   // an ICMP error for an earlier send
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            if (UdpPunch.ReadProbe(buffer.AsSpan(0, received.ReceivedBytes), keys, punchIndex, (IPEndPoint)received.RemoteEndPoint) is { } probe)
            {
                events.TryWrite((index, probe));
            }
        }
    }
}
