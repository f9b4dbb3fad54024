using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace PeerLink.Transport;

/// <summary>Log messages of the transports. Event ids 1000-1999.</summary>
internal static partial class TransportLog
{
    [LoggerMessage(1001, LogLevel.Debug, "Connection {ConnectionId} received FIN.", EventName = "ConnectionReadFin")]
    public static partial void ConnectionReadFin(ILogger logger, string connectionId);

    [LoggerMessage(1002, LogLevel.Debug, "Connection {ConnectionId} failed: {SocketError}.", EventName = "ConnectionError")]
    public static partial void ConnectionError(ILogger logger, string connectionId, SocketError socketError);

    [LoggerMessage(1003, LogLevel.Debug, "Connection {ConnectionId} aborted.", EventName = "ConnectionAborted")]
    public static partial void ConnectionAborted(ILogger logger, string connectionId);

    [LoggerMessage(1004, LogLevel.Information, "Listening on TCP {EndPoint}.", EventName = "TcpListening")]
    public static partial void Listening(ILogger logger, EndPoint endPoint);
}
