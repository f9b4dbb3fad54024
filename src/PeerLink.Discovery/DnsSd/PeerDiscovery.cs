// ARCHITECTURE.md "Discovery": service type _peerlink._tcp.local, instance name = device name, TXT v=1, id=<PeerId>,
// app=<application id> and user pairs; a browsing peer takes the PeerId from TXT and opens an IK session directly.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace PeerLink.Discovery;

/// <summary>Options of <see cref="PeerNodeBuilderDiscoveryExtensions.UseMdnsDiscovery"/>.</summary>
public sealed class PeerDiscoveryOptions
{
    /// <summary>The DNS-SD service type; applications may use their own so that they see only each other. Default "_peerlink._tcp".</summary>
    public string ServiceType { get; set; } = "_peerlink._tcp";

    /// <summary>The instance name others see (renamed on conflict). Default null: the machine name.</summary>
    public string? InstanceName { get; set; }

    /// <summary>Extra TXT pairs after v, id and app (which are reserved). Default none.</summary>
    public IList<KeyValuePair<string, string?>> Properties { get; } = new List<KeyValuePair<string, string?>>();

    /// <summary>Whether the node advertises itself. Default true.</summary>
    public bool Advertise { get; set; } = true;

    /// <summary>Whether the node browses for other peers and keeps a table of them. Default true.</summary>
    public bool Browse { get; set; } = true;

    /// <summary>How long <see cref="PeerNode.ConnectAsync(PeerId, CancellationToken)"/> waits for a peer not discovered yet. Default 3 s.</summary>
    public TimeSpan LocateTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>The mDNS engine's options (interfaces, address families, host name).</summary>
    public MdnsOptions Mdns { get; } = new();

    internal Func<MdnsOptions, ILoggerFactory, ServiceDiscovery>? StartDiscovery { get; set; }

    internal void Validate(string paramName)
    {
        _ = ServiceNames.ParseType(ServiceType, paramName);
        if (Properties.Any(p => p.Key is "v" or "id" or "app"))
        {
            throw new ArgumentException("PeerDiscoveryOptions.Properties: the keys v, id and app are PeerLink's own.", paramName);
        }

        _ = TxtProperties.Encode(Properties, paramName);
        if (LocateTimeout < TimeSpan.Zero)
        {
            throw new ArgumentException("PeerDiscoveryOptions.LocateTimeout must not be negative.", paramName);
        }

        Mdns.Validate(paramName);
    }
}

/// <summary>A peer found on the local network.</summary>
public sealed class DiscoveredPeer
{
    internal DiscoveredPeer(PeerId peerId, ServiceInstance instance)
    {
        PeerId = peerId;
        Instance = instance;
    }

    /// <summary>Its PeerId (from the TXT record), enough to open an IK session.</summary>
    public PeerId PeerId { get; }

    /// <summary>The DNS-SD instance behind it: name, host, port, addresses and all TXT properties.</summary>
    public ServiceInstance Instance { get; }

    /// <summary>The application id it advertises ("app"), or null.</summary>
    public string? ApplicationId => Instance.Properties.TryGetValue("app", out string? app) ? app : null;

    /// <summary>Where to connect: IPv4 first, then IPv6.</summary>
    public IReadOnlyList<IPEndPoint> EndPoints =>
        Instance.EndPoints.OrderBy(e => e.AddressFamily == AddressFamily.InterNetwork ? 0 : 1).ToArray();

    /// <inheritdoc/>
    public override string ToString() => $"{PeerId.ToFingerprint()} \"{Instance.InstanceName}\" at {string.Join(", ", EndPoints)}";
}

/// <summary>A change in the table of discovered peers.</summary>
/// <param name="Kind">Found, updated or lost.</param>
/// <param name="Peer">The peer.</param>
public sealed record PeerDiscoveryEvent(ServiceEventKind Kind, DiscoveredPeer Peer);

/// <summary>
/// mDNS discovery for a <see cref="PeerNode"/>: advertises the node (PeerId in TXT), keeps a table of the peers it
/// sees, and tells <see cref="PeerNode.ConnectAsync(PeerId, CancellationToken)"/> where they are.
/// Get it with <see cref="PeerNodeBuilderDiscoveryExtensions.GetDiscovery"/>.
/// </summary>
public sealed class PeerDiscovery : IPeerNodeComponent, IPeerLocator
{
    private readonly PeerDiscoveryOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ConcurrentDictionary<PeerId, DiscoveredPeer> _peers = new();
    private readonly Lock _watchersLock = new();
    private readonly List<Channel<PeerDiscoveryEvent>> _watchers = [];
    private readonly CancellationTokenSource _stop = new();
    private ServiceDiscovery? _discovery;
    private ServiceRegistration? _registration;
    private Task _browsing = Task.CompletedTask;
    private PeerId _self;
    private int _disposed;

    internal PeerDiscovery(PeerDiscoveryOptions options, ILoggerFactory loggerFactory)
    {
        _options = options;
        _loggerFactory = loggerFactory;
    }

    /// <summary>The instance name this node advertises (after any rename), or null when it does not advertise.</summary>
    public string? InstanceName => _registration?.InstanceName;

    /// <summary>The peers seen now (this node excluded).</summary>
    public IReadOnlyCollection<DiscoveredPeer> Peers => _peers.Values.ToArray();

    /// <summary>The mDNS/DNS-SD engine, for browsing or advertising other service types on the same sockets.</summary>
    public ServiceDiscovery Services => _discovery ?? throw new InvalidOperationException("The discovery has not started.");

    /// <summary>Looks a peer up in the table.</summary>
    /// <param name="peer">The PeerId.</param>
    /// <param name="found">The peer, when seen.</param>
    public bool TryGetPeer(PeerId peer, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out DiscoveredPeer? found) => _peers.TryGetValue(peer, out found);

    /// <summary>The peers seen now as <see cref="ServiceEventKind.Found"/> events, then every change, until cancelled or disposed.</summary>
    /// <param name="cancellationToken">Ends the enumeration.</param>
    public async IAsyncEnumerable<PeerDiscoveryEvent> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var channel = Channel.CreateUnbounded<PeerDiscoveryEvent>(new UnboundedChannelOptions { SingleReader = true });
        lock (_watchersLock)
        {
            foreach (DiscoveredPeer peer in _peers.Values)
            {
                channel.Writer.TryWrite(new PeerDiscoveryEvent(ServiceEventKind.Found, peer));
            }

            _watchers.Add(channel);
        }

        try
        {
            while (await channel.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (channel.Reader.TryRead(out PeerDiscoveryEvent? e))
                {
                    yield return e;
                }
            }
        }
        finally
        {
            lock (_watchersLock)
            {
                _watchers.Remove(channel);
            }
        }
    }

    /// <summary>Waits until <paramref name="peer"/> is seen.</summary>
    /// <param name="peer">The PeerId.</param>
    /// <param name="cancellationToken">Ends the wait (pass a timeout).</param>
    public async Task<DiscoveredPeer> WaitForPeerAsync(PeerId peer, CancellationToken cancellationToken = default)
    {
        await foreach (PeerDiscoveryEvent e in WatchAsync(cancellationToken).ConfigureAwait(false))
        {
            if (e.Kind != ServiceEventKind.Lost && e.Peer.PeerId == peer)
            {
                return e.Peer;
            }
        }

        throw new ObjectDisposedException(nameof(PeerDiscovery));
    }

    /// <inheritdoc/>
    async ValueTask<IReadOnlyList<EndPoint>> IPeerLocator.LocateAsync(PeerId peer, CancellationToken cancellationToken)
    {
        if (_peers.TryGetValue(peer, out DiscoveredPeer? known))
        {
            return known.EndPoints;
        }

        using Activity? activity = Diagnostics.Telemetry.Source.StartActivity("peerlink.discovery.resolve");
        activity?.SetTag(Diagnostics.Telemetry.PeerIdTag, peer.ToString());
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.LocateTimeout);
        try
        {
            IReadOnlyList<EndPoint> found = (await WaitForPeerAsync(peer, timeout.Token).ConfigureAwait(false)).EndPoints;
            activity?.SetTag(Diagnostics.Telemetry.Outcome, Diagnostics.Telemetry.Success);
            return found;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            activity?.SetTag(Diagnostics.Telemetry.Outcome, "NotFound");
            activity?.SetStatus(ActivityStatusCode.Error, "NotFound");
            return [];
        }
    }

    /// <inheritdoc/>
    async ValueTask IPeerNodeComponent.StartAsync(PeerNode node, CancellationToken cancellationToken)
    {
        _self = node.PeerId;
        _discovery = _options.StartDiscovery is { } start
            ? start(_options.Mdns, _loggerFactory)
            : await ServiceDiscovery.StartAsync(_options.Mdns, _loggerFactory, cancellationToken).ConfigureAwait(false);
        if (_options.Browse)
        {
            _browsing = Task.Run(() => BrowseAsync(_discovery, _stop.Token), CancellationToken.None);
        }

        if (_options.Advertise)
        {
            int port = node.LocalEndPoints.OfType<IPEndPoint>().Select(e => e.Port).FirstOrDefault();
            if (port == 0)
            {
                throw new InvalidOperationException("mDNS discovery advertises the node's TCP port: call ListenOn before UseMdnsDiscovery's node starts.");
            }

            string name = _options.InstanceName ?? Environment.MachineName;
            var profile = new ServiceProfile(name.Length > 63 ? name[..63] : name, _options.ServiceType, port);
            profile.Properties.Add(new("v", "1"));
            profile.Properties.Add(new("id", node.PeerId.ToString()));
            profile.Properties.Add(new("app", node.ApplicationId));
            foreach (KeyValuePair<string, string?> pair in _options.Properties)
            {
                profile.Properties.Add(pair);
            }

            _registration = await _discovery.AdvertiseAsync(profile, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task BrowseAsync(ServiceDiscovery discovery, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (ServiceEvent e in discovery.BrowseAsync(_options.ServiceType, cancellationToken).ConfigureAwait(false))
            {
                // Only instances that speak this protocol version and carry a valid PeerId; never ourselves.
                if (!e.Instance.Properties.TryGetValue("v", out string? version) || version != "1" ||
                    !e.Instance.Properties.TryGetValue("id", out string? id) || !PeerId.TryParse(id, out PeerId peerId) || peerId == _self)
                {
                    continue;
                }

                var peer = new DiscoveredPeer(peerId, e.Instance);
                if (e.Kind == ServiceEventKind.Lost)
                {
                    // Only forget the peer if this is the instance we know it by (it may have moved to another).
                    if (_peers.TryGetValue(peerId, out DiscoveredPeer? current) && current.Instance.InstanceName == e.Instance.InstanceName)
                    {
                        _peers.TryRemove(peerId, out _);
                        Publish(new PeerDiscoveryEvent(ServiceEventKind.Lost, peer));
                    }

                    continue;
                }

                bool existed = _peers.ContainsKey(peerId);
                _peers[peerId] = peer;
                Publish(new PeerDiscoveryEvent(existed ? ServiceEventKind.Updated : ServiceEventKind.Found, peer));
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void Publish(PeerDiscoveryEvent e)
    {
        lock (_watchersLock)
        {
            foreach (Channel<PeerDiscoveryEvent> watcher in _watchers)
            {
                watcher.Writer.TryWrite(e);
            }
        }
    }

    /// <summary>Withdraws the advertisement (goodbye), stops browsing and closes the mDNS sockets.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // The goodbye first: other peers drop this node as early as possible.
        if (_registration is not null)
        {
            await _registration.DisposeAsync().ConfigureAwait(false);
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        await _browsing.ConfigureAwait(false);

        if (_discovery is not null)
        {
            await _discovery.DisposeAsync().ConfigureAwait(false);
        }

        lock (_watchersLock)
        {
            foreach (Channel<PeerDiscoveryEvent> watcher in _watchers)
            {
                watcher.Writer.TryComplete();
            }
        }

        _stop.Dispose();
    }
}

/// <summary>Adds mDNS discovery to a node.</summary>
public static class PeerNodeBuilderDiscoveryExtensions
{
    /// <summary>
    /// The node advertises itself over mDNS/DNS-SD (type "_peerlink._tcp", TXT v=1, id=PeerId, app=application id),
    /// keeps a table of the peers it sees, and can then connect by PeerId alone
    /// (<see cref="PeerNode.ConnectAsync(PeerId, CancellationToken)"/>, over IK).
    /// </summary>
    /// <param name="builder">The node's builder; it needs a TCP listener (<see cref="PeerNodeBuilder.ListenOn"/>) to advertise.</param>
    /// <param name="configure">Changes the options; defaults when null.</param>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public static PeerNodeBuilder UseMdnsDiscovery(this PeerNodeBuilder builder, Action<PeerDiscoveryOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = new PeerDiscoveryOptions();
        configure?.Invoke(options);
        options.Validate(nameof(configure));
        return builder.AddComponent(new PeerDiscovery(options, builder.LoggerFactory ?? NullLoggerFactory.Instance));
    }

    /// <summary>The node's mDNS discovery.</summary>
    /// <param name="node">The node.</param>
    /// <exception cref="InvalidOperationException">The node was built without <see cref="UseMdnsDiscovery"/>.</exception>
    public static PeerDiscovery GetDiscovery(this PeerNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return node.GetComponent<PeerDiscovery>() ?? throw new InvalidOperationException("This node was built without UseMdnsDiscovery().");
    }
}
