using System.Collections.Generic;

namespace PeerLink.Hosting;

/// <summary>
/// A PeerLink node's settings as they come from configuration (the "PeerLink" section of appsettings.json, environment
/// variables such as <c>PeerLink__NetworkKey</c>, user secrets, a key vault provider, …). See docs/hosting.md.
/// </summary>
public sealed class PeerLinkOptions
{
    /// <summary>
    /// The identity's key file, created (owner-only) when missing. A relative path is taken from the host's content root.
    /// </summary>
    /// <remarks>Defaults to "peerlink.key".</remarks>
    public string IdentityFile { get; set; } = "peerlink.key";

    /// <summary>Endpoints to listen on for incoming sessions, as "address:port" ("0.0.0.0:7300", "[::]:7300", "127.0.0.1:0").</summary>
    /// <remarks>Defaults to none: the node only connects out.</remarks>
    public IList<string> Listen { get; } = [];

    /// <summary>PeerIds admitted to incoming sessions. Empty admits every authenticated peer that knows the network key, if any.</summary>
    /// <remarks>Defaults to empty.</remarks>
    public IList<string> AllowedPeers { get; } = [];

    /// <summary>
    /// The network key, base64 of 32 bytes: only peers holding it can complete a handshake (Noise psk). Keep it in a
    /// secret source (an environment variable, user secrets, a key vault provider), not in appsettings.json.
    /// </summary>
    /// <remarks>Defaults to none.</remarks>
    public string? NetworkKey { get; set; }

    /// <summary>The application id this node announces and requires of its peers; null keeps PeerLink's default.</summary>
    public string? ApplicationId { get; set; }

    /// <summary>LAN discovery over mDNS.</summary>
    public PeerLinkDiscoveryOptions Discovery { get; } = new();

    /// <summary>Rendezvous nodes to attach to (one, or the nodes of a tier); none means LAN and direct endpoints only.</summary>
    public IList<PeerLinkRendezvousNodeOptions> Rendezvous { get; } = [];
}

/// <summary>mDNS discovery settings of a hosted node.</summary>
public sealed class PeerLinkDiscoveryOptions
{
    /// <summary>Finds peers on the LAN by PeerId (multicast on the LAN, so it is opt-in).</summary>
    /// <remarks>Defaults to false.</remarks>
    public bool Enabled { get; set; }

    /// <summary>Advertises this node, so that others find it.</summary>
    /// <remarks>Defaults to true (when <see cref="Enabled"/>).</remarks>
    public bool Advertise { get; set; } = true;

    /// <summary>The DNS-SD instance name, such as "Hallway light"; null derives one from the PeerId.</summary>
    public string? InstanceName { get; set; }

    /// <summary>Network interfaces to use, by name ("eth0", "lo"); empty uses every multicast-capable interface.</summary>
    public IList<string> Interfaces { get; } = [];
}

/// <summary>One rendezvous node: where it listens and its pinned PeerId.</summary>
public sealed class PeerLinkRendezvousNodeOptions
{
    /// <summary>The node's endpoint, "address:port".</summary>
    public string EndPoint { get; set; } = "";

    /// <summary>The node's PeerId, as it printed it.</summary>
    public string PeerId { get; set; } = "";
}
