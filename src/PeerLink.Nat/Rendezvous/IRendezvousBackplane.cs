// The seam between a rendezvous node and the other nodes of its tier (docs/rendezvous-tier.md): the node asks it which
// node holds a PeerId and hands it the node's attachments; it answers for the node to the rest of the tier. Only small
// signalling messages cross it: relayed bytes go straight from the caller to the callee's node.
using System;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Nat.Rendezvous;

/// <summary>
/// How a <see cref="RendezvousServer"/> reaches the other rendezvous nodes of a tier: it routes a connect request to
/// the node holding a PeerId, tells the tier which devices are attached here, and learns when a device has attached to
/// another node since. A node without one (<see cref="RendezvousServerOptions.Backplane"/> null) is a tier of one.
/// </summary>
/// <remarks>
/// The node calls <see cref="StartAsync"/> once before it accepts devices and <see cref="StopAsync"/> once when it
/// stops; the caller that created the backplane owns it (and any connection it holds) and disposes it after the node.
/// Implementations must be thread-safe: the node calls from many attachments at once. PeerLink.Rendezvous.Nats
/// implements it on NATS.
/// </remarks>
public interface IRendezvousBackplane
{
    /// <summary>Joins the tier on behalf of <paramref name="node"/>, which answers the requests routed to it.</summary>
    /// <param name="node">The local node.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>A task that completes once routed requests can reach the node.</returns>
    ValueTask StartAsync(IRendezvousTierNode node, CancellationToken cancellationToken);

    /// <summary>Leaves the tier: no more requests reach the node, and its devices are no longer announced.</summary>
    /// <param name="cancellationToken">Cancels the stop.</param>
    /// <returns>A task that completes when the node has left.</returns>
    ValueTask StopAsync(CancellationToken cancellationToken);

    /// <summary>
    /// A device attached to this node: route its connect requests here from now on, and tell the other nodes, so that
    /// one holding an older attachment (a smaller <paramref name="epoch"/>) closes it.
    /// </summary>
    /// <param name="device">The device.</param>
    /// <param name="epoch">The attachment's epoch; a newer attachment anywhere in the tier has a larger one.</param>
    /// <param name="cancellationToken">Cancels the announcement.</param>
    /// <returns>A task that completes when the tier can route to the device here.</returns>
    ValueTask AttachedAsync(PeerId device, long epoch, CancellationToken cancellationToken);

    /// <summary>The attachment of <paramref name="device"/> with <paramref name="epoch"/> ended here.</summary>
    /// <param name="device">The device.</param>
    /// <param name="epoch">The attachment's epoch.</param>
    /// <param name="cancellationToken">Cancels the withdrawal.</param>
    /// <returns>A task that completes when requests for the device no longer come here.</returns>
    ValueTask DetachedAsync(PeerId device, long epoch, CancellationToken cancellationToken);

    /// <summary>Asks the node that holds <see cref="RoutedConnect.Target"/> to set up a relayed session for the caller.</summary>
    /// <param name="request">Who calls whom.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>
    /// The holding node's answer, or null at once when no node of the tier holds the target (it is offline).
    /// </returns>
    /// <exception cref="PeerLinkException">The tier did not answer (<see cref="PeerLinkError.TierUnavailable"/>).</exception>
    ValueTask<RoutedConnectReply?> RouteConnectAsync(RoutedConnect request, CancellationToken cancellationToken);
}

/// <summary>The local rendezvous node as its backplane sees it: it answers routed requests and takes evictions.</summary>
public interface IRendezvousTierNode
{
    /// <summary>The node's PeerId.</summary>
    PeerId PeerId { get; }

    /// <summary>Sets up a relayed session to a device attached here, for a caller attached to another node.</summary>
    /// <param name="request">Who calls whom.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The answer for the caller's node: a circuit and token on this node, or a refusal.</returns>
    ValueTask<RoutedConnectReply> ConnectRoutedAsync(RoutedConnect request, CancellationToken cancellationToken);

    /// <summary>
    /// The device attached to another node with <paramref name="epoch"/>: an attachment here with a smaller epoch is
    /// closed (<see cref="Sessions.SessionCloseCode.Replaced"/>); a newer one is kept.
    /// </summary>
    /// <param name="device">The device.</param>
    /// <param name="epoch">The newer attachment's epoch.</param>
    void Evict(PeerId device, long epoch);
}

/// <summary>A connect request routed through the tier.</summary>
/// <param name="Caller">The calling device, as its node authenticated it.</param>
/// <param name="Target">The device to reach.</param>
/// <param name="CallerEpoch">
/// The epoch of the caller's attachment: a node that still holds an older attachment of the caller closes it.
/// </param>
public sealed record RoutedConnect(PeerId Caller, PeerId Target, long CallerEpoch = 0);

/// <summary>The holding node's answer to a <see cref="RoutedConnect"/>.</summary>
/// <param name="Error">Why it refused, or null when the circuit is ready.</param>
/// <param name="Reason">For people, when refused.</param>
/// <param name="Circuit">The circuit's number on the holding node.</param>
/// <param name="Token">The 16-byte token the caller presents on its relay connection (empty when refused).</param>
/// <param name="RelayEndPoint">Where the caller opens its relay connection: the holding node's address and port.</param>
/// <param name="TargetEpoch">
/// The epoch of the target's attachment on the holding node: a node that still holds an older one closes it.
/// </param>
public sealed record RoutedConnectReply(PeerLinkError? Error, string? Reason, long Circuit, ReadOnlyMemory<byte> Token, string? RelayEndPoint, long TargetEpoch = 0)
{
    /// <summary>A refusal.</summary>
    /// <param name="error">Why.</param>
    /// <param name="reason">For people.</param>
    /// <returns>The reply.</returns>
    public static RoutedConnectReply Refused(PeerLinkError error, string reason) => new(error, reason, 0, ReadOnlyMemory<byte>.Empty, null);
}
