using System;
using System.Collections.Generic;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Sessions;

/// <summary>What a full send queue does to a sender.</summary>
public enum SendQueueFullMode
{
    /// <summary>The send waits until the peer has taken enough (backpressure).</summary>
    Wait = 0,

    /// <summary>The send fails at once with <see cref="PeerLinkError.SendQueueFull"/>.</summary>
    Fail = 1,
}

/// <summary>Settings of secure sessions. Validated and copied when a session starts, so later changes have no effect on it.</summary>
public sealed class SecureSessionOptions
{
    /// <summary>This peer's identity (its static X25519 key).</summary>
    /// <remarks>
    /// Required by <see cref="SecureSession.ConnectAsync"/> and <see cref="SecureSession.AcceptAsync"/>. A
    /// <see cref="PeerNode"/> uses its own identity and leaves this property as it is.
    /// </remarks>
    public PeerIdentity? Identity { get; set; }

    /// <summary>
    /// A key shared by all devices of one installation (Noise psk: XXpsk3, IKpsk2). When set, a responder accepts only
    /// peers that have it, and peers without it cannot complete a handshake.
    /// </summary>
    /// <remarks>Defaults to null (no network key). Borrowed: keep it undisposed while sessions use these options.</remarks>
    public NetworkKey? NetworkKey { get; set; }

    /// <summary>The application id sent in the handshake. Peers of different applications refuse each other.</summary>
    /// <remarks>Defaults to "peerlink". At most 64 characters.</remarks>
    public string ApplicationId { get; set; } = "peerlink";

    /// <summary>Largest message accepted or sent; larger ones are split into frames and reassembled up to this size.</summary>
    /// <remarks>Defaults to 1 MiB. From 1 to 64 MiB. The sender honours the smaller of both peers' limits.</remarks>
    public int MaxMessageSize { get; set; } = 1024 * 1024;

    /// <summary>Whether to use AES-GCM instead of ChaCha20-Poly1305 when initiating.</summary>
    /// <remarks>Defaults to false; AES-GCM is used anyway where the platform lacks ChaCha20-Poly1305. Responders accept both.</remarks>
    public bool PreferAesGcm { get; set; }

    /// <summary>
    /// Whether a <see cref="PeerNode"/> agrees on AES-256-GCM with peers that, like this device, have AES instructions:
    /// every hello announces them (feature "aes-hw"), the node remembers which peers did, and its later IK connections
    /// to such a peer use AES-GCM. The first connection to a peer, and every connection to or from a peer without AES
    /// instructions, keeps ChaCha20-Poly1305, which is faster in software.
    /// </summary>
    /// <remarks>Defaults to true. Has no effect where this device lacks AES instructions, or when <see cref="PreferAesGcm"/> is set.</remarks>
    public bool AgreeOnAesGcm { get; set; } = true;

    /// <summary>How long a handshake may take, from the preamble to the session being established.</summary>
    /// <remarks>Defaults to 10 seconds.</remarks>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>A PING is sent when nothing else was sent for this long.</summary>
    /// <remarks>Defaults to 15 seconds.</remarks>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>The session is closed as dead (<see cref="PeerLinkError.PeerTimeout"/>) when nothing arrives for this long.</summary>
    /// <remarks>Defaults to 45 seconds. Must exceed <see cref="KeepAliveInterval"/>.</remarks>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(45);

    /// <summary>When not null, only these peers may open a session with this one (checked on both sides).</summary>
    /// <remarks>Defaults to null (anyone with the network key, if one is set). Combined with <see cref="Authorize"/>: both must allow.</remarks>
    public IReadOnlySet<PeerId>? AllowedPeers { get; set; }

    /// <summary>
    /// Decides whether an authenticated peer may have a session, before any application data flows. A refused peer
    /// learns only that it was refused.
    /// </summary>
    /// <remarks>Defaults to null (allow). For outgoing IK sessions the expected PeerId counts as allowed.</remarks>
    public Func<PeerId, CancellationToken, ValueTask<bool>>? Authorize { get; set; }

    /// <summary>
    /// Whether an IK connect whose responder could not decrypt it (its key changed) retries once with XX on a new
    /// connection. The new key must then pass <see cref="AllowedPeers"/> and <see cref="Authorize"/>.
    /// </summary>
    /// <remarks>Defaults to false: the connect fails with <see cref="PeerLinkError.RemoteKeyMismatch"/>.</remarks>
    public bool FallbackToXX { get; set; }

    /// <summary>Bytes queued for sending before senders wait or fail (<see cref="SendQueueFullMode"/>).</summary>
    /// <remarks>Defaults to 1 MiB. A single message larger than this is still accepted into an empty queue.</remarks>
    public int MaxSendQueueBytes { get; set; } = 1024 * 1024;

    /// <summary>What a sender does when the send queue is full.</summary>
    /// <remarks>Defaults to <see cref="SendQueueFullMode.Wait"/>.</remarks>
    public SendQueueFullMode SendQueueFullMode { get; set; }

    /// <summary>Received bytes queued for the application before the session stops reading (the peer then waits).</summary>
    /// <remarks>Defaults to 1 MiB.</remarks>
    public int MaxReceiveQueueBytes { get; set; } = 1024 * 1024;

    /// <summary>Rekey (Noise REKEY, announced to the peer) after this many transport messages under one key.</summary>
    /// <remarks>Defaults to 2^20.</remarks>
    public long RekeyAfterMessages { get; set; } = 1 << 20;

    /// <summary>Rekey after this many bytes under one key.</summary>
    /// <remarks>Defaults to 1 GiB.</remarks>
    public long RekeyAfterBytes { get; set; } = 1L << 30;

    /// <summary>Rekey after a key has been in use this long.</summary>
    /// <remarks>Defaults to 2 minutes.</remarks>
    public TimeSpan RekeyInterval { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>How long <see cref="SecureSession.RequestAsync"/> waits for its response.</summary>
    /// <remarks>Defaults to 30 seconds.</remarks>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a graceful close waits for the peer's CLOSE before the connection is dropped.</summary>
    /// <remarks>Defaults to 5 seconds.</remarks>
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The serializer of typed messages (<see cref="SecureSession.SendAsync{T}(T, CancellationToken)"/>,
    /// <see cref="PeerMessage.Deserialize{T}()"/>): set your own for other naming policies, converters or security settings.
    /// </summary>
    /// <remarks>
    /// Defaults to Nerdbank.MessagePack's defaults: properties by name, a depth limit, hash-collision-resistant maps.
    /// Both peers must use compatible settings.
    /// </remarks>
    public Nerdbank.MessagePack.MessagePackSerializer Serializer { get; set; } = Messaging.TypedMessages.DefaultSerializer;

    /// <summary>The clock for the handshake, keepalive, idle, request and close timeouts and the rekey interval.</summary>
    /// <remarks>Defaults to <see cref="TimeProvider.System"/>.</remarks>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Checks the options and returns a copy that later changes to this object do not affect.</summary>
    /// <param name="paramName">The argument to name in an exception.</param>
    /// <param name="identity">When not null, the copy's identity (a node's own); this object is left as it is.</param>
    internal SecureSessionOptions Validate(string paramName, PeerIdentity? identity = null)
    {
        identity ??= Identity;
        if (identity is null)
        {
            throw new ArgumentException("Identity is required.", paramName);
        }

        if (string.IsNullOrEmpty(ApplicationId) || ApplicationId.Length > 64)
        {
            throw new ArgumentException("ApplicationId must have 1 to 64 characters.", paramName);
        }

        Check(MaxMessageSize is >= 1 and <= 64 * 1024 * 1024, "MaxMessageSize must be from 1 byte to 64 MiB.");
        Check(HandshakeTimeout > TimeSpan.Zero && CloseTimeout > TimeSpan.Zero && RequestTimeout > TimeSpan.Zero, "HandshakeTimeout, CloseTimeout and RequestTimeout must be positive.");
        Check(KeepAliveInterval > TimeSpan.Zero && IdleTimeout > KeepAliveInterval, "KeepAliveInterval must be positive and IdleTimeout longer.");
        Check(MaxSendQueueBytes >= 1024 && MaxReceiveQueueBytes >= 1024, "MaxSendQueueBytes and MaxReceiveQueueBytes must be at least 1024.");
        Check(RekeyAfterMessages >= 1 && RekeyAfterBytes >= 65536 && RekeyInterval > TimeSpan.Zero, "RekeyAfterMessages must be positive, RekeyAfterBytes at least 64 KiB and RekeyInterval positive.");
        Check(Enum.IsDefined(SendQueueFullMode) && TimeProvider is not null, "SendQueueFullMode must be defined and TimeProvider set.");
        if (Serializer is null)
        {
            throw new ArgumentException("Serializer must be set.", paramName);
        }


        var copy = (SecureSessionOptions)MemberwiseClone();
        copy.Identity = identity;
        _ = NetworkKey?.Bytes;      // a disposed key is the caller's mistake: ObjectDisposedException now, not a failed handshake later
        copy.PreferAesGcm = PreferAesGcm || !ChaCha20Poly1305.IsSupported;
        return copy;

        void Check(bool condition, string message)
        {
            if (!condition)
            {
                throw new ArgumentOutOfRangeException(paramName, message);
            }
        }
    }
}
