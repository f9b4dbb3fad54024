using System;
using System.Collections.Generic;
using System.Net;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Nat.Rendezvous;

/// <summary>Settings of a <see cref="RendezvousServer"/>: where it listens, who may attach, and the relay limits.</summary>
public sealed class RendezvousServerOptions
{
    /// <summary>
    /// The TCP address and port for attach sessions and relay connections (one port for both). Required; port 0 picks
    /// a free port (see <see cref="RendezvousServer.EndPoint"/>).
    /// </summary>
    public IPEndPoint? ListenEndPoint { get; set; }

    /// <summary>
    /// The port of the STUN server (UDP and TCP) on the listen address; 0 picks a free port, null serves no STUN.
    /// </summary>
    /// <remarks>Defaults to 3478, the STUN port.</remarks>
    public int? StunPort { get; set; } = 3478;

    /// <summary>How often attached devices send a keepalive when idle; told to each device when it attaches.</summary>
    /// <remarks>
    /// Defaults to 25 seconds, below the 30-second UDP and the common TCP idle timeouts of home routers. Longer saves
    /// battery; shorter keeps a NAT mapping open through stricter routers. The node drops a device that sent nothing for
    /// three intervals.
    /// </remarks>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(25);

    /// <summary>The only devices that may attach; null lets any device attach that passes <see cref="Authorize"/> and the network key.</summary>
    public IReadOnlySet<PeerId>? AllowedDevices { get; set; }

    /// <summary>Decides whether a device may attach, after <see cref="AllowedDevices"/>; null allows every device.</summary>
    public Func<PeerId, CancellationToken, ValueTask<bool>>? Authorize { get; set; }

    /// <summary>The installation's network key: devices without it cannot complete the attach handshake. Null for none.</summary>
    public NetworkKey? NetworkKey { get; set; }

    /// <summary>The most devices attached at once; more are refused at the handshake. Defaults to 10,000.</summary>
    public int MaxAttachments { get; set; } = 10_000;

    /// <summary>Attach handshakes under way at once (all addresses). Defaults to 128.</summary>
    public int MaxPendingHandshakes { get; set; } = 128;

    /// <summary>Attach handshakes under way at once from one IPv4 address or IPv6 /64. Defaults to 16.</summary>
    public int MaxPendingHandshakesPerAddress { get; set; } = 16;

    /// <summary>Bytes a relayed session may carry, both directions together, before the node ends it. Defaults to 256 MiB.</summary>
    public long MaxRelayBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>How long a relayed session may last before the node ends it. Defaults to one hour.</summary>
    public TimeSpan MaxRelayDuration { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Relayed sessions at once in which one device takes part (as caller or callee). Defaults to 8.</summary>
    public int MaxRelaysPerDevice { get; set; } = 8;

    /// <summary>Relayed sessions at once on this node. Defaults to 1,000.</summary>
    public int MaxRelays { get; set; } = 1000;

    /// <summary>
    /// Connect requests one device may make per second, on average; a burst of twice as many is allowed. Defaults to 5.
    /// </summary>
    public int MaxConnectRequestsPerSecond { get; set; } = 5;

    /// <summary>How long both devices have to open their relay connections after a connect request. Defaults to 10 seconds.</summary>
    public TimeSpan RelayJoinTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long the first bytes of a connection and an attach handshake may take. Defaults to 10 seconds.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The other rendezvous nodes of this node's tier, reached through a backplane such as PeerLink.Rendezvous.Nats's;
    /// null (the default) for a tier of one, which needs nothing else. The caller owns the backplane: the node starts
    /// and stops its use of it, and the caller disposes it after the node.
    /// </summary>
    public IRendezvousBackplane? Backplane { get; set; }

    /// <summary>
    /// Where devices attached to other nodes of the tier reach this node to relay a session with a device attached
    /// here: its public address and port. Defaults to null: the bound endpoint (<see cref="RendezvousServer.EndPoint"/>),
    /// which is right when the node listens on a public address rather than 0.0.0.0 or [::].
    /// </summary>
    public IPEndPoint? PublicEndPoint { get; set; }

    /// <summary>The clock for keepalives, limits and timeouts. Defaults to <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    internal RendezvousServerOptions Validate(string paramName)
    {
        if (ListenEndPoint is null)
        {
            throw new ArgumentException("ListenEndPoint is required.", paramName);
        }

        Check(StunPort is null or (>= 0 and <= 65535), "StunPort must be from 0 to 65535, or null.");
        Check(KeepAliveInterval >= TimeSpan.FromSeconds(1) && KeepAliveInterval <= TimeSpan.FromHours(1), "KeepAliveInterval must be from 1 second to 1 hour.");
        Check(MaxAttachments >= 1 && MaxPendingHandshakes >= 1 && MaxPendingHandshakesPerAddress >= 1, "MaxAttachments, MaxPendingHandshakes and MaxPendingHandshakesPerAddress must be positive.");
        Check(MaxRelayBytes >= 0 && MaxRelayDuration >= TimeSpan.Zero && MaxRelaysPerDevice >= 0 && MaxRelays >= 0, "The relay limits cannot be negative (0 disables relaying).");
        Check(MaxConnectRequestsPerSecond >= 1, "MaxConnectRequestsPerSecond must be positive.");
        Check(RelayJoinTimeout > TimeSpan.Zero && HandshakeTimeout > TimeSpan.Zero, "RelayJoinTimeout and HandshakeTimeout must be positive.");
        if (Backplane is not null && PublicEndPoint is null && (ListenEndPoint.Address.Equals(IPAddress.Any) || ListenEndPoint.Address.Equals(IPAddress.IPv6Any)))
        {
            throw new ArgumentException("PublicEndPoint is required with a Backplane when the node listens on every address: devices of other nodes need an address to reach it.", paramName);
        }

        if (TimeProvider is null)
        {
            throw new ArgumentException("TimeProvider must be set.", paramName);
        }

        var copy = (RendezvousServerOptions)MemberwiseClone();
        _ = NetworkKey?.Bytes;   // a disposed key is the caller's mistake: ObjectDisposedException now
        return copy;

        void Check(bool condition, string message)
        {
            if (!condition)
            {
                throw new ArgumentOutOfRangeException(paramName, message);
            }
        }
    }
}
