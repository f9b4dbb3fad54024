using System.Net;
using Microsoft.Extensions.Logging;

namespace PeerLink.Nat.Stun;

/// <summary>Log messages of PeerLink.Nat. Event ids 3000-3999 belong to this package.</summary>
internal static partial class NatLog
{
    [LoggerMessage(3001, LogLevel.Information, "STUN server listening on UDP {EndPoint}.", EventName = "StunServerListening")]
    public static partial void ServerListening(ILogger logger, EndPoint endPoint);

    [LoggerMessage(3002, LogLevel.Debug, "Dropped a {Length}-byte datagram from {Remote} that is not a valid STUN message: {Reason}", EventName = "StunDatagramDropped")]
    public static partial void DatagramDropped(ILogger logger, int length, EndPoint remote, string reason);

    [LoggerMessage(3003, LogLevel.Debug, "Answered a Binding request from {Remote} with error {Code}.", EventName = "StunErrorAnswered")]
    public static partial void ErrorAnswered(ILogger logger, EndPoint remote, int code);

    [LoggerMessage(3004, LogLevel.Warning, "STUN server receive loop on {EndPoint} failed; the socket is closed.", EventName = "StunReceiveLoopFailed")]
    public static partial void ReceiveLoopFailed(ILogger logger, EndPoint endPoint, System.Exception exception);

    [LoggerMessage(3010, LogLevel.Debug, "STUN Binding to {Server}: transmission {Attempt}, waiting {Timeout} ms.", EventName = "StunTransmission")]
    public static partial void Transmission(ILogger logger, EndPoint server, int attempt, int timeout);
}
