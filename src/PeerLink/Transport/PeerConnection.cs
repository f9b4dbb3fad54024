using System;
using System.IO;
using System.IO.Pipelines;
using System.Net;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Transport;

/// <summary>
/// A bidirectional byte stream to one remote peer: TCP, an in-memory pipe, or any <see cref="IDuplexPipe"/> or
/// <see cref="Stream"/> (a serial port, a WebSocket) the application brings. A secure session runs on top of one.
/// </summary>
/// <remarks>Thread-safe: <see cref="Abort"/> and <see cref="DisposeAsync"/> may race with I/O.</remarks>
public abstract class PeerConnection : IAsyncDisposable
{
    private protected PeerConnection()
    {
    }

    /// <summary>A short identifier for logs.</summary>
    public abstract string ConnectionId { get; }

    /// <summary>Read from <c>Transport.Input</c>, write to <c>Transport.Output</c>. Owned by this connection.</summary>
    public abstract IDuplexPipe Transport { get; }

    /// <summary>The local endpoint, or null when the transport has none (in-memory, a stream).</summary>
    public abstract EndPoint? LocalEndPoint { get; }

    /// <summary>The remote endpoint, or null when the transport has none.</summary>
    public abstract EndPoint? RemoteEndPoint { get; }

    /// <summary>Cancelled when the underlying transport has closed, from either side.</summary>
    public abstract CancellationToken ConnectionClosed { get; }

    /// <summary>The reason given to <see cref="Abort"/>, when this side aborted the connection with one.</summary>
    internal virtual Exception? AbortReason => null;

    /// <summary>Closes at once, without flushing. Pending reads end with <paramref name="reason"/> or a reset. Idempotent.</summary>
    /// <param name="reason">What to report to pending reads; null for a plain abort.</param>
    public abstract void Abort(Exception? reason = null);

    /// <summary>Graceful close: flushes what was written, completes the pipes and releases resources. Idempotent.</summary>
    public abstract ValueTask DisposeAsync();

    /// <summary>Wraps a duplex pipe the caller provides; disposing the connection completes both of its ends.</summary>
    /// <param name="transport">The pipe; the connection owns it from now on.</param>
    /// <param name="connectionId">A name for logs; generated when null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="transport"/> is null.</exception>
    public static PeerConnection Create(IDuplexPipe transport, string? connectionId = null)
    {
        ArgumentNullException.ThrowIfNull(transport);
        return new PipeConnection(transport.Input, transport.Output, connectionId, owned: null);
    }

    /// <summary>Wraps a readable and writable stream; disposing the connection disposes the stream.</summary>
    /// <param name="stream">The stream; the connection owns it from now on.</param>
    /// <param name="connectionId">A name for logs; generated when null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="stream"/> cannot both read and write.</exception>
    public static PeerConnection Create(Stream stream, string? connectionId = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead || !stream.CanWrite)
        {
            throw new ArgumentException("The stream must be readable and writable.", nameof(stream));
        }

        return new PipeConnection(
            PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true)),
            PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true)),
            connectionId,
            owned: stream);
    }

    /// <summary>
    /// Two connected in-memory connections, for tests and for sessions inside one process. What one writes, the other
    /// reads. Each direction buffers at most <paramref name="maxBufferedBytes"/> before the writer waits.
    /// </summary>
    /// <param name="maxBufferedBytes">Backpressure threshold per direction; defaults to 1 MiB.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxBufferedBytes"/> is less than 1.</exception>
    public static (PeerConnection First, PeerConnection Second) CreatePair(long maxBufferedBytes = 1024 * 1024)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBufferedBytes, 1);
        var options = new PipeOptions(pauseWriterThreshold: maxBufferedBytes, resumeWriterThreshold: maxBufferedBytes / 2, useSynchronizationContext: false);
        var forward = new Pipe(options);
        var backward = new Pipe(options);
        string id = PipeConnection.NewId();
        return (new PipeConnection(backward.Reader, forward.Writer, id + "/a", owned: null),
                new PipeConnection(forward.Reader, backward.Writer, id + "/b", owned: null));
    }
}

/// <summary>Accepts incoming connections.</summary>
public interface IPeerListener : IAsyncDisposable
{
    /// <summary>The bound endpoint, with the real port when port 0 was asked for.</summary>
    EndPoint LocalEndPoint { get; }

    /// <summary>The next incoming connection, owned by the caller; null once the listener is disposed.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    ValueTask<PeerConnection?> AcceptAsync(CancellationToken cancellationToken = default);
}

/// <summary>Opens outgoing connections.</summary>
public interface IPeerConnector
{
    /// <summary>Connects to <paramref name="remoteEndPoint"/>; the caller owns the connection.</summary>
    /// <param name="remoteEndPoint">Where to connect.</param>
    /// <param name="cancellationToken">Cancels the attempt.</param>
    /// <exception cref="PeerLinkException">The connection was refused, timed out or failed.</exception>
    ValueTask<PeerConnection> ConnectAsync(EndPoint remoteEndPoint, CancellationToken cancellationToken = default);
}
