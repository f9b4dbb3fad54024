using System.Collections.Generic;
using System.Diagnostics.Metrics;
using PeerLink.Diagnostics;

namespace PeerLink.Nat;

/// <summary>The instruments of PeerLink.Nat, on the core's "PeerLink" meter (docs/observability.md).</summary>
internal static class NatTelemetry
{
    public const string Role = "peerlink.stun.role";
    public const string Birthday = "peerlink.punch.birthday";
    public const string PeerNat = "peerlink.nat.peer";

    public static readonly Counter<long> StunRequests = Telemetry.Meter.CreateCounter<long>(
        "peerlink.stun.requests", "{request}", "STUN Binding transactions: role \"client\" by outcome (\"success\" or the PeerLinkError), role \"server\" by outcome (\"answered\" or \"dropped\").");

    public static readonly Counter<long> PunchAttempts = Telemetry.Meter.CreateCounter<long>(
        "peerlink.punch.attempts", "{attempt}", "Attempts to replace a relayed path with a direct one, by the path formed (udp, tcp, none), outcome and the peer's NAT as its candidates show it.");

    public static readonly Counter<long> RelayedBytes = Telemetry.Meter.CreateCounter<long>(
        "peerlink.relay.bytes", "By", "Bytes a rendezvous node forwarded between relayed devices (ciphertext).");

    public static readonly UpDownCounter<long> Attached = Telemetry.Meter.CreateUpDownCounter<long>(
        "peerlink.rendezvous.attached", "{device}", "Devices attached to this process's rendezvous nodes now.");

    public static void CountStunClient(string outcome) =>
        StunRequests.Add(1, new KeyValuePair<string, object?>(Role, "client"), new KeyValuePair<string, object?>(Telemetry.Outcome, outcome));

    public static void CountStunServer(bool answered) =>
        StunRequests.Add(1, new KeyValuePair<string, object?>(Role, "server"), new KeyValuePair<string, object?>(Telemetry.Outcome, answered ? "answered" : "dropped"));
}
