using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Threading.Tasks;
using NATS.Client.Core;
using PeerLink.Nat.Rendezvous;
using PeerLink.Rendezvous.Nats;

namespace PeerLink.Testing;

/// <summary>
/// Rendezvous nodes on loopback joined by one backplane kind: "memory" (<see cref="MemoryRendezvousTier"/>) or "nats"
/// (a NATS cluster of as many servers as nodes, node i preferring server i and knowing the others, as a node in region i
/// would). For the tier tests and benchmarks.
/// </summary>
public sealed class RendezvousTestTier : IAsyncDisposable
{
    private readonly List<PeerIdentity> _identities = [];
    private readonly List<RendezvousServer> _nodes = [];
    private readonly List<NatsRendezvousBackplane> _natsBackplanes = [];
    private readonly List<NatsConnection> _connections = [];
    private NatsTestServer[] _servers = [];

    private RendezvousTestTier()
    {
    }

    /// <summary>The nodes.</summary>
    public IReadOnlyList<RendezvousServer> Nodes => _nodes;

    /// <summary>The in-memory tier, for "memory".</summary>
    public MemoryRendezvousTier? Memory { get; private set; }

    /// <summary>The NATS cluster's servers (none in memory); node i prefers server i.</summary>
    public IReadOnlyList<NatsTestServer> Servers => _servers;

    /// <summary>Node i's NATS connection (none in memory).</summary>
    public IReadOnlyList<NatsConnection> Connections => _connections;

    /// <summary>Node i's NATS backplane (none in memory).</summary>
    public IReadOnlyList<NatsRendezvousBackplane> NatsBackplanes => _natsBackplanes;

    /// <summary>Connect requests routed between nodes so far (in memory: counted by the tier; NATS: by the nodes' answers).</summary>
    public int RoutedRequests => Memory?.RoutedRequests ?? _natsBackplanes.Sum(b => b.RoutedAnswers);

    /// <summary>The nodes as devices name them.</summary>
    public RendezvousNode[] DeviceList => [.. _nodes.Select(n => new RendezvousNode(n.EndPoint, n.PeerId))];

    /// <summary>Starts <paramref name="size"/> nodes on loopback; <paramref name="configure"/> changes each node's options.</summary>
    public static async Task<RendezvousTestTier> StartAsync(string kind, Action<RendezvousServerOptions>? configure = null, int size = 3)
    {
        var tier = new RendezvousTestTier();
        try
        {
            if (kind == "nats")
            {
                tier._servers = await NatsTestServer.StartClusterAsync(size);
            }
            else
            {
                tier.Memory = new MemoryRendezvousTier();
            }

            for (int i = 0; i < size; i++)
            {
                IRendezvousBackplane backplane;
                if (tier._servers.Length > 0)
                {
                    string urls = string.Join(",", Enumerable.Range(0, size).Select(k => tier._servers[(i + k) % size].Url));
                    var connection = new NatsConnection(new NatsOpts
                    {
                        Url = urls,
                        NoRandomize = true,
                        Name = $"rendezvous-{i}",
                        ReconnectWaitMin = TimeSpan.FromMilliseconds(50),
                        ReconnectWaitMax = TimeSpan.FromMilliseconds(200),
                    });
                    tier._connections.Add(connection);
                    var nats = new NatsRendezvousBackplane(connection);
                    tier._natsBackplanes.Add(nats);
                    backplane = nats;
                }
                else
                {
                    backplane = tier.Memory!.CreateBackplane();
                }

                var identity = PeerIdentity.Generate();
                tier._identities.Add(identity);
                var options = new RendezvousServerOptions { ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0), StunPort = 0, Backplane = backplane };
                configure?.Invoke(options);
                tier._nodes.Add(await RendezvousServer.StartAsync(identity, options));
            }

            return tier;
        }
        catch
        {
            await tier.DisposeAsync();
            throw;
        }
    }

    /// <summary>Stops one node, as a node stopped by its service manager (its devices see their attach sessions close).</summary>
    public async Task StopAsync(PeerId node) => await _nodes.Single(n => n.PeerId == node).DisposeAsync();   // idempotent

    public async ValueTask DisposeAsync()
    {
        foreach (RendezvousServer node in _nodes)
        {
            await node.DisposeAsync();
        }

        foreach (NatsRendezvousBackplane backplane in _natsBackplanes)
        {
            await backplane.DisposeAsync();
        }

        foreach (NatsConnection connection in _connections)
        {
            await connection.DisposeAsync();
        }

        foreach (NatsTestServer server in _servers)
        {
            await server.DisposeAsync();
        }

        foreach (PeerIdentity identity in _identities)
        {
            identity.Dispose();
        }
    }
}
