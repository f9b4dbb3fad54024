using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat.Rendezvous;

namespace PeerLink.Testing;

/// <summary>
/// A tier of rendezvous nodes in one process: each node gets a backplane from <see cref="CreateBackplane"/>, and the
/// tier routes by a shared table, as a NATS backplane would by subjects. For tests of the node's tier logic without a
/// NATS server. <see cref="Down"/> makes every backplane fail, as when the message system is unreachable.
/// </summary>
public sealed class MemoryRendezvousTier
{
    private readonly Lock _gate = new();
    private readonly Dictionary<PeerId, (Backplane Home, long Epoch)> _routes = [];
    private readonly List<Backplane> _members = [];

    /// <summary>When true, every request and announcement fails with <see cref="PeerLinkError.TierUnavailable"/>.</summary>
    public bool Down { get; set; }

    /// <summary>Routed connect requests answered so far.</summary>
    public int RoutedRequests { get; private set; }

    /// <summary>A backplane for one more node of the tier.</summary>
    /// <returns>The backplane.</returns>
    public IRendezvousBackplane CreateBackplane() => new Backplane(this);

    /// <summary>Which node the tier routes <paramref name="device"/> to now, or null.</summary>
    /// <param name="device">The device.</param>
    /// <returns>The PeerId of the node.</returns>
    public PeerId? HomeOf(PeerId device)
    {
        lock (_gate)
        {
            return _routes.TryGetValue(device, out var route) ? route.Home.Node?.PeerId : null;
        }
    }

    private void ThrowIfDown()
    {
        if (Down)
        {
            throw new PeerLinkException(PeerLinkError.TierUnavailable, "The in-memory tier is down.");
        }
    }

    private sealed class Backplane(MemoryRendezvousTier tier) : IRendezvousBackplane
    {
        public IRendezvousTierNode? Node { get; private set; }

        public ValueTask StartAsync(IRendezvousTierNode node, CancellationToken cancellationToken)
        {
            tier.ThrowIfDown();
            Node = node;
            lock (tier._gate)
            {
                tier._members.Add(this);
            }

            return ValueTask.CompletedTask;
        }

        public ValueTask StopAsync(CancellationToken cancellationToken)
        {
            lock (tier._gate)
            {
                tier._members.Remove(this);
                foreach (KeyValuePair<PeerId, (Backplane Home, long Epoch)> route in new List<KeyValuePair<PeerId, (Backplane, long)>>(tier._routes))
                {
                    if (route.Value.Home == this)
                    {
                        tier._routes.Remove(route.Key);
                    }
                }
            }

            return ValueTask.CompletedTask;
        }

        public ValueTask AttachedAsync(PeerId device, long epoch, CancellationToken cancellationToken)
        {
            tier.ThrowIfDown();
            List<Backplane> others;
            lock (tier._gate)
            {
                if (!tier._routes.TryGetValue(device, out var route) || route.Epoch < epoch)
                {
                    tier._routes[device] = (this, epoch);
                }

                others = tier._members.FindAll(m => m != this);
            }

            foreach (Backplane other in others)
            {
                other.Node?.Evict(device, epoch);
            }

            return ValueTask.CompletedTask;
        }

        public ValueTask DetachedAsync(PeerId device, long epoch, CancellationToken cancellationToken)
        {
            tier.ThrowIfDown();
            lock (tier._gate)
            {
                if (tier._routes.TryGetValue(device, out var route) && route.Home == this && route.Epoch == epoch)
                {
                    tier._routes.Remove(device);
                }
            }

            return ValueTask.CompletedTask;
        }

        public async ValueTask<RoutedConnectReply?> RouteConnectAsync(RoutedConnect request, CancellationToken cancellationToken)
        {
            tier.ThrowIfDown();
            IRendezvousTierNode? home;
            lock (tier._gate)
            {
                home = tier._routes.TryGetValue(request.Target, out var route) ? route.Home.Node : null;
                tier.RoutedRequests += home is null ? 0 : 1;
            }

            return home is null ? null : await home.ConnectRoutedAsync(request, cancellationToken).ConfigureAwait(false);
        }
    }
}
