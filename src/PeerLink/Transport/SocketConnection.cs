using System;
using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;

namespace PeerLink.Transport;

/// <summary>
/// A connected stream socket as a duplex pipe: one loop receives into the input pipe (it stops reading while the
/// reader is behind by <see cref="TcpTransportOptions.MaxReadBufferSize"/>), one loop sends what the output pipe holds
/// (writers wait beyond <see cref="TcpTransportOptions.MaxWriteBufferSize"/>). Socket errors are mapped once, here.
/// </summary>
internal sealed class SocketConnection : PeerConnection, IDuplexPipe
{
    // Ask for a large buffer once data is there: one receive call then takes a whole 64 KiB Noise message.
    private const int MinReceiveBuffer = 128 * 1024;
    private static long s_next;

    private readonly Socket _socket;
    private readonly Pipe _receivePipe;
    private readonly Pipe _sendPipe;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _closed = new();
    private readonly Task _receiveLoop;
    private readonly Task _sendLoop;
    private volatile Exception? _abortReason;
    private int _disposed;

    public SocketConnection(Socket socket, TcpTransportOptions options, ILogger logger)
    {
        _socket = socket;
        _logger = logger;
        ConnectionId = "tcp-" + Interlocked.Increment(ref s_next).ToString(System.Globalization.CultureInfo.InvariantCulture);
        LocalEndPoint = socket.LocalEndPoint;
        RemoteEndPoint = socket.RemoteEndPoint;
        socket.NoDelay = options.NoDelay;
        (PipeOptions receive, PipeOptions send) = PipeOptionsFor(options);
        _receivePipe = new Pipe(receive);
        _sendPipe = new Pipe(send);

        // Started here rather than through Task.Run: each loop runs to its first wait (the zero-byte receive, the empty
        // send pipe) and holds no task beyond its own, which matters for a node holding thousands of idle connections.
        _receiveLoop = ReceiveLoopAsync();
        _sendLoop = SendLoopAsync();
    }

    // Pipe options are immutable once made: the connections of a transport share one pair instead of two per connection.
    private static PipeOptionsPair? s_pipeOptions;

    public override string ConnectionId { get; }

    public override IDuplexPipe Transport => this;

    public PipeReader Input => _receivePipe.Reader;

    public PipeWriter Output => _sendPipe.Writer;

    public override EndPoint? LocalEndPoint { get; }

    public override EndPoint? RemoteEndPoint { get; }

    public override CancellationToken ConnectionClosed => _closed.Token;

    internal override Exception? AbortReason => _abortReason;

    public override void Abort(Exception? reason = null)
    {
        _abortReason ??= reason ?? new PeerLinkException(PeerLinkError.ConnectionAborted, $"Connection {ConnectionId} was aborted.");
        TransportLog.ConnectionAborted(_logger, ConnectionId);
        try
        {
            // A reset, not a FIN: the peer must not take an abort for a clean end.
            _socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        _socket.Dispose();
        _receivePipe.Writer.CancelPendingFlush();
        _sendPipe.Reader.CancelPendingRead();
        SignalClosed();
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Graceful: whatever the application wrote is sent, then FIN; the receive loop ends with the socket.
        // Closing the socket then ends the receive loop, which may be waiting for a peer that never closes.
        await _sendPipe.Writer.CompleteAsync().ConfigureAwait(false);
        await _receivePipe.Reader.CompleteAsync().ConfigureAwait(false);
        await _sendLoop.ConfigureAwait(false);
        _socket.Dispose();
        await _receiveLoop.ConfigureAwait(false);
        SignalClosed();
        _closed.Dispose();
    }

    private static (PipeOptions Receive, PipeOptions Send) PipeOptionsFor(TcpTransportOptions options)
    {
        if (Volatile.Read(ref s_pipeOptions) is { } cached && cached.Read == options.MaxReadBufferSize && cached.Write == options.MaxWriteBufferSize)
        {
            return (cached.Receive, cached.Send);
        }

        var receive = new PipeOptions(
            pauseWriterThreshold: options.MaxReadBufferSize, resumeWriterThreshold: options.MaxReadBufferSize / 2,
            readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false);
        var send = new PipeOptions(
            pauseWriterThreshold: options.MaxWriteBufferSize, resumeWriterThreshold: options.MaxWriteBufferSize / 2,
            readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.ThreadPool, useSynchronizationContext: false);
        Volatile.Write(ref s_pipeOptions, new PipeOptionsPair(options.MaxReadBufferSize, options.MaxWriteBufferSize, receive, send));
        return (receive, send);
    }

    private async Task ReceiveLoopAsync()
    {
        PipeWriter writer = _receivePipe.Writer;
        Exception? error = null;
        try
        {
            bool drained = true;
            while (true)
            {
                // A zero-byte receive first: no pipe memory is held by an idle connection. Not after a receive that
                // filled its buffer: more is almost certainly waiting (bulk), and the wait would cost a system call.
                if (drained)
                {
                    await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
                }

                Memory<byte> memory = writer.GetMemory(MinReceiveBuffer);
                int received = await _socket.ReceiveAsync(memory, SocketFlags.None).ConfigureAwait(false);
                if (received == 0)
                {
                    TransportLog.ConnectionReadFin(_logger, ConnectionId);
                    break;
                }

                drained = received < memory.Length;

                writer.Advance(received);
                FlushResult flush = await writer.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;   // the reader is done with this connection, or it was aborted
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            error = _abortReason ?? (Volatile.Read(ref _disposed) != 0 ? null : Map(e));
        }
        finally
        {
            await writer.CompleteAsync(error).ConfigureAwait(false);
            if (error is not null)
            {
                // The send side cannot continue either.
                _sendPipe.Reader.CancelPendingRead();
            }

            SignalClosed();
        }
    }

    private async Task SendLoopAsync()
    {
        PipeReader reader = _sendPipe.Reader;
        Exception? error = null;
        try
        {
            while (true)
            {
                ReadResult result = await reader.ReadAsync().ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                try
                {
                    if (result.IsCanceled)
                    {
                        break;
                    }

                    foreach (ReadOnlyMemory<byte> segment in buffer)
                    {
                        ReadOnlyMemory<byte> rest = segment;
                        while (!rest.IsEmpty)
                        {
                            int sent = await _socket.SendAsync(rest, SocketFlags.None).ConfigureAwait(false);
                            rest = rest[sent..];
                        }
                    }

                    if (result.IsCompleted)
                    {
                        break;
                    }
                }
                finally
                {
                    reader.AdvanceTo(buffer.End);
                }
            }

            if (_abortReason is null)
            {
                _socket.Shutdown(SocketShutdown.Send);   // FIN after everything was sent
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            error = _abortReason ?? Map(e);
        }
        finally
        {
            await reader.CompleteAsync(error).ConfigureAwait(false);
        }
    }

    private PeerLinkException Map(Exception e)
    {
        TransportLog.ConnectionError(_logger, ConnectionId, e is SocketException s ? s.SocketErrorCode : SocketError.OperationAborted);
        return SocketErrors.Map(e, $"Connection {ConnectionId} failed");
    }

    private void SignalClosed()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private sealed record PipeOptionsPair(long Read, long Write, PipeOptions Receive, PipeOptions Send);
}
