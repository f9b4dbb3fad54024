using System;
using System.Collections.Generic;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink;

/// <summary>Settings of a <see cref="PeerNode"/>. Validated and copied when the node starts.</summary>
public sealed class PeerNodeOptions
{
    /// <summary>Settings of every session (network key, authorization, limits, timeouts). The node uses its own identity, whatever <see cref="SecureSessionOptions.Identity"/> says, and changes nothing here.</summary>
    public SecureSessionOptions Session { get; } = new();

    /// <summary>Settings of TCP listeners and connections.</summary>
    public TcpTransportOptions Tcp { get; } = new();

    /// <summary>Incoming handshakes in progress at once; connections beyond this are dropped at once (flood protection).</summary>
    /// <remarks>Defaults to 128.</remarks>
    public int MaxPendingHandshakes { get; set; } = 128;

    /// <summary>
    /// Incoming handshakes in progress at once from one source (an IPv4 address, or an IPv6 /64); connections beyond this
    /// are dropped, so that one host holding many silent connections cannot take the slots of other peers.
    /// </summary>
    /// <remarks>Defaults to 16. A value above <see cref="MaxPendingHandshakes"/> has the effect of that one.</remarks>
    public int MaxPendingHandshakesPerAddress { get; set; } = 16;

    /// <summary>Sessions open at once; incoming connections beyond this are dropped.</summary>
    /// <remarks>Defaults to 10,000.</remarks>
    public int MaxSessions { get; set; } = 10_000;

    /// <summary>Established incoming sessions waiting for <see cref="PeerNode.AcceptAsync"/>; when full, handshakes wait.</summary>
    /// <remarks>Defaults to 256.</remarks>
    public int IncomingQueueLength { get; set; } = 256;

    internal void Validate(string paramName)
    {
        if (MaxPendingHandshakes < 1 || MaxSessions < 1 || IncomingQueueLength < 1)
        {
            throw new ArgumentOutOfRangeException(paramName, "MaxPendingHandshakes, MaxSessions and IncomingQueueLength must be at least 1.");
        }

        if (MaxPendingHandshakesPerAddress < 1)
        {
            throw new ArgumentOutOfRangeException(paramName, "MaxPendingHandshakesPerAddress must be at least 1.");
        }
    }
}

/// <summary>Assembles a <see cref="PeerNode"/>: identity, listeners, connector decorators and options.</summary>
/// <example>
/// <code>
/// await using PeerNode node = await new PeerNodeBuilder(identity, loggerFactory)
///     .ListenOn(new IPEndPoint(IPAddress.Any, 0))
///     .Configure(o => o.Session.AllowedPeers = trusted)
///     .StartAsync(cancellationToken);
/// </code>
/// </example>
public sealed class PeerNodeBuilder
{
    private readonly List<IPEndPoint> _tcpEndPoints = [];
    private readonly List<IPeerListener> _listeners = [];
    private readonly List<Func<IPeerConnector, IPeerConnector>> _connectorDecorators = [];
    private readonly List<IPeerNodeComponent> _components = [];
    private readonly PeerNodeOptions _options = new();

    /// <summary>A builder for a node with this identity.</summary>
    /// <param name="identity">The node's identity; the caller keeps ownership and must keep it alive while the node runs.</param>
    /// <param name="loggerFactory">Logging for the node and its sessions; none when null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="identity"/> is null.</exception>
    public PeerNodeBuilder(PeerIdentity identity, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(identity);
        Identity = identity;
        LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
    }

    /// <summary>The node's identity.</summary>
    public PeerIdentity Identity { get; }

    /// <summary>The logging of the node, for extensions that add components.</summary>
    public ILoggerFactory LoggerFactory { get; }

    /// <summary>Listens for TCP connections on <paramref name="endPoint"/> (port 0 picks a free port; see <see cref="PeerNode.LocalEndPoints"/>).</summary>
    /// <param name="endPoint">The address and port.</param>
    /// <exception cref="ArgumentNullException"><paramref name="endPoint"/> is null.</exception>
    public PeerNodeBuilder ListenOn(IPEndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        _tcpEndPoints.Add(endPoint);
        return this;
    }

    /// <summary>Accepts sessions from a listener of any transport; the node owns and disposes it.</summary>
    /// <param name="listener">The listener.</param>
    /// <exception cref="ArgumentNullException"><paramref name="listener"/> is null.</exception>
    public PeerNodeBuilder UseListener(IPeerListener listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        _listeners.Add(listener);
        return this;
    }

    /// <summary>Wraps the outgoing connector (TCP by default), for transports and NAT traversal added by other packages.</summary>
    /// <param name="decorate">Given the current connector, returns the one to use.</param>
    /// <exception cref="ArgumentNullException"><paramref name="decorate"/> is null.</exception>
    public PeerNodeBuilder UseConnector(Func<IPeerConnector, IPeerConnector> decorate)
    {
        ArgumentNullException.ThrowIfNull(decorate);
        _connectorDecorators.Add(decorate);
        return this;
    }

    /// <summary>Adds a component (discovery, NAT traversal) that the node starts after binding and disposes before closing its sessions.</summary>
    /// <param name="component">The component; the node owns and disposes it.</param>
    /// <exception cref="ArgumentNullException"><paramref name="component"/> is null.</exception>
    public PeerNodeBuilder AddComponent(IPeerNodeComponent component)
    {
        ArgumentNullException.ThrowIfNull(component);
        _components.Add(component);
        return this;
    }

    /// <summary>Changes the node's options.</summary>
    /// <param name="configure">Called once with the options.</param>
    /// <exception cref="ArgumentNullException"><paramref name="configure"/> is null.</exception>
    public PeerNodeBuilder Configure(Action<PeerNodeOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        configure(_options);
        return this;
    }

    /// <summary>Validates the options, binds the listeners and starts accepting.</summary>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <exception cref="ArgumentException">The options are inconsistent; the message says how.</exception>
    /// <exception cref="PeerLinkException">A listener could not be bound, or a component could not start.</exception>
    public async Task<PeerNode> StartAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        _options.Validate("options");
        SecureSessionOptions session = _options.Session.Validate("options", Identity);
        var listeners = new List<IPeerListener>(_listeners);
        try
        {
            foreach (IPEndPoint endPoint in _tcpEndPoints)
            {
                listeners.Add(TcpPeerListener.Listen(endPoint, _options.Tcp, LoggerFactory));
            }
        }
        catch
        {
            foreach (IPeerListener listener in listeners)
            {
                _ = listener.DisposeAsync();
            }

            throw;
        }

        IPeerConnector connector = new TcpPeerConnector(_options.Tcp, LoggerFactory);
        foreach (Func<IPeerConnector, IPeerConnector> decorate in _connectorDecorators)
        {
            connector = decorate(connector);
        }

        var node = new PeerNode(Identity, _options, session, listeners, connector, [.. _components], LoggerFactory);
        try
        {
            foreach (IPeerNodeComponent component in _components)
            {
                await component.StartAsync(node, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        NodeLog.Started(LoggerFactory.CreateLogger<PeerNode>(), Identity.PeerId.ToFingerprint(), listeners.Count);
        return node;
    }
}

/// <summary>Log messages of the node. Event ids 1500-1599 (within the core's range).</summary>
internal static partial class NodeLog
{
    [LoggerMessage(1501, LogLevel.Information, "Node {PeerFingerprint} started with {Listeners} listener(s).", EventName = "NodeStarted")]
    public static partial void Started(ILogger logger, string peerFingerprint, int listeners);

    [LoggerMessage(1502, LogLevel.Information, "Node {PeerFingerprint} stopped.", EventName = "NodeStopped")]
    public static partial void Stopped(ILogger logger, string peerFingerprint);

    [LoggerMessage(1503, LogLevel.Warning, "Dropped connection {ConnectionId} from {RemoteEndPoint}: {Reason} ({Unlogged} more dropped since the last such message; at most one a second is logged).", EventName = "ConnectionShed")]
    public static partial void ConnectionShed(ILogger logger, string connectionId, string remoteEndPoint, string reason, int unlogged);

    [LoggerMessage(1504, LogLevel.Error, "The accept loop of {EndPoint} failed; it no longer accepts.", EventName = "AcceptLoopFailed")]
    public static partial void AcceptLoopFailed(ILogger logger, EndPoint endPoint, Exception exception);

    [LoggerMessage(1506, LogLevel.Information, "IK to {EndPoint}: the peer's key is not the expected one; retrying with XX.", EventName = "FallbackToXX")]
    public static partial void FallbackToXX(ILogger logger, string endPoint);

    [LoggerMessage(1505, LogLevel.Warning, "The node component {Component} failed while stopping.", EventName = "ComponentFailed")]
    public static partial void ComponentFailed(ILogger logger, string component, Exception exception);
}
