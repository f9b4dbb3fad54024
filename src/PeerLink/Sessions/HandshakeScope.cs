using System;
using System.Buffers;
using System.Threading;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Security.Noise;

namespace PeerLink.Sessions;

/// <summary>
/// What one handshake owns: its logger, the deadline (linked to the caller's token), and two buffers that are cleared
/// when returned because they held key material.
/// </summary>
internal sealed class HandshakeScope : IDisposable
{
    private readonly CancellationTokenSource _deadline;
    private readonly CancellationTokenSource _timeout;

    public HandshakeScope(SecureSessionOptions options, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        Logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("PeerLink.Sessions.SecureSession");   // the session's category, without a reference to it
        _deadline = new CancellationTokenSource(options.HandshakeTimeout, options.TimeProvider);   // on the session's clock
        _timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _deadline.Token);
        Message = ArrayPool<byte>.Shared.Rent(NoiseCipherState.MaxMessageLength);
        Payload = ArrayPool<byte>.Shared.Rent(NoiseCipherState.MaxMessageLength);
    }

    public ILogger Logger { get; }

    public CancellationToken Timeout => _timeout.Token;

    public byte[] Message { get; }

    public byte[] Payload { get; }

    public void Dispose()
    {
        _timeout.Dispose();
        _deadline.Dispose();
        ArrayPool<byte>.Shared.Return(Message, clearArray: true);
        ArrayPool<byte>.Shared.Return(Payload, clearArray: true);
    }
}
