using System;
using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.Testing;

/// <summary>
/// A handshake flood's attacker, for the flood test and the flood benchmark: one valid IK first message for a node,
/// captured once, then replayed over connection after connection. The node does the Noise work and holds a
/// pending-handshake slot for each copy until its handshake timeout, since the ACCEPT never comes.
/// </summary>
public static class HandshakeReplay
{
    /// <summary>The bytes an IK initiator writes first (preamble and message 1), taken from an in-memory connection.</summary>
    public static async Task<byte[]> CaptureFirstMessageAsync(PeerIdentity initiator, PeerId responder)
    {
        (PeerConnection local, PeerConnection wire) = PeerConnection.CreatePair();
        using var cancel = new CancellationTokenSource();
        Task<SecureSession> connecting = SecureSession.ConnectAsync(local, new SecureSessionOptions { Identity = initiator }, responder, cancellationToken: cancel.Token);
        ReadResult read = await wire.Transport.Input.ReadAsync();
        byte[] bytes = read.Buffer.ToArray();
        wire.Transport.Input.AdvanceTo(read.Buffer.End);
        await cancel.CancelAsync();
        await connecting.ContinueWith(_ => { }, TaskScheduler.Default);   // cancelled: the handshake never finishes
        await wire.DisposeAsync();
        return bytes;
    }

    /// <summary>
    /// Connects from <paramref name="from"/> (a loopback address), sends <paramref name="bytes"/> (nothing: a silent,
    /// slow-loris connection), waits until the node closes it, and again, until <paramref name="stop"/>.
    /// </summary>
    public static async Task ReplayLoopAsync(IPAddress from, IPEndPoint target, byte[] bytes, Action? connected, CancellationToken stop)
    {
        byte[] sink = new byte[1024];
        while (!stop.IsCancellationRequested)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.Bind(new IPEndPoint(from, 0));
                await socket.ConnectAsync(target, stop);
                connected?.Invoke();
                if (bytes.Length > 0)
                {
                    await socket.SendAsync(bytes, SocketFlags.None, stop);
                }

                while (await socket.ReceiveAsync(sink, SocketFlags.None, stop) > 0)
                {
                }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
            }
        }
    }
}
