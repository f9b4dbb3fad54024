namespace PeerLink;

/// <summary>What went wrong in a <see cref="PeerLinkException"/>.</summary>
/// <remarks>Values are stable: new codes are only ever appended.</remarks>
public enum PeerLinkError
{
    /// <summary>A failure that has no more specific code.</summary>
    Unknown = 0,

    /// <summary>The remote endpoint refused the connection.</summary>
    ConnectionRefused = 1,

    /// <summary>The remote peer reset the connection.</summary>
    ConnectionReset = 2,

    /// <summary>The connection was aborted locally or by the transport.</summary>
    ConnectionAborted = 3,

    /// <summary>The Noise handshake failed: wrong keys, a wrong network key (psk), or a malformed handshake message.</summary>
    HandshakeFailed = 4,

    /// <summary>The handshake did not complete in time.</summary>
    HandshakeTimeout = 5,

    /// <summary>A message failed authentication (bad tag): it was tampered with, replayed, or encrypted under another key.</summary>
    DecryptionFailed = 6,

    /// <summary>A message or frame is larger than the protocol or the configured limit allows.</summary>
    MessageTooLarge = 7,

    /// <summary>The input ended in the middle of a frame or message.</summary>
    Truncated = 8,

    /// <summary>The peer broke the protocol.</summary>
    ProtocolViolation = 9,

    /// <summary>A cipher state used up its nonces; the session must be rekeyed or re-established.</summary>
    NonceExhausted = 10,

    /// <summary>MessagePack data is malformed, truncated, nested too deeply, or of an unexpected type.</summary>
    InvalidMessagePack = 11,

    /// <summary>An identity file has the wrong size or format, or its keys do not match.</summary>
    InvalidIdentityFile = 12,

    /// <summary>An identity file can be read by other users than its owner.</summary>
    InsecureIdentityFile = 13,

    /// <summary>A server (STUN, and later rendezvous) did not answer within its retransmission schedule or timeout.</summary>
    StunTimeout = 14,

    /// <summary>A server (STUN, and later rendezvous) answered with an error, or with a response that does not verify.</summary>
    StunError = 15,

    /// <summary>The peer refused this session (authorization, application or network key). It says no more than that.</summary>
    PeerRefused = 16,

    /// <summary>The peer could not decrypt an IK handshake: its static key is not the expected PeerId, or the network key differs.</summary>
    RemoteKeyMismatch = 17,

    /// <summary>Nothing arrived from the peer within the idle timeout: it is gone.</summary>
    PeerTimeout = 18,

    /// <summary>The send queue is full and the session is set to fail rather than wait.</summary>
    SendQueueFull = 19,

    /// <summary>The session is closed (by either side); nothing more can be sent.</summary>
    SessionClosed = 20,

    /// <summary>A request got no response within its timeout.</summary>
    RequestTimeout = 21,

    /// <summary>No component of the node (such as mDNS discovery) knows where the peer is, or none of its addresses answered.</summary>
    PeerNotFound = 22,

    /// <summary>The local address and port are already in use by another socket (another program, or another node).</summary>
    AddressInUse = 23,

    /// <summary>The local address does not belong to this host, or binding it is not permitted.</summary>
    AddressNotAvailable = 24,

    /// <summary>Connecting took longer than the connect timeout, or the network timed the connection out.</summary>
    ConnectionTimeout = 25,

    /// <summary>No route to the remote host or network, or its name could not be resolved.</summary>
    HostUnreachable = 26,

    /// <summary>
    /// A relay limit of the rendezvous node was reached (bytes or duration of a relayed session, relayed sessions per
    /// device, connect requests per second); the node ended or refused the relayed path.
    /// </summary>
    RelayLimitExceeded = 27,

    /// <summary>The node is not attached to its rendezvous node (still attaching, or the rendezvous node is unreachable).</summary>
    NotAttached = 28,

    /// <summary>
    /// The rendezvous node could not ask the other nodes of its tier where a peer is (its backplane, such as NATS, did
    /// not answer in time); the peer may be online. Try again later.
    /// </summary>
    TierUnavailable = 29,
}
