using System;
using Microsoft.Extensions.Logging;

namespace PeerLink.Discovery.Mdns;

/// <summary>Log messages of mDNS and DNS-SD. Event ids 4000-4999 (the Discovery range).</summary>
internal static partial class MdnsLog
{
    [LoggerMessage(4001, LogLevel.Debug, "mDNS uses interface {Interface} (index {Index}) with {Addresses}.", EventName = "MdnsInterface")]
    public static partial void UsingInterface(ILogger logger, string @interface, int index, string addresses);

    [LoggerMessage(4002, LogLevel.Warning, "mDNS could not {Family} multicast group membership change on {Interface}: {Error}.", EventName = "MdnsMembershipFailed")]
    public static partial void MembershipFailed(ILogger logger, string @interface, string family, string error);

    [LoggerMessage(4003, LogLevel.Debug, "mDNS send on {Interface} to {Destination} failed: {Error}.", EventName = "MdnsSendFailed")]
    public static partial void SendFailed(ILogger logger, string @interface, string destination, string error);

    [LoggerMessage(4004, LogLevel.Debug, "mDNS receive failed: {Error}; the socket keeps serving.", EventName = "MdnsReceiveFailed")]
    public static partial void ReceiveFailed(ILogger logger, string error);

    [LoggerMessage(4005, LogLevel.Error, "mDNS packet handling failed.", EventName = "MdnsHandlerFailed")]
    public static partial void PacketHandlerFailed(ILogger logger, Exception exception);

    [LoggerMessage(4006, LogLevel.Debug, "Dropped a {Length}-byte packet from {Source} on {Interface}: {Reason}", EventName = "MdnsPacketDropped")]
    public static partial void PacketDropped(ILogger logger, int length, string source, string @interface, string reason);

    [LoggerMessage(4007, LogLevel.Information, "The name {Name} is taken on the network ({Reason}); renamed to {NewName}.", EventName = "MdnsRenamed")]
    public static partial void Renamed(ILogger logger, string name, string reason, string newName);

    [LoggerMessage(4008, LogLevel.Information, "Advertising {Name} after probing.", EventName = "MdnsAnnounced")]
    public static partial void Announced(ILogger logger, string name);

    [LoggerMessage(4009, LogLevel.Debug, "Lost the probe tie-break for {Name}; probing again in one second.", EventName = "MdnsProbeDeferred")]
    public static partial void ProbeDeferred(ILogger logger, string name);

    [LoggerMessage(4010, LogLevel.Debug, "The mDNS cache is full ({Max} records); ignoring new records until some expire.", EventName = "MdnsCacheFull")]
    public static partial void CacheFull(ILogger logger, int max);

    [LoggerMessage(4011, LogLevel.Error, "An mDNS work item failed.", EventName = "MdnsWorkFailed")]
    public static partial void WorkFailed(ILogger logger, Exception exception);

    [LoggerMessage(4012, LogLevel.Information, "Interfaces changed; probing and announcing again.", EventName = "MdnsInterfacesChanged")]
    public static partial void InterfacesChanged(ILogger logger);

    [LoggerMessage(4013, LogLevel.Debug, "Skipped {Count} malformed record(s) in a packet from {Source} on {Interface} and used the rest: {Reason}", EventName = "MdnsRecordsSkipped")]
    public static partial void RecordsSkipped(ILogger logger, int count, string source, string @interface, string reason);
}
