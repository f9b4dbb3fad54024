using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace PeerLink.Diagnostics;

/// <summary>
/// The names under which PeerLink reports metrics (<see cref="System.Diagnostics.Metrics"/>) and traces
/// (<see cref="ActivitySource"/>), for <c>dotnet-counters monitor --counters PeerLink</c> or OpenTelemetry's
/// <c>AddMeter(PeerLinkTelemetry.MeterName)</c> and <c>AddSource(PeerLinkTelemetry.ActivitySourceName)</c>.
/// docs/observability.md lists every instrument, its unit and tags, and every span.
/// </summary>
/// <remarks>
/// Tags and spans name peers by PeerId, never by key material; messages are counted, never recorded. With nobody
/// listening an instrument costs one check of a flag.
/// </remarks>
public static class PeerLinkTelemetry
{
    /// <summary>The meter of every PeerLink package: "PeerLink".</summary>
    public const string MeterName = "PeerLink";

    /// <summary>The activity source of every PeerLink package: "PeerLink".</summary>
    public const string ActivitySourceName = "PeerLink";
}

/// <summary>The instruments, shared by the core and the add-on packages (they see the core's internals).</summary>
internal static class Telemetry
{
    private static readonly string? Version = typeof(Telemetry).Assembly.GetName().Version?.ToString();

    public static readonly Meter Meter = new(PeerLinkTelemetry.MeterName, Version);

    public static readonly ActivitySource Source = new(PeerLinkTelemetry.ActivitySourceName, Version);

    // Tag names.
    public const string Direction = "peerlink.direction";
    public const string Pattern = "peerlink.noise.pattern";
    public const string Outcome = "peerlink.outcome";
    public const string Reason = "peerlink.close.reason";
    public const string PeerIdTag = "peerlink.peer.id";
    public const string PathTag = "peerlink.path";

    // Tag values.
    public const string Inbound = "inbound";
    public const string Outbound = "outbound";
    public const string Success = "success";

    public static readonly UpDownCounter<long> SessionsActive = Meter.CreateUpDownCounter<long>(
        "peerlink.session.active", "{session}", "Sessions open now.");

    public static readonly Counter<long> SessionsOpened = Meter.CreateCounter<long>(
        "peerlink.session.opened", "{session}", "Sessions established (both handshake and ACCEPT done).");

    public static readonly Counter<long> SessionsClosed = Meter.CreateCounter<long>(
        "peerlink.session.closed", "{session}", "Sessions ended, by reason: \"closed\" for a graceful close from either side, else the PeerLinkError.");

    public static readonly Counter<long> Handshakes = Meter.CreateCounter<long>(
        "peerlink.handshakes", "{handshake}", "Handshakes finished, by pattern, direction and outcome (\"success\" or the PeerLinkError).");

    public static readonly Histogram<double> HandshakeDuration = Meter.CreateHistogram<double>(
        "peerlink.handshake.duration", "s", "Time from the start of a handshake to its outcome, ACCEPT included.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });

    public static readonly Counter<long> MessagesSent = Meter.CreateCounter<long>(
        "peerlink.messages.sent", "{message}", "Application messages sent (accepted by a send).");

    public static readonly Counter<long> MessagesReceived = Meter.CreateCounter<long>(
        "peerlink.messages.received", "{message}", "Application messages delivered to the application.");

    public static readonly Counter<long> BytesSent = Meter.CreateCounter<long>(
        "peerlink.bytes.sent", "By", "Application payload bytes sent (before framing and encryption).");

    public static readonly Counter<long> BytesReceived = Meter.CreateCounter<long>(
        "peerlink.bytes.received", "By", "Application payload bytes delivered.");

    /// <summary>One message of <paramref name="length"/> bytes; with nobody listening, two flag checks.</summary>
    public static void CountMessage(Counter<long> messages, Counter<long> bytes, int length)
    {
        if (messages.Enabled)
        {
            messages.Add(1);
        }

        if (bytes.Enabled)
        {
            bytes.Add(length);
        }
    }

    // Error names, made once: a tag value must not allocate per measurement.
    private static readonly Dictionary<PeerLinkError, string> ErrorNames = BuildErrorNames();

    public static string NameOf(PeerLinkError error) => ErrorNames.TryGetValue(error, out string? name) ? name : "Unknown";

    /// <summary>The outcome tag of a failure: the PeerLinkError of a PeerLinkException, "Cancelled", else "Unknown".</summary>
    public static string OutcomeOf(Exception error) => error switch
    {
        PeerLinkException e => NameOf(e.Error),
        OperationCanceledException => "Cancelled",
        _ => "Unknown",
    };

    public static string DirectionOf(bool initiator) => initiator ? Outbound : Inbound;

    /// <summary>Marks a span failed with the error's code (not its message, which may name addresses).</summary>
    public static void SetFailed(Activity? activity, Exception error)
    {
        if (activity is not null)
        {
            string outcome = OutcomeOf(error);
            activity.SetTag(Outcome, outcome);
            activity.SetStatus(ActivityStatusCode.Error, outcome);
        }
    }

    private static Dictionary<PeerLinkError, string> BuildErrorNames()
    {
        var names = new Dictionary<PeerLinkError, string>();
        foreach (PeerLinkError value in Enum.GetValues<PeerLinkError>())
        {
            names[value] = value.ToString();
        }

        return names;
    }
}
