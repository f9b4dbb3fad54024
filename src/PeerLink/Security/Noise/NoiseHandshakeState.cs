// Noise HandshakeState (Noise Protocol Framework revision 34, §5.3), with psk handling (§9) and Bob-initiated
// patterns (§7.2, §10.2). Pure state machine: no I/O, the caller moves the messages.
using System;
using System.Collections.Generic;
using System.Security.Cryptography;
using PeerLink.Internal;

namespace PeerLink.Security.Noise;

/// <summary>The two transport CipherStates of a finished handshake, oriented for one side. For one-way patterns one of them is null.</summary>
public sealed class NoiseTransport : IDisposable
{
    internal NoiseTransport(NoiseCipherState? send, NoiseCipherState? receive)
    {
        Send = send;
        Receive = receive;
    }

    /// <summary>Encrypts what this side sends; null for the responder of a one-way pattern.</summary>
    public NoiseCipherState? Send { get; }

    /// <summary>Decrypts what this side receives; null for the initiator of a one-way pattern.</summary>
    public NoiseCipherState? Receive { get; }

    /// <summary>Erases both keys.</summary>
    public void Dispose()
    {
        Send?.Dispose();
        Receive?.Dispose();
    }
}

/// <summary>
/// One side of a Noise handshake. Call <see cref="WriteMessage"/> and <see cref="ReadMessage"/> in the order the
/// pattern says (<see cref="IsMyTurnToWrite"/>), then <see cref="Split"/>. Any failure poisons the state: later calls
/// throw <see cref="InvalidOperationException"/>. Not thread-safe. Messages are at most 65535 bytes (Noise §3).
/// </summary>
public sealed class NoiseHandshakeState : IDisposable
{
    private const int DhLength = NoiseKeyPair.KeySize;

    private readonly NoiseProtocol _protocol;
    private readonly HandshakePattern _pattern;
    private readonly NoiseSymmetricState _symmetric;
    private readonly bool _initiator;
    private readonly bool _isAlice;
    private readonly NoiseKeyPair? _s;          // borrowed from the caller
    private byte[]? _rs;
    private readonly byte[][] _psks;
    private NoiseKeyPair? _e;
    private bool _ownsEphemeral;                // true when _e was generated here (then it is disposed here)
    private byte[]? _re;
    private int _messageIndex;
    private int _pskIndex;
    private bool _failed;
    private bool _split;
    private bool _disposed;

    /// <summary>Initialize(): sets up one side of a handshake and mixes the prologue and the pre-message keys into h.</summary>
    /// <param name="protocol">The protocol, with its pattern.</param>
    /// <param name="initiator">True for the party that sends the first handshake message.</param>
    /// <param name="prologue">Data both sides must agree on (for example a protocol version); it is mixed into h and never sent.</param>
    /// <param name="localStatic">
    /// This side's static key pair, when the pattern uses one. The handshake borrows it: keep it alive (undisposed) until
    /// this handshake is disposed.
    /// </param>
    /// <param name="remoteStatic">The peer's 32-byte static public key, when the pattern has it in advance (the initiator of IK, NK, KK, …).</param>
    /// <param name="psks">The 32-byte pre-shared keys, one per psk modifier, in order; empty or null when there are none.</param>
    /// <exception cref="ArgumentNullException"><paramref name="protocol"/> is null.</exception>
    /// <exception cref="ArgumentException">A key the pattern needs is missing, or the psk count or length is wrong.</exception>
    public NoiseHandshakeState(
        NoiseProtocol protocol,
        bool initiator,
        ReadOnlySpan<byte> prologue,
        NoiseKeyPair? localStatic = null,
        ReadOnlySpan<byte> remoteStatic = default,
        IReadOnlyList<byte[]>? psks = null)
        : this(protocol, initiator, prologue, localStatic, remoteStatic, psks, null, default)
    {
    }

    /// <summary>The full form, for test vectors and fallback: fixed ephemeral keys and pre-message ephemerals.</summary>
    internal static NoiseHandshakeState Create(
        NoiseProtocol protocol,
        bool initiator,
        ReadOnlySpan<byte> prologue,
        NoiseKeyPair? localStatic = null,
        ReadOnlySpan<byte> remoteStatic = default,
        IReadOnlyList<byte[]>? psks = null,
        NoiseKeyPair? localEphemeral = null,
        ReadOnlySpan<byte> remoteEphemeral = default)
        => new(protocol, initiator, prologue, localStatic, remoteStatic, psks, localEphemeral, remoteEphemeral);

    /// <param name="protocol">The protocol, with its pattern.</param>
    /// <param name="initiator">True for the party that sends the first handshake message.</param>
    /// <param name="prologue">Data both sides must agree on; it is mixed into h and never sent.</param>
    /// <param name="localStatic">This side's static key pair, if the pattern uses one. Borrowed, never disposed here.</param>
    /// <param name="remoteStatic">The peer's static public key, when the pattern has it as a pre-message.</param>
    /// <param name="psks">The 32-byte pre-shared keys, one per psk token, in order.</param>
    /// <param name="localEphemeral">A fixed ephemeral key pair (test vectors, or fallback where it was already sent), borrowed; otherwise one is generated, owned and disposed here.</param>
    /// <param name="remoteEphemeral">The peer's ephemeral public key when it is a pre-message (fallback).</param>
    private NoiseHandshakeState(
        NoiseProtocol protocol,
        bool initiator,
        ReadOnlySpan<byte> prologue,
        NoiseKeyPair? localStatic,
        ReadOnlySpan<byte> remoteStatic,
        IReadOnlyList<byte[]>? psks,
        NoiseKeyPair? localEphemeral,
        ReadOnlySpan<byte> remoteEphemeral)
    {
        ArgumentNullException.ThrowIfNull(protocol);
        _protocol = protocol;
        _pattern = protocol.Pattern;
        _initiator = initiator;
        _isAlice = initiator != _pattern.BobInitiated;

        NoiseToken[] myPre = _isAlice ? _pattern.AlicePreMessage : _pattern.BobPreMessage;
        NoiseToken[] theirPre = _isAlice ? _pattern.BobPreMessage : _pattern.AlicePreMessage;
        bool needsLocalStatic = Array.IndexOf(myPre, NoiseToken.S) >= 0 || SendsToken(NoiseToken.S);
        if (needsLocalStatic && localStatic is null)
        {
            throw new ArgumentException($"The {_pattern.Name} pattern needs this side's static key.", nameof(localStatic));
        }

        if (Array.IndexOf(theirPre, NoiseToken.S) >= 0 && remoteStatic.Length != DhLength)
        {
            throw new ArgumentException($"The {_pattern.Name} pattern needs the peer's {DhLength}-byte static public key.", nameof(remoteStatic));
        }

        if (Array.IndexOf(myPre, NoiseToken.E) >= 0 && localEphemeral is null)
        {
            throw new ArgumentException($"The {_pattern.Name} pattern needs this side's ephemeral key as a pre-message.", nameof(localEphemeral));
        }

        if (Array.IndexOf(theirPre, NoiseToken.E) >= 0 && remoteEphemeral.Length != DhLength)
        {
            throw new ArgumentException($"The {_pattern.Name} pattern needs the peer's {DhLength}-byte ephemeral public key.", nameof(remoteEphemeral));
        }

        int pskCount = psks?.Count ?? 0;
        if (pskCount != _pattern.PskCount)
        {
            throw new ArgumentException($"The {_pattern.Name} pattern needs {_pattern.PskCount} pre-shared key(s); got {pskCount}.", nameof(psks));
        }

        _psks = new byte[pskCount][];
        for (int i = 0; i < pskCount; i++)
        {
            byte[] psk = psks![i];
            if (psk is null || psk.Length != 32)
            {
                throw new ArgumentException("Each pre-shared key is 32 bytes.", nameof(psks));
            }

            _psks[i] = GC.AllocateArray<byte>(32, pinned: true);
            psk.CopyTo(_psks[i], 0);
        }

        _s = needsLocalStatic ? localStatic : null;
        _rs = remoteStatic.Length == DhLength ? remoteStatic.ToArray() : null;
        _e = localEphemeral;
        _re = remoteEphemeral.Length == DhLength ? remoteEphemeral.ToArray() : null;

        _symmetric = new NoiseSymmetricState(protocol);
        _symmetric.MixHash(prologue);

        // Pre-message keys, the initiator's first (§5.3).
        NoiseToken[] initiatorPre = initiator ? myPre : theirPre;
        NoiseToken[] responderPre = initiator ? theirPre : myPre;
        MixPreMessage(initiatorPre, initiator);
        MixPreMessage(responderPre, !initiator);
    }

    /// <summary>The protocol of this handshake.</summary>
    public NoiseProtocol Protocol => _protocol;

    /// <summary>True for the side that sends the first message.</summary>
    public bool IsInitiator => _initiator;

    /// <summary>True once every handshake message has been written or read.</summary>
    public bool IsCompleted => _messageIndex == _pattern.Messages.Length;

    /// <summary>True when the next handshake message is this side's to write.</summary>
    public bool IsMyTurnToWrite => !IsCompleted && _pattern.Messages[_messageIndex].FromAlice == _isAlice;

    /// <summary>The handshake hash h: after completion, a unique identifier of this session, the same on both sides.</summary>
    public ReadOnlySpan<byte> HandshakeHash => _symmetric.HandshakeHash;

    /// <summary>The peer's static public key, once known (from the start in IK, after its <c>s</c> token in XX); empty before.</summary>
    public ReadOnlySpan<byte> RemoteStaticPublicKey => _rs;

    /// <summary>The peer's ephemeral public key, once received (empty before). A fallback needs it.</summary>
    internal ReadOnlySpan<byte> RemoteEphemeralPublicKey => _re;

    /// <summary>The number of bytes the next message adds to its payload (keys and tags).</summary>
    public int NextMessageOverhead
    {
        get
        {
            CheckUsable();
            return ComputeOverhead(_messageIndex);
        }
    }

    /// <summary>WriteMessage(payload, message_buffer): returns the number of bytes written to <paramref name="message"/>.</summary>
    /// <param name="payload">The payload to send with this message (encrypted once a key is set).</param>
    /// <param name="message">Room for <paramref name="payload"/>.Length + <see cref="NextMessageOverhead"/> bytes.</param>
    /// <exception cref="InvalidOperationException">It is not this side's turn, or the handshake failed or is complete.</exception>
    /// <exception cref="ArgumentException">The message would exceed 65535 bytes, or <paramref name="message"/> is too small.</exception>
    public int WriteMessage(ReadOnlySpan<byte> payload, Span<byte> message)
    {
        CheckUsable();
        if (!IsMyTurnToWrite)
        {
            throw new InvalidOperationException("It is not this side's turn to write a handshake message.");
        }

        int total = payload.Length + ComputeOverhead(_messageIndex);
        if (total > NoiseCipherState.MaxMessageLength)
        {
            throw new ArgumentException($"The payload makes a {total}-byte handshake message; Noise messages are at most {NoiseCipherState.MaxMessageLength} bytes.", nameof(payload));
        }

        if (message.Length < total)
        {
            ThrowHelper.ThrowDestinationTooSmall(nameof(message));
        }

        try
        {
            int offset = 0;
            foreach (NoiseToken token in _pattern.Messages[_messageIndex].Tokens)
            {
                switch (token)
                {
                    case NoiseToken.E:
                        if (_e is null)
                        {
                            _e = NoiseKeyPair.Generate();
                            _ownsEphemeral = true;
                        }

                        _e.PublicKey.CopyTo(message[offset..]);
                        offset += DhLength;
                        MixEphemeral(_e.PublicKey);
                        break;
                    case NoiseToken.S:
                        offset += _symmetric.EncryptAndHash(_s!.PublicKey, message[offset..]);
                        break;
                    default:
                        MixSharedSecret(token);
                        break;
                }
            }

            offset += _symmetric.EncryptAndHash(payload, message[offset..]);
            _messageIndex++;
            return offset;
        }
        catch
        {
            Fail();
            throw;
        }
    }

    /// <summary>
    /// ReadMessage(message, payload_buffer): returns the number of payload bytes written to <paramref name="payload"/>.
    /// A message that fails authentication or is malformed raises <see cref="PeerLinkException"/> and poisons the state.
    /// </summary>
    /// <param name="message">The message as received.</param>
    /// <param name="payload">Room for the payload: <paramref name="message"/>.Length - <see cref="NextMessageOverhead"/> bytes.</param>
    /// <exception cref="PeerLinkException"><see cref="PeerLinkError.DecryptionFailed"/>, <see cref="PeerLinkError.HandshakeFailed"/> or <see cref="PeerLinkError.MessageTooLarge"/>.</exception>
    /// <exception cref="InvalidOperationException">It is not this side's turn, or the handshake failed or is complete.</exception>
    public int ReadMessage(ReadOnlySpan<byte> message, Span<byte> payload)
    {
        CheckUsable();
        if (IsCompleted || IsMyTurnToWrite)
        {
            throw new InvalidOperationException("It is not this side's turn to read a handshake message.");
        }

        try
        {
            if (message.Length > NoiseCipherState.MaxMessageLength)
            {
                ThrowHelper.ThrowPeerLink(PeerLinkError.MessageTooLarge, $"A {message.Length}-byte handshake message exceeds the Noise limit of {NoiseCipherState.MaxMessageLength} bytes.");
            }

            int overhead = ComputeOverhead(_messageIndex);
            if (message.Length < overhead)
            {
                ThrowHelper.ThrowPeerLink(PeerLinkError.HandshakeFailed, $"The handshake message is {message.Length} bytes; this step of {_pattern.Name} needs at least {overhead}.");
            }

            if (payload.Length < message.Length - overhead)
            {
                ThrowHelper.ThrowDestinationTooSmall(nameof(payload));
            }

            Span<byte> rs = stackalloc byte[DhLength];
            int offset = 0;
            foreach (NoiseToken token in _pattern.Messages[_messageIndex].Tokens)
            {
                switch (token)
                {
                    case NoiseToken.E:
                        _re = message.Slice(offset, DhLength).ToArray();
                        offset += DhLength;
                        MixEphemeral(_re);
                        break;
                    case NoiseToken.S:
                        int length = DhLength + (_symmetric.HasKey ? NoiseCipherState.TagSize : 0);
                        _symmetric.DecryptAndHash(message.Slice(offset, length), rs);
                        _rs = rs.ToArray();
                        offset += length;
                        break;
                    default:
                        MixSharedSecret(token);
                        break;
                }
            }

            int written = _symmetric.DecryptAndHash(message[offset..], payload);
            _messageIndex++;
            return written;
        }
        catch
        {
            Fail();
            throw;
        }
    }

    /// <summary>After the last message: the transport cipher states, oriented for this side. Ownership passes to the caller.</summary>
    public NoiseTransport Split()
    {
        CheckUsable();
        if (!IsCompleted)
        {
            throw new InvalidOperationException("The handshake is not complete.");
        }

        if (_split)
        {
            throw new InvalidOperationException("Split() was already called.");
        }

        _split = true;
        ReleaseEphemeral();     // every DH is done: the ephemeral private key is not needed any more
        (NoiseCipherState c1, NoiseCipherState c2) = _symmetric.Split();
        if (_pattern.IsOneWay)
        {
            // One-way patterns: only the initiator sends; the second cipher state is never used (§5.3).
            c2.Dispose();
            return _initiator ? new NoiseTransport(c1, null) : new NoiseTransport(null, c1);
        }

        return _initiator ? new NoiseTransport(c1, c2) : new NoiseTransport(c2, c1);
    }

    /// <summary>Erases every key this handshake holds.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _symmetric.Dispose();
        ReleaseEphemeral();
        foreach (byte[] psk in _psks)
        {
            CryptographicOperations.ZeroMemory(psk);
        }
    }

    /// <summary>The protocol, the role and the step; never key material.</summary>
    public override string ToString() => $"{_protocol.Name} ({(_initiator ? "initiator" : "responder")}, message {_messageIndex})";

    private bool HasPsk => _pattern.PskCount > 0;

    private void ReleaseEphemeral()
    {
        if (_ownsEphemeral)
        {
            _ownsEphemeral = false;
            _e!.Dispose();
        }
    }

    private bool SendsToken(NoiseToken token)
    {
        foreach (NoiseMessagePattern message in _pattern.Messages)
        {
            if (message.FromAlice == _isAlice && Array.IndexOf(message.Tokens, token) >= 0)
            {
                return true;
            }
        }

        return false;
    }

    private void MixPreMessage(NoiseToken[] tokens, bool mine)
    {
        foreach (NoiseToken token in tokens)
        {
            ReadOnlySpan<byte> key = token switch
            {
                NoiseToken.S => mine ? _s!.PublicKey : _rs,
                NoiseToken.E => mine ? _e!.PublicKey : _re,
                _ => throw new InvalidOperationException("Pre-messages hold only e and s."),
            };
            if (token == NoiseToken.E)
            {
                MixEphemeral(key);
            }
            else
            {
                _symmetric.MixHash(key);
            }
        }
    }

    /// <summary>The e token: MixHash(e), and in a psk handshake also MixKey(e) (§9.2).</summary>
    private void MixEphemeral(ReadOnlySpan<byte> publicKey)
    {
        _symmetric.MixHash(publicKey);
        if (HasPsk)
        {
            _symmetric.MixKey(publicKey);
        }
    }

    /// <summary>The tokens that are processed alike by sender and receiver: psk and the four DH tokens.</summary>
    private void MixSharedSecret(NoiseToken token)
    {
        if (token == NoiseToken.Psk)
        {
            _symmetric.MixKeyAndHash(_psks[_pskIndex++]);
        }
        else
        {
            MixDh(token);
        }
    }

    private void MixDh(NoiseToken token)
    {
        // Tokens name Alice's key first: "es" is Alice's ephemeral with Bob's static.
        (NoiseKeyPair? local, byte[]? remote) = token switch
        {
            NoiseToken.EE => (_e, _re),
            NoiseToken.SS => (_s, _rs),
            NoiseToken.ES => _isAlice ? (_e, _rs) : (_s, _re),
            NoiseToken.SE => _isAlice ? (_s, _re) : (_e, _rs),
            _ => throw new InvalidOperationException($"Unexpected token {token}."),
        };
        if (local is null || remote is null)
        {
            throw new InvalidOperationException($"The {token} token needs a key this handshake does not have.");
        }

        Span<byte> shared = stackalloc byte[DhLength];
        try
        {
            if (!local.TryAgree(remote, shared))
            {
                ThrowHelper.ThrowPeerLink(PeerLinkError.HandshakeFailed, "The peer sent a small-order X25519 public key.");
            }

            _symmetric.MixKey(shared);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(shared);
        }
    }

    /// <summary>Bytes of keys and tags in message <paramref name="index"/>, following whether a key is set at each token.</summary>
    private int ComputeOverhead(int index)
    {
        bool hasKey = _symmetric.HasKey;
        int overhead = 0;
        foreach (NoiseToken token in _pattern.Messages[index].Tokens)
        {
            switch (token)
            {
                case NoiseToken.E:
                    overhead += DhLength;
                    hasKey |= HasPsk;
                    break;
                case NoiseToken.S:
                    overhead += DhLength + (hasKey ? NoiseCipherState.TagSize : 0);
                    break;
                default:
                    hasKey = true;
                    break;
            }
        }

        return overhead + (hasKey ? NoiseCipherState.TagSize : 0);
    }

    private void CheckUsable()
    {
        if (_failed)
        {
            throw new InvalidOperationException("This handshake failed earlier and cannot be used again; start a new handshake.");
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
    }

    private void Fail()
    {
        // Erase every key at once: a failed handshake is never resumed.
        _failed = true;
        Dispose();
    }
}
