using System;
using System.Collections.Generic;
using System.Net;

namespace PeerLink.Nat.Rendezvous;

/// <summary>How a device attaches to its rendezvous node (see <c>UseRendezvous</c> (<see cref="RendezvousBuilderExtensions"/>)).</summary>
public sealed class RendezvousClientOptions
{
    /// <summary>
    /// The network key of the rendezvous node, when it requires one. Null (the default) uses the node's own
    /// <see cref="PeerLink.Sessions.SecureSessionOptions.NetworkKey"/>, the usual case of one key per installation.
    /// </summary>
    public NetworkKey? NetworkKey { get; set; }

    /// <summary>The first delay before attaching again after a loss; it doubles after every failure. Defaults to 1 second.</summary>
    public TimeSpan MinReattachDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest delay between attach attempts. Defaults to 60 seconds.</summary>
    /// <remarks>
    /// Each delay is drawn at random between half and all of its nominal value (jitter), so that devices that lost the node
    /// together do not come back in one wave.
    /// </remarks>
    public TimeSpan MaxReattachDelay { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a connect by PeerId waits for the attachment when the node is still attaching. Defaults to 10 seconds.</summary>
    public TimeSpan AttachWait { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// With several rendezvous nodes, how long the device waits for TCP connects to all of them when it ranks them by
    /// round trip before each attach; nodes that have not answered by then go last. Defaults to 2 seconds.
    /// </summary>
    public TimeSpan NodeProbeTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Whether relayed sessions try to move to a direct path (hole punching). Defaults to true.</summary>
    public bool UpgradeToDirect { get; set; } = true;

    /// <summary>
    /// Whether a direct path may be UDP: the client binds one UDP socket, learns its reflexive address with STUN on it,
    /// and punches from it. A UDP path is preferred to a TCP one when both work. Defaults to true.
    /// </summary>
    public bool PunchUdp { get; set; } = true;

    /// <summary>Whether a direct path may be TCP (simultaneous listen and connect from one port). Defaults to true.</summary>
    public bool PunchTcp { get; set; } = true;

    /// <summary>
    /// The local UDP endpoint of the client's punching socket. Defaults to any IPv4 address, port 0 (a free port).
    /// </summary>
    public IPEndPoint UdpEndPoint { get; set; } = new(IPAddress.Any, 0);

    /// <summary>
    /// The local addresses offered to peers as host candidates; null (the default) offers every IPv4 address of the
    /// interfaces that are up, loopback excluded.
    /// </summary>
    public IReadOnlyList<IPAddress>? PunchAddresses { get; set; }

    /// <summary>How long one punch attempt may take, and how long the peer has to answer with its candidates. Defaults to 5 seconds.</summary>
    public TimeSpan PunchTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>After three failed attempts, how long a relayed session waits before it tries again. Defaults to 60 seconds.</summary>
    public TimeSpan DirectRetryInterval { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How often a relayed or upgraded session sends a path keepalive on each of its paths; a path silent for three of
    /// these is dropped and the data moves to another. Defaults to 5 seconds.
    /// </summary>
    public TimeSpan PathKeepAlive { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Tests only: called at the start of each punch with (this side drives the attempts, the attempt's number); an
    /// exception it returns is thrown there, as a failure of this side's punch would be.
    /// </summary>
    internal Func<bool, int, Exception?>? PunchFault { get; set; }

    internal RendezvousClientOptions Validate(string paramName)
    {
        if (PunchTimeout <= TimeSpan.Zero || DirectRetryInterval <= TimeSpan.Zero || PathKeepAlive <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(paramName, "PunchTimeout, DirectRetryInterval and PathKeepAlive must be positive.");
        }

        if (MinReattachDelay <= TimeSpan.Zero || MaxReattachDelay < MinReattachDelay || AttachWait < TimeSpan.Zero || NodeProbeTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(paramName, "MinReattachDelay and NodeProbeTimeout must be positive, MaxReattachDelay at least as long as MinReattachDelay, and AttachWait not negative.");
        }

        if (UdpEndPoint is null)
        {
            throw new ArgumentNullException(paramName, "UdpEndPoint must be set.");
        }

        _ = NetworkKey?.Bytes;
        return (RendezvousClientOptions)MemberwiseClone();
    }
}
