using System;
using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks;

namespace PeerLink.Testing;

/// <summary>Plain sockets for tests that talk to a server of their own on loopback.</summary>
internal static class TestSockets
{
    /// <summary>A TCP connection to <paramref name="endPoint"/>, within <paramref name="limit"/>.</summary>
    public static async Task<Socket> ConnectTcpAsync(IPEndPoint endPoint, TimeSpan limit)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(endPoint).WaitAsync(limit);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
