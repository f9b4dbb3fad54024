using System;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace PeerLink.Transport;

/// <summary>Listens for TCP connections on one endpoint (IPv4 or IPv6; port 0 picks a free port).</summary>
public sealed class TcpPeerListener : IPeerListener
{
    private readonly Socket _socket;
    private readonly TcpTransportOptions _options;
    private readonly ILogger _logger;
    private int _disposed;

    private TcpPeerListener(Socket socket, TcpTransportOptions options, ILogger logger)
    {
        _socket = socket;
        _options = options;
        _logger = logger;
        LocalEndPoint = socket.LocalEndPoint!;
    }

    /// <inheritdoc/>
    public EndPoint LocalEndPoint { get; }

    /// <summary>Binds and listens.</summary>
    /// <param name="endPoint">Where to listen; IPv6Any also accepts IPv4 (dual mode).</param>
    /// <param name="options">Socket settings; defaults when null.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="endPoint"/> is null.</exception>
    /// <exception cref="PeerLinkException">The endpoint cannot be bound (in use, not an address of this host).</exception>
    public static TcpPeerListener Listen(IPEndPoint endPoint, TcpTransportOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        TcpTransportOptions settings = (options ?? new TcpTransportOptions()).Validate(nameof(options));
        ILogger logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<TcpPeerListener>();
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endPoint.AddressFamily == AddressFamily.InterNetworkV6)
            {
                socket.DualMode = endPoint.Address.Equals(IPAddress.IPv6Any);
            }

            socket.Bind(endPoint);
            socket.Listen(settings.Backlog);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw SocketErrors.Map(e, $"Cannot listen on {endPoint}");
        }

        TransportLog.Listening(logger, socket.LocalEndPoint!);
        return new TcpPeerListener(socket, settings, logger);
    }

    /// <inheritdoc/>
    public async ValueTask<PeerConnection?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await _socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is ObjectDisposedException || e is SocketException && Volatile.Read(ref _disposed) != 0)
            {
                return null;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
            {
                continue;   // the client gave up before we accepted it
            }

            return new SocketConnection(accepted, _options, _logger);
        }
    }

    /// <summary>Stops listening. Connections already accepted are not affected. Idempotent.</summary>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _socket.Dispose();
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>Opens TCP connections.</summary>
public sealed class TcpPeerConnector : IPeerConnector
{
    private readonly TcpTransportOptions _options;
    private readonly ILogger _logger;

    /// <summary>A connector with these settings.</summary>
    /// <param name="options">Socket settings; defaults when null.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    public TcpPeerConnector(TcpTransportOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        _options = (options ?? new TcpTransportOptions()).Validate(nameof(options));
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<TcpPeerConnector>();
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException"><paramref name="remoteEndPoint"/> is not an IP or DNS endpoint.</exception>
    public async ValueTask<PeerConnection> ConnectAsync(EndPoint remoteEndPoint, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(remoteEndPoint);
        if (remoteEndPoint is not (IPEndPoint or DnsEndPoint))
        {
            throw new ArgumentException("TCP needs an IPEndPoint or a DnsEndPoint.", nameof(remoteEndPoint));
        }

        var socket = new Socket(remoteEndPoint.AddressFamily == AddressFamily.Unspecified ? AddressFamily.InterNetworkV6 : remoteEndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        if (socket.AddressFamily == AddressFamily.InterNetworkV6)
        {
            socket.DualMode = true;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ConnectTimeout);
        try
        {
            await socket.ConnectAsync(remoteEndPoint, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw new PeerLinkException(PeerLinkError.ConnectionTimeout, $"Connecting to {remoteEndPoint} timed out after {_options.ConnectTimeout.TotalSeconds} s.");
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw SocketErrors.Map(e, $"Cannot connect to {remoteEndPoint}");
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new SocketConnection(socket, _options, _logger);
    }
}
