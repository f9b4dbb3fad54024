using System.Collections.Generic;
using System.Diagnostics.Metrics;
using PeerLink.Diagnostics;

namespace PeerLink.Discovery;

/// <summary>The instruments of PeerLink.Discovery, on the core's "PeerLink" meter (docs/observability.md).</summary>
internal static class DiscoveryTelemetry
{
    public const string Kind = "peerlink.mdns.kind";

    public static readonly Counter<long> Messages = Telemetry.Meter.CreateCounter<long>(
        "peerlink.mdns.messages", "{message}", "mDNS messages sent and received (direction \"sent\"/\"received\"), by kind (\"query\"/\"response\").");

    public static readonly Counter<long> MalformedRecords = Telemetry.Meter.CreateCounter<long>(
        "peerlink.mdns.malformed_records", "{record}", "Records skipped because their data was malformed; the rest of each packet was used.");

    public static readonly Counter<long> DroppedPackets = Telemetry.Meter.CreateCounter<long>(
        "peerlink.mdns.dropped_packets", "{packet}", "Received packets dropped because the engine already had its bound of packets waiting (a flood).");

    public static void Count(bool sent, bool response)
    {
        if (Messages.Enabled)
        {
            Messages.Add(1, new KeyValuePair<string, object?>(Telemetry.Direction, sent ? "sent" : "received"), new KeyValuePair<string, object?>(Kind, response ? "response" : "query"));
        }
    }
}
