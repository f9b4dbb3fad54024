// The one place where socket failures become PeerLinkException codes, for every transport: TCP sessions, the mDNS and
// STUN UDP sockets, and the datagram and rendezvous transports to come. In the manner of Kestrel's socket transport
// (IsConnectionResetError / IsConnectionAbortError) and System.Net.Quic's QuicError: the code says what happened.
using System;
using System.Net.Sockets;

namespace PeerLink.Transport;

/// <summary>Maps socket errors to <see cref="PeerLinkError"/> codes and messages that say what happened.</summary>
internal static class SocketErrors
{
    /// <summary>The code for a socket error.</summary>
    public static PeerLinkError ToError(SocketError error) => error switch
    {
        SocketError.AddressAlreadyInUse => PeerLinkError.AddressInUse,
        SocketError.AddressNotAvailable or SocketError.AccessDenied => PeerLinkError.AddressNotAvailable,
        SocketError.ConnectionRefused => PeerLinkError.ConnectionRefused,
        SocketError.TimedOut => PeerLinkError.ConnectionTimeout,
        SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.HostDown or SocketError.NetworkDown
            or SocketError.HostNotFound or SocketError.NoData or SocketError.TryAgain => PeerLinkError.HostUnreachable,
        SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted or SocketError.NetworkReset
            or SocketError.NotConnected or SocketError.Disconnecting => PeerLinkError.ConnectionReset,
        // On Unix a socket disposed under a pending operation reports InvalidArgument (Kestrel treats it as an abort).
        SocketError.OperationAborted or SocketError.Interrupted or SocketError.InvalidArgument => PeerLinkError.ConnectionAborted,
        SocketError.MessageSize => PeerLinkError.MessageTooLarge,
        _ => PeerLinkError.Unknown,
    };

    /// <summary>
    /// The exception for a failure of <paramref name="operation"/> (for example "Cannot listen on 0.0.0.0:5353"). A
    /// <see cref="SocketException"/> keeps its code; <see cref="ObjectDisposedException"/> is an abort; anything else is
    /// <see cref="PeerLinkError.Unknown"/>, with the original as the inner exception.
    /// </summary>
    public static PeerLinkException Map(Exception exception, string operation)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (exception is PeerLinkException known)
        {
            return known;
        }

        (PeerLinkError error, string what) = exception switch
        {
            SocketException s => (ToError(s.SocketErrorCode), Describe(s.SocketErrorCode)),
            ObjectDisposedException => (PeerLinkError.ConnectionAborted, "the socket was closed"),
            _ => (PeerLinkError.Unknown, exception.GetType().Name),
        };
        return new PeerLinkException(error, $"{operation}: {what}.", exception);
    }

    /// <summary>Whether the error only means that the other side (or a NAT on the way) reset or dropped the exchange.</summary>
    public static bool IsResetOrAbort(Exception exception) =>
        exception is ObjectDisposedException
        || exception is SocketException s && ToError(s.SocketErrorCode) is PeerLinkError.ConnectionReset or PeerLinkError.ConnectionAborted;

    /// <summary>
    /// Whether a UDP receive or send failed only because of one datagram: an ICMP port unreachable reported on the next
    /// call (ConnectionReset/ConnectionRefused), or a datagram larger than the buffer. The socket stays usable.
    /// </summary>
    public static bool IsTransientDatagramError(SocketException exception) =>
        exception.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionRefused or SocketError.MessageSize
            or SocketError.HostUnreachable or SocketError.NetworkUnreachable;

    private static string Describe(SocketError error) => error switch
    {
        SocketError.AddressAlreadyInUse => "the address is already in use",
        SocketError.AddressNotAvailable => "the address is not available on this host",
        SocketError.AccessDenied => "permission denied",
        SocketError.ConnectionRefused => "the connection was refused (nothing listens there)",
        SocketError.TimedOut => "timed out",
        SocketError.HostUnreachable or SocketError.HostDown => "the host is unreachable",
        SocketError.NetworkUnreachable or SocketError.NetworkDown => "the network is unreachable",
        SocketError.HostNotFound or SocketError.NoData or SocketError.TryAgain => "the host name could not be resolved",
        SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.NetworkReset => "the connection was reset",
        SocketError.Shutdown or SocketError.NotConnected or SocketError.Disconnecting => "the connection is shut down",
        SocketError.OperationAborted or SocketError.Interrupted or SocketError.InvalidArgument => "the operation was aborted",
        SocketError.MessageSize => "the datagram is too large",
        _ => $"socket error {error}",
    };
}
