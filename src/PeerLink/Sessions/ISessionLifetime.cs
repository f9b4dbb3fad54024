using System;

namespace PeerLink.Sessions;

/// <summary>
/// How the sender and the receiver report the end of a session to the session that owns them (the one way back up).
/// An interface on the session rather than delegates: three fewer objects held by every live session.
/// </summary>
internal interface ISessionLifetime
{
    /// <summary>The session failed with <paramref name="error"/>; <paramref name="abortConnection"/> resets the connection too.</summary>
    void Fail(Exception error, bool abortConnection);

    /// <summary>The peer closed the session in order.</summary>
    void Complete();
}
