using Microsoft.Extensions.Logging;

namespace PeerLink.Sessions;

/// <summary>Log messages of sessions. Event ids 2000-2999 (Noise and sessions). Never keys or plaintext.</summary>
internal static partial class SessionLog
{
    [LoggerMessage(2001, LogLevel.Debug, "Connection {ConnectionId}: session established with {PeerFingerprint} over {Protocol}.", EventName = "SessionEstablished")]
    public static partial void Established(ILogger logger, string connectionId, string peerFingerprint, string protocol);

    [LoggerMessage(2002, LogLevel.Warning, "Connection {ConnectionId}: handshake failed ({Error}): {Reason}", EventName = "HandshakeFailed")]
    public static partial void HandshakeFailed(ILogger logger, string connectionId, PeerLinkError error, string reason);

    [LoggerMessage(2003, LogLevel.Information, "Connection {ConnectionId}: refused peer {PeerFingerprint}.", EventName = "PeerRefused")]
    public static partial void Refused(ILogger logger, string connectionId, string peerFingerprint);

    [LoggerMessage(2004, LogLevel.Warning, "Connection {ConnectionId}: session failed ({Error}): {Reason}", EventName = "SessionFailed")]
    public static partial void ReceiveFailed(ILogger logger, string connectionId, PeerLinkError error, string reason);

    [LoggerMessage(2005, LogLevel.Debug, "Connection {ConnectionId}: sent CLOSE ({Code}).", EventName = "CloseSent")]
    public static partial void CloseSent(ILogger logger, string connectionId, SessionCloseCode code);

    [LoggerMessage(2006, LogLevel.Debug, "Connection {ConnectionId}: received CLOSE ({Code}).", EventName = "CloseReceived")]
    public static partial void CloseReceived(ILogger logger, string connectionId, SessionCloseCode code);

    [LoggerMessage(2007, LogLevel.Debug, "Connection {ConnectionId}: rekeyed the {Direction} key.", EventName = "Rekeyed")]
    public static partial void Rekeyed(ILogger logger, string connectionId, string direction);

    [LoggerMessage(2008, LogLevel.Warning, "Connection {ConnectionId}: nothing received for {Seconds} s; closing the session as dead.", EventName = "PeerTimedOut")]
    public static partial void PeerTimedOut(ILogger logger, string connectionId, double seconds);

}
