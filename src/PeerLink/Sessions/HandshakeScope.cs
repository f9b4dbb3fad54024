using System;
using System.Buffers;
using System.Diagnostics;
using System.Threading;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Diagnostics;
using PeerLink.Security.Noise;

namespace PeerLink.Sessions;

/// <summary>
/// What one handshake owns: its logger, the deadline (linked to the caller's token), and two buffers that are cleared
/// when returned because they held key material. It also reports the handshake: a "peerlink.handshake" span, and at
/// <see cref="Dispose"/> the handshake counter and duration with the outcome that <see cref="Succeeded"/> or
/// <see cref="NoteFailure"/> recorded.
/// </summary>
internal sealed class HandshakeScope : IDisposable
{
    private readonly CancellationTokenSource _deadline;
    private readonly CancellationTokenSource _timeout;
    private readonly long _started = Stopwatch.GetTimestamp();
    private readonly string _direction;
    private readonly Activity? _activity;
    private string? _outcome;

    public HandshakeScope(SecureSessionOptions options, ILoggerFactory? loggerFactory, CancellationToken cancellationToken, bool initiator)
    {
        _direction = Telemetry.DirectionOf(initiator);
        _activity = Telemetry.Source.StartActivity("peerlink.handshake", initiator ? ActivityKind.Client : ActivityKind.Server);
        _activity?.SetTag(Telemetry.Direction, _direction);
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

    /// <summary>The handshake pattern once chosen ("IK", "XX", …); "unknown" when it failed before.</summary>
    public string? Pattern { get; set; }

    /// <summary>The handshake and the ACCEPT exchange succeeded.</summary>
    public void Succeeded(NoiseProtocol protocol, PeerId remote)
    {
        Pattern = protocol.PatternName;
        _outcome = Telemetry.Success;
        _activity?.SetTag(Telemetry.PeerIdTag, remote.ToString());
    }

    /// <summary>Records why the handshake failed (the first reason wins); false, so that it can be an exception filter.</summary>
    public bool NoteFailure(Exception error)
    {
        if (_outcome is null)
        {
            _outcome = Telemetry.OutcomeOf(error);
            Telemetry.SetFailed(_activity, error);
        }

        return false;
    }

    public void Dispose()
    {
        string outcome = _outcome ?? "Unknown";
        string pattern = Pattern ?? "unknown";
        if (_activity is not null)
        {
            _activity.SetTag(Telemetry.Pattern, pattern);
            _activity.SetTag(Telemetry.Outcome, outcome);
            _activity.Dispose();
        }

        var tags = new TagList
        {
            { Telemetry.Pattern, pattern },
            { Telemetry.Direction, _direction },
            { Telemetry.Outcome, outcome },
        };
        Telemetry.Handshakes.Add(1, tags);
        if (Telemetry.HandshakeDuration.Enabled)
        {
            Telemetry.HandshakeDuration.Record(Stopwatch.GetElapsedTime(_started).TotalSeconds, tags);
        }


        _timeout.Dispose();
        _deadline.Dispose();
        ArrayPool<byte>.Shared.Return(Message, clearArray: true);
        ArrayPool<byte>.Shared.Return(Payload, clearArray: true);
    }
}
