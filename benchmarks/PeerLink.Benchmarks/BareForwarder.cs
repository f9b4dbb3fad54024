using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Benchmarks;

/// <summary>
/// The least work a relay that terminates TCP can do, for comparison with the rendezvous node's relay: it accepts a
/// connection, connects to a fixed target, and moves bytes between the two sockets with nothing else, on two threads of
/// its own per connection (blocking calls: no pipes, no thread pool, no framing, no limits). With <c>splice</c> set the
/// bytes do not even come up to user space: each direction moves them socket → pipe → socket with Linux
/// <c>splice(2)</c> (elsewhere it copies). Benchmarks only: a thread per direction does not scale to a node's
/// thousands of pairs.
/// </summary>
internal sealed partial class BareForwarder : IDisposable
{
    private const int Chunk = 128 * 1024;
    private readonly Socket _listener;
    private readonly EndPoint _target;
    private readonly bool _splice;
    private readonly List<Socket> _sockets = [];

    public BareForwarder(EndPoint target, bool splice)
    {
        _target = target;
        _splice = splice && OperatingSystem.IsLinux();   // elsewhere it copies
        _listener = Loopback.Listen();
        _ = AcceptLoopAsync();
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    public void Dispose()
    {
        _listener.Dispose();
        lock (_sockets)
        {
            foreach (Socket socket in _sockets)
            {
                socket.Dispose();
            }
        }
    }

    private async Task AcceptLoopAsync()
    {
        try
        {
            while (true)
            {
                Socket inbound = await _listener.AcceptAsync();
                var outbound = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await outbound.ConnectAsync(_target);
                inbound.NoDelay = true;
                outbound.NoDelay = true;
                lock (_sockets)
                {
                    _sockets.Add(inbound);
                    _sockets.Add(outbound);
                }

                Start(inbound, outbound);
                Start(outbound, inbound);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // disposed
        }
    }

    private void Start(Socket from, Socket to)
    {
        var thread = new Thread(() =>
        {
            try
            {
                if (_splice)
                {
                    Splice(from, to);
                }
                else
                {
                    Copy(from, to);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
            {
                // one side closed (a closed descriptor fails the splice)
            }
            finally
            {
                try
                {
                    to.Shutdown(SocketShutdown.Send);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                }
            }
        })
        { IsBackground = true, Name = "bare-forwarder" };
        thread.Start();
    }

    private static void Copy(Socket from, Socket to)
    {
        byte[] buffer = new byte[Chunk];
        int received;
        while ((received = from.Receive(buffer)) > 0)
        {
            int sent = 0;
            while (sent < received)
            {
                sent += to.Send(buffer, sent, received - sent, SocketFlags.None);
            }
        }
    }

    private static void Splice(Socket from, Socket to)
    {
        const uint Move = 1;
        Span<int> pipe = stackalloc int[2];
        if (Pipe2(ref MemoryMarshal.GetReference(pipe), 0) != 0)
        {
            throw new InvalidOperationException($"pipe2 failed: {Marshal.GetLastPInvokeError()}");
        }

        int source = (int)from.Handle, sink = (int)to.Handle;
        MakeBlocking(source);
        MakeBlocking(sink);
        try
        {
            while (true)
            {
                nint moved = SpliceCall(source, 0, pipe[1], 0, Chunk, Move);
                if (moved < 0)
                {
                    throw new InvalidOperationException($"splice from the socket failed: errno {Marshal.GetLastPInvokeError()}");
                }

                if (moved == 0)
                {
                    return;   // FIN, or the socket was closed
                }

                while (moved > 0)
                {
                    nint out_ = SpliceCall(pipe[0], 0, sink, 0, (nuint)moved, Move);
                    if (out_ <= 0)
                    {
                        return;   // the other side is gone
                    }

                    moved -= out_;
                }
            }
        }
        finally
        {
            _ = Close(pipe[0]);
            _ = Close(pipe[1]);
        }
    }

    // .NET keeps its sockets' descriptors non-blocking (it waits for them with epoll); these threads block instead.
    private static void MakeBlocking(int fd)
    {
        const int GetFlags = 3, SetFlags = 4, NonBlocking = 0x800;
        int flags = Fcntl(fd, GetFlags, 0);
        if (flags < 0 || Fcntl(fd, SetFlags, flags & ~NonBlocking) < 0)
        {
            throw new InvalidOperationException($"fcntl failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2(ref int fds, int flags);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    private static partial nint SpliceCall(int fdIn, nint offIn, int fdOut, nint offOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
