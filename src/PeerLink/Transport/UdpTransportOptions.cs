using System;

namespace PeerLink.Transport;

/// <summary>Settings of a <see cref="UdpTransport"/>. The defaults suit a device on a LAN or behind a home router.</summary>
public sealed class UdpTransportOptions
{
    /// <summary>
    /// Handshake initiations per second that this node answers without proof of the sender's address. Beyond it the node
    /// is under load: it answers initiations with a cookie and spends no Diffie-Hellman until the initiator echoes it
    /// (docs/protocol.md §11.3). Default 200. Zero demands a cookie from everyone.
    /// </summary>
    public int HandshakesPerSecondBeforeCookies { get; set; } = 200;

    /// <summary>Handshakes in progress (XX responders waiting for message 3) at most; more are dropped. Default 1,024.</summary>
    public int MaxPendingHandshakes { get; set; } = 1024;

    /// <summary>Sessions accepted but not yet taken by <see cref="UdpTransport.AcceptAsync"/>; more are refused. Default 64.</summary>
    public int MaxAcceptQueue { get; set; } = 64;

    /// <summary>
    /// The first handshake retransmission comes after this long; each later one after twice the previous (jittered by
    /// ±25 %, at most 2 s) until the session's handshake timeout. Default 250 ms.
    /// </summary>
    public TimeSpan HandshakeRetransmitInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Bytes of one session's stream that the peer may send ahead of what the application has read (the receive window).
    /// It bounds memory per session and, divided by the round trip, the throughput. Default 1 MiB; at least 256 KiB.
    /// </summary>
    public int ReceiveWindowBytes { get; set; } = 1024 * 1024;

    /// <summary>Bytes of one session kept until the peer acknowledges them; a send waits when they are full. Default 1 MiB.</summary>
    public int SendBufferBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// A session fails with <see cref="PeerLinkError.PeerTimeout"/> when nothing it sent has been acknowledged for this
    /// long while data waits, and at least one retransmission went unanswered: the path to the peer is gone. Default 15 s.
    /// </summary>
    public TimeSpan DeliveryTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long a session may send nothing before it sends a keepalive (a PING the peer acknowledges), so that the NAT
    /// mappings on the path stay open. Defaults to 25 seconds, under the 30 s that many NATs give an idle UDP mapping;
    /// where RFC 5780 discovery measured the lifetime, PeerLink.Nat's <c>NatBehavior.RecommendedKeepAliveInterval</c>
    /// gives a value that fits it. <see cref="TimeSpan.Zero"/> turns keepalives off.
    /// </summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(25);

    /// <summary>
    /// How long the application may move no data before keepalives stop. Defaults to 10 minutes;
    /// <see cref="System.Threading.Timeout.InfiniteTimeSpan"/> keeps them going for the life of the session.
    /// </summary>
    /// <remarks>
    /// The trade-off: a keepalive costs a radio wake-up and two small datagrams, which matter to a battery device, but
    /// once they stop the NATs forget the path. A side that then sends first still gets through (its NAT opens a new
    /// mapping, and the peer follows the new address after a path challenge), but a peer behind a NAT cannot reach it
    /// until it does: a device that must be reachable at any time (a light waiting for its switch) keeps them going.
    /// A keepalive that goes unanswered for <see cref="DeliveryTimeout"/> ends the session with a peer timeout.
    /// </remarks>
    public TimeSpan KeepAliveIdleLimit { get; set; } = TimeSpan.FromMinutes(10);

    internal UdpTransportOptions Validate(string parameterName)
    {
        if (HandshakesPerSecondBeforeCookies < 0 || MaxPendingHandshakes < 1 || MaxAcceptQueue < 1)
        {
            throw new ArgumentException("HandshakesPerSecondBeforeCookies must not be negative; MaxPendingHandshakes and MaxAcceptQueue must be positive.", parameterName);
        }

        if (HandshakeRetransmitInterval <= TimeSpan.Zero || DeliveryTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("HandshakeRetransmitInterval and DeliveryTimeout must be positive.", parameterName);
        }

        if (ReceiveWindowBytes < Datagrams.DatagramConnection.InitialWindow || SendBufferBytes < 64 * 1024)
        {
            throw new ArgumentException("ReceiveWindowBytes must be at least 256 KiB and SendBufferBytes at least 64 KiB.", parameterName);
        }

        if (KeepAliveInterval < TimeSpan.Zero || (KeepAliveIdleLimit <= TimeSpan.Zero && KeepAliveIdleLimit != System.Threading.Timeout.InfiniteTimeSpan))
        {
            throw new ArgumentException("KeepAliveInterval must not be negative, and KeepAliveIdleLimit must be positive or infinite.", parameterName);
        }

        return this;
    }
}
