using System;
using System.Collections.Generic;

namespace PeerLink.Sessions;

/// <summary>How a session reaches its peer.</summary>
public enum SessionPathKind
{
    /// <summary>The connection the session was opened on: a direct connection to an address (on the LAN, by mDNS, or given).</summary>
    Direct = 0,

    /// <summary>Through a rendezvous node, which forwards the session's ciphertext.</summary>
    Relayed = 1,

    /// <summary>A direct TCP connection that replaced the relay (a punched hole, or a reachable address).</summary>
    DirectTcp = 2,

    /// <summary>Encrypted datagrams straight to the peer's UDP address (a UDP session, or a punched UDP hole).</summary>
    DirectUdp = 3,
}

/// <summary>How one attempt to move a session to a direct path ended, in the manner of libp2p's hole-punching measurements.</summary>
public enum PathAttemptOutcome
{
    /// <summary>The attempt succeeded with the connection this side opened.</summary>
    Success = 0,

    /// <summary>The attempt succeeded with the connection the peer opened (this side accepted it).</summary>
    Reversed = 1,

    /// <summary>No TCP connection formed within the attempt's time (a NAT dropped the packets).</summary>
    NoConnection = 2,

    /// <summary>A connection formed but could not be made a path of this session (wrong peer, timeout, reset).</summary>
    Failed = 3,

    /// <summary>The session ended or the peer stopped answering before the attempt finished.</summary>
    Cancelled = 4,
}

/// <summary>One attempt to reach the peer directly.</summary>
/// <param name="Time">When the attempt ended.</param>
/// <param name="Number">The attempt's number in this session, from 1.</param>
/// <param name="Outcome">How it ended.</param>
/// <param name="Detail">What happened, for people; never keys or plaintext.</param>
public sealed record PathAttempt(DateTimeOffset Time, int Number, PathAttemptOutcome Outcome, string Detail);

/// <summary>The path a session uses now, why, and the attempts that led there.</summary>
public sealed class SessionPath
{
    internal SessionPath(SessionPathKind kind, string description, IReadOnlyList<PathAttempt> attempts)
    {
        Kind = kind;
        Description = description;
        Attempts = attempts;
    }

    /// <summary>The kind of path.</summary>
    public SessionPathKind Kind { get; }

    /// <summary>
    /// The path and the reason for it, in words a user can act on: for example "relayed: 3 punch attempts made no
    /// connection (the peer's NAT drops unsolicited connections); the next in 60 s".
    /// </summary>
    public string Description { get; }

    /// <summary>The attempts to reach the peer directly, oldest first (at most the last 16).</summary>
    public IReadOnlyList<PathAttempt> Attempts { get; }

    /// <inheritdoc/>
    public override string ToString() => Description;
}

/// <summary>How a message is delivered (<see cref="SecureSession.SendAsync(System.ReadOnlyMemory{byte}, MessageDelivery, System.Threading.CancellationToken)"/>).</summary>
public enum MessageDelivery
{
    /// <summary>Every message arrives, once, in the order sent (the default, and the only mode over a stream).</summary>
    ReliableOrdered = 0,

    /// <summary>At most once, in any order, possibly not at all; one datagram, never resent. For telemetry that a newer value replaces.</summary>
    Unreliable = 1,
}
