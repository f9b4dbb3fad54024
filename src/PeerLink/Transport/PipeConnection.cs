using System;
using System.IO;
using System.IO.Pipelines;
using System.Net;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Transport;

/// <summary>A connection over pipes someone else drives: in-memory pairs, user pipes and streams.</summary>
internal sealed class PipeConnection : PeerConnection, IDuplexPipe
{
    private static long s_next;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly IAsyncDisposable? _owned;
    private readonly CancellationTokenSource _closed = new();
    private int _disposed;

    public PipeConnection(PipeReader input, PipeWriter output, string? connectionId, IAsyncDisposable? owned)
    {
        _input = input;
        _output = output;
        _owned = owned;
        ConnectionId = connectionId ?? NewId();
    }

    public override string ConnectionId { get; }

    public override IDuplexPipe Transport => this;

    public PipeReader Input => _input;

    public PipeWriter Output => _output;

    public override EndPoint? LocalEndPoint => null;

    public override EndPoint? RemoteEndPoint => null;

    public override CancellationToken ConnectionClosed => _closed.Token;

    public static string NewId() => "pipe-" + Interlocked.Increment(ref s_next).ToString(System.Globalization.CultureInfo.InvariantCulture);

    public override void Abort(Exception? reason = null)
    {
        // The far end sees what a reset TCP connection shows; this end sees its own abort.
        _output.CancelPendingFlush();
        _output.Complete(new PeerLinkException(PeerLinkError.ConnectionReset, "The peer aborted the connection."));
        _input.Complete(reason ?? new PeerLinkException(PeerLinkError.ConnectionAborted, "The connection was aborted."));
        _input.CancelPendingRead();
        Cancel();
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _output.CompleteAsync().ConfigureAwait(false);
        await _input.CompleteAsync().ConfigureAwait(false);
        Cancel();
        if (_owned is not null)
        {
            try
            {
                await _owned.DisposeAsync().ConfigureAwait(false);
            }
            catch (IOException)
            {
                // The stream was already broken; closing it is all that is left.
            }
        }

        _closed.Dispose();
    }

    private void Cancel()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
