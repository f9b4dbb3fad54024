using System;
using System.Net;
using Microsoft.Extensions.Logging;

namespace PeerLink.Nat.Rendezvous;

/// <summary>Log messages of the rendezvous node and client. Event ids 3200-3299 (within PeerLink.Nat's range). Never keys or plaintext.</summary>
internal static partial class RendezvousLog
{
    [LoggerMessage(3200, LogLevel.Information, "Rendezvous node {PeerId} listening on TCP {EndPoint}; STUN on {Stun}.", EventName = "RendezvousStarted")]
    public static partial void ServerStarted(ILogger logger, string peerId, EndPoint endPoint, string stun);

    [LoggerMessage(3201, LogLevel.Information, "Rendezvous node {Peer} stopped.", EventName = "RendezvousStopped")]
    public static partial void ServerStopped(ILogger logger, string peer);

    [LoggerMessage(3202, LogLevel.Warning, "Dropped a connection from {Remote}: {Reason} ({Unlogged} more dropped since the last message).", EventName = "RendezvousConnectionShed")]
    public static partial void ConnectionShed(ILogger logger, string remote, string reason, int unlogged);

    [LoggerMessage(3203, LogLevel.Error, "The rendezvous node's accept loop failed; it accepts no more devices.", EventName = "RendezvousAcceptLoopFailed")]
    public static partial void AcceptLoopFailed(ILogger logger, Exception exception);

    [LoggerMessage(3204, LogLevel.Debug, "Dropped a connection from {Remote} that is neither an attach session nor a relay connection.", EventName = "RendezvousUnknownConnection")]
    public static partial void UnknownConnection(ILogger logger, string remote);

    [LoggerMessage(3205, LogLevel.Information, "Device {Device} attached (epoch {Epoch}) from {Remote}.", EventName = "RendezvousAttached")]
    public static partial void Attached(ILogger logger, string device, long epoch, string remote);

    [LoggerMessage(3206, LogLevel.Information, "Device {Device} attached again: epoch {NewEpoch} replaces epoch {OldEpoch}.", EventName = "RendezvousAttachmentReplaced")]
    public static partial void AttachmentReplaced(ILogger logger, string device, long oldEpoch, long newEpoch);

    [LoggerMessage(3207, LogLevel.Information, "Device {Device} detached (epoch {Epoch}): {Reason}.", EventName = "RendezvousDetached")]
    public static partial void Detached(ILogger logger, string device, long epoch, string reason);

    [LoggerMessage(3208, LogLevel.Warning, "Device {Device} broke the rendezvous protocol ({Error}: {Reason}); its attachment is closed.", EventName = "RendezvousDeviceMisbehaved")]
    public static partial void DeviceMisbehaved(ILogger logger, string device, PeerLinkError error, string reason);

    [LoggerMessage(3209, LogLevel.Debug, "Relay {Circuit}: {Caller} asks for {Callee}.", EventName = "RendezvousRelayRequested")]
    public static partial void RelayRequested(ILogger logger, long circuit, string caller, string callee);

    [LoggerMessage(3210, LogLevel.Debug, "Relay {Circuit}: both sides joined.", EventName = "RendezvousRelayJoined")]
    public static partial void RelayJoined(ILogger logger, long circuit);

    [LoggerMessage(3211, LogLevel.Information, "Relay {Circuit} ended after {Bytes} bytes: {Reason}.", EventName = "RendezvousRelayEnded")]
    public static partial void RelayEnded(ILogger logger, long circuit, long bytes, string reason);

    [LoggerMessage(3212, LogLevel.Debug, "Dropped a relay connection from {Remote} with an unknown or used token.", EventName = "RendezvousUnknownRelayToken")]
    public static partial void UnknownRelayToken(ILogger logger, string remote);

    [LoggerMessage(3220, LogLevel.Information, "Attached to rendezvous node {Node} at {EndPoint} (epoch {Epoch}, keepalive every {KeepAliveSeconds} s, seen as {Observed}).", EventName = "RendezvousClientAttached")]
    public static partial void ClientAttached(ILogger logger, string node, EndPoint endPoint, long epoch, double keepAliveSeconds, string observed);

    [LoggerMessage(3221, LogLevel.Warning, "Lost the attachment to rendezvous node {Node}: {Reason}. Attaching again in {DelaySeconds:0.0} s.", EventName = "RendezvousClientDetached")]
    public static partial void ClientDetached(ILogger logger, string node, string reason, double delaySeconds);

    [LoggerMessage(3222, LogLevel.Debug, "Relay {Circuit}: {Caller} wants a relayed session.", EventName = "RendezvousClientIncomingRelay")]
    public static partial void ClientIncomingRelay(ILogger logger, long circuit, string caller);

    [LoggerMessage(3223, LogLevel.Information, "Relay {Circuit} ended by the rendezvous node: {Reason}.", EventName = "RendezvousClientRelayEnded")]
    public static partial void ClientRelayEnded(ILogger logger, long circuit, string reason);

    [LoggerMessage(3225, LogLevel.Information, "Punch attempt {Number} with {Peer}: {Outcome} ({Detail}).", EventName = "RendezvousPunchAttempt")]
    public static partial void PunchAttempt(ILogger logger, string peer, int number, PeerLink.Sessions.PathAttemptOutcome outcome, string detail);

    [LoggerMessage(3226, LogLevel.Information, "Session with {Peer}: {Path}.", EventName = "RendezvousPathChanged")]
    public static partial void PathChanged(ILogger logger, string peer, string path);

    [LoggerMessage(3224, LogLevel.Warning, "Relay {Circuit}: could not open the relay connection: {Reason}.", EventName = "RendezvousClientRelayFailed")]
    public static partial void ClientRelayFailed(ILogger logger, long circuit, string reason);

    [LoggerMessage(3240, LogLevel.Warning, "The rendezvous tier failed to {Action}: {Reason}.", EventName = "RendezvousTierFailed")]
    public static partial void TierFailed(ILogger logger, string action, string reason);

    [LoggerMessage(3241, LogLevel.Information, "Connect {Caller} → {Target} routed through the tier: relay at {RelayEndPoint}, {Outcome}.", EventName = "RendezvousRelayRouted")]
    public static partial void RelayRouted(ILogger logger, string caller, string target, string relayEndPoint, string outcome);

    [LoggerMessage(3242, LogLevel.Information, "Rendezvous node {Node} at {EndPoint} did not take the attachment: {Reason}; trying the next.", EventName = "RendezvousClientNodeUnreachable")]
    public static partial void ClientNodeUnreachable(ILogger logger, string node, EndPoint endPoint, string reason);
}
