using System;
using System.Collections.Generic;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Transport;

namespace PeerLink;

/// <summary>
/// A part of a node that an extension package adds (discovery, NAT traversal). The node starts it after its listeners
/// are bound, and disposes it before it closes its sessions.
/// </summary>
public interface IPeerNodeComponent : IAsyncDisposable
{
    /// <summary>Starts the component for <paramref name="node"/> (its listeners are bound: see <see cref="PeerNode.LocalEndPoints"/>).</summary>
    /// <param name="node">The node that owns the component.</param>
    /// <param name="cancellationToken">Cancels the start; the node is then disposed.</param>
    ValueTask StartAsync(PeerNode node, CancellationToken cancellationToken);
}

/// <summary>Knows where peers can be reached; <see cref="PeerNode.ConnectAsync(PeerId, CancellationToken)"/> asks every component that implements it.</summary>
public interface IPeerLocator
{
    /// <summary>The endpoints where <paramref name="peer"/> may be reached, best first; empty when unknown.</summary>
    /// <param name="peer">The peer.</param>
    /// <param name="cancellationToken">Cancels the lookup.</param>
    ValueTask<IReadOnlyList<EndPoint>> LocateAsync(PeerId peer, CancellationToken cancellationToken);
}

/// <summary>
/// Opens connections to peers known only by their PeerId through something other than an address, such as a rendezvous
/// node's relay. <see cref="PeerNode.ConnectAsync(PeerId, CancellationToken)"/> asks every component that implements it
/// after the addresses of the <see cref="IPeerLocator"/>s (the LAN) failed or were none.
/// </summary>
public interface IPeerDialer
{
    /// <summary>
    /// A connection on which the node then opens an IK session to <paramref name="peer"/>; the caller owns it. Null when
    /// this dialer cannot reach peers now and has nothing to say about it.
    /// </summary>
    /// <param name="peer">The peer.</param>
    /// <param name="cancellationToken">Cancels the attempt.</param>
    /// <exception cref="PeerLinkException">The dialer tried and failed; the code says why (for example <see cref="PeerLinkError.PeerNotFound"/>).</exception>
    ValueTask<PeerConnection?> DialAsync(PeerId peer, CancellationToken cancellationToken);
}
