using System;
using System.IO;
using PeerLink.Sessions;

namespace PeerLink;

/// <summary>
/// The one exception type for network, peer and protocol failures in PeerLink. <see cref="Error"/> says what happened.
/// </summary>
/// <remarks>
/// Misuse by the caller raises the usual BCL exceptions (<see cref="ArgumentException"/>,
/// <see cref="InvalidOperationException"/>, <see cref="ObjectDisposedException"/>) instead.
/// Messages never contain keys or plaintext.
/// </remarks>
public sealed class PeerLinkException : IOException
{
    /// <summary>Creates an exception with an error code and a message.</summary>
    /// <param name="error">What went wrong.</param>
    /// <param name="message">A description for people; it must not contain secrets.</param>
    /// <param name="innerException">The underlying failure, if any.</param>
    public PeerLinkException(PeerLinkError error, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Error = error;
    }

    internal PeerLinkException(PeerLinkError error, string message, SessionCloseCode? remoteCloseCode, Exception? innerException = null)
        : base(message, innerException)
    {
        Error = error;
        RemoteCloseCode = remoteCloseCode;
    }

    /// <summary>What went wrong.</summary>
    public PeerLinkError Error { get; }

    /// <summary>
    /// When the peer closed the session, the reason it gave in its CLOSE record (in the manner of
    /// <c>QuicException.ApplicationErrorCode</c>); null when the failure did not come from the peer's close.
    /// </summary>
    public SessionCloseCode? RemoteCloseCode { get; }
}
