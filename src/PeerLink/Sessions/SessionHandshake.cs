// The session handshake (docs/protocol.md): the initiator's preamble "PLNK" version pattern, then Noise handshake
// messages as length:u16be noise-message, the preamble being the Noise prologue. XX or IK, with psk3 / psk2 when a
// network key is set. The responder's first transport record is ACCEPT, or CLOSE(refused).
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.ExceptionServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Internal;
using PeerLink.Security.Noise;
using PeerLink.Sessions.Framing;
using PeerLink.Transport;

namespace PeerLink.Sessions;

/// <summary>
/// What the Noise part of a session handshake produces, and all a <see cref="SecureSession"/> is built from: the handshake
/// knows nothing of the session, so the dependency runs one way (session → handshake).
/// </summary>
/// <param name="Transport">The transport cipher states.</param>
/// <param name="Protocol">The Noise protocol used.</param>
/// <param name="RemoteId">The authenticated peer.</param>
/// <param name="Remote">The peer's hello.</param>
/// <param name="HandshakeHash">The handshake hash (channel binding).</param>
/// <param name="Refused">A responder's decision to refuse the peer: the session then sends CLOSE(refused) and ends.</param>
internal sealed record HandshakeOutcome(NoiseTransport Transport, NoiseProtocol Protocol, PeerId RemoteId, SessionHello Remote, byte[] HandshakeHash, bool Refused);

/// <summary>The Noise handshake of a session over a stream (docs/protocol.md §2–3), up to <c>Split()</c>.</summary>
internal static class SessionHandshake
{
    /// <summary>The initiator's side. On failure the connection is released and the error is translated and logged.</summary>
    public static async Task<HandshakeOutcome> InitiateAsync(PeerConnection connection, SecureSessionOptions options, PeerId? expected, HandshakeScope scope, CancellationToken cancellationToken)
    {
        bool ik = expected.HasValue;
        bool psk = options.NetworkKey is not null;
        byte pattern = SessionWire.PatternByte(ik, psk, options.PreferAesGcm);
        NoiseProtocol protocol = SessionWire.Protocol(ik, psk, options.PreferAesGcm);
        scope.Pattern = protocol.PatternName;
        byte[] prologue = Prologue(pattern);
        (ILogger logger, byte[] buffer, byte[] payload) = (scope.Logger, scope.Message, scope.Payload);
        try
        {
            using var handshake = new NoiseHandshakeState(protocol, initiator: true, prologue, options.Identity!.KeyPair, expected?.ToArray(), psk ? [options.NetworkKey!.Bytes] : null);
            PipeWriter output = connection.Transport.Output;
            PipeReader input = connection.Transport.Input;
            PooledBufferWriter hello = Hello(options);
            try
            {
                output.Write(prologue);
                WriteFrame(output, buffer, handshake.WriteMessage(ik ? hello.WrittenMemory.Span : default, buffer));
                await FlushAsync(output, scope.Timeout).ConfigureAwait(false);

                int length = await ReadFrameAsync(input, buffer, scope.Timeout).ConfigureAwait(false);
                if (length == 0)
                {
                    throw new PeerLinkException(
                        ik ? PeerLinkError.RemoteKeyMismatch : PeerLinkError.ProtocolViolation,
                        ik ? $"The peer could not decrypt the IK handshake: its key is not {expected!.Value.ToFingerprint()}… (it changed), or the network keys differ."
                           : "The peer sent an empty handshake message.");
                }

                SessionHello remote = SessionHello.Read(payload.AsMemory(0, handshake.ReadMessage(buffer.AsSpan(0, length), payload)), options.ApplicationId);

                // The responder is authenticated now (IK: it proved the expected key; XX: msg2 carried its key): decide
                // before telling it anything more about us.
                PeerId remoteId = new PeerId(handshake.RemoteStaticPublicKey);
                if (remote.ApplicationId != options.ApplicationId)
                {
                    throw new PeerLinkException(PeerLinkError.PeerRefused, $"The peer runs application '{remote.ApplicationId}', not '{options.ApplicationId}'.");
                }

                if (!(ik && remoteId == expected) && !await IsAllowedAsync(options, remoteId, logger, scope.Timeout).ConfigureAwait(false))
                {
                    throw new PeerLinkException(PeerLinkError.PeerRefused, $"Peer {remoteId.ToFingerprint()}… is not authorized here.");
                }

                if (!ik)
                {
                    WriteFrame(output, buffer, handshake.WriteMessage(hello.WrittenMemory.Span, buffer));
                }

                // Message 3 (XX) stays in the pipe: the session's ACCEPT flushes it.
                return new HandshakeOutcome(handshake.Split(), protocol, remoteId, remote, handshake.HandshakeHash.ToArray(), Refused: false);
            }
            finally
            {
                PooledBufferWriter.Return(hello);
            }
        }
        catch (Exception e)
        {
            ExceptionDispatchInfo.Throw(await FailAsync(e, connection, options, logger, responder: false, cancellationToken).ConfigureAwait(false));
            throw;   // not reached
        }
    }

    /// <summary>The responder's side. On failure the connection is released and the error is translated and logged.</summary>
    public static async Task<HandshakeOutcome> RespondAsync(PeerConnection connection, SecureSessionOptions options, HandshakeScope scope, CancellationToken cancellationToken)
    {
        (ILogger logger, byte[] buffer, byte[] payload) = (scope.Logger, scope.Message, scope.Payload);
        try
        {
            PipeWriter output = connection.Transport.Output;
            PipeReader input = connection.Transport.Input;
            byte[] prologue = await ReadPreambleAsync(input, scope.Timeout).ConfigureAwait(false);
            SessionWire.TryParsePattern(prologue[5], out bool ik, out bool psk, out bool aesGcm);
            if (psk != (options.NetworkKey is not null))
            {
                // Without the installation's network key (or with one where none is used) there is nothing to talk about.
                throw new PeerLinkException(PeerLinkError.PeerRefused, psk ? "The peer uses a network key and this node has none." : "The peer has no network key and this node requires one.");
            }

            NoiseProtocol protocol = SessionWire.Protocol(ik, psk, aesGcm);
            scope.Pattern = protocol.PatternName;
            using var handshake = new NoiseHandshakeState(protocol, initiator: false, prologue, options.Identity!.KeyPair, default, psk ? [options.NetworkKey!.Bytes] : null);
            int length = await ReadFrameAsync(input, buffer, scope.Timeout).ConfigureAwait(false);
            int payloadLength;
            try
            {
                payloadLength = handshake.ReadMessage(buffer.AsSpan(0, length), payload);
            }
            catch (PeerLinkException e) when (e.Error == PeerLinkError.DecryptionFailed && ik)
            {
                // The initiator encrypted to a key that is not ours (or used another network key): say so, without detail.
                WriteFrame(output, buffer, 0);
                await FlushAsync(output, scope.Timeout).ConfigureAwait(false);
                throw new PeerLinkException(PeerLinkError.RemoteKeyMismatch, "An IK initiator used a static key or network key that is not this node's.", e);
            }

            PooledBufferWriter hello = Hello(options);
            SessionHello remote;
            try
            {
                if (ik)
                {
                    remote = SessionHello.Read(payload.AsMemory(0, payloadLength), options.ApplicationId);
                }
                else
                {
                    WriteFrame(output, buffer, handshake.WriteMessage(hello.WrittenMemory.Span, buffer));
                    await FlushAsync(output, scope.Timeout).ConfigureAwait(false);
                    length = await ReadFrameAsync(input, buffer, scope.Timeout).ConfigureAwait(false);
                    remote = SessionHello.Read(payload.AsMemory(0, handshake.ReadMessage(buffer.AsSpan(0, length), payload)), options.ApplicationId);
                }

                PeerId remoteId = new PeerId(handshake.RemoteStaticPublicKey);
                bool allowed = remote.ApplicationId == options.ApplicationId && await IsAllowedAsync(options, remoteId, logger, scope.Timeout).ConfigureAwait(false);
                if (ik)
                {
                    WriteFrame(output, buffer, handshake.WriteMessage(hello.WrittenMemory.Span, buffer));
                }

                // IK: message 2 stays in the pipe, and the session's ACCEPT (or CLOSE(refused)) goes with it.
                return new HandshakeOutcome(handshake.Split(), protocol, remoteId, remote, handshake.HandshakeHash.ToArray(), Refused: !allowed);
            }
            finally
            {
                PooledBufferWriter.Return(hello);
            }
        }
        catch (Exception e)
        {
            ExceptionDispatchInfo.Throw(await FailAsync(e, connection, options, logger, responder: true, cancellationToken).ConfigureAwait(false));
            throw;   // not reached
        }
    }

    /// <summary>
    /// After a failed handshake: translates the error into the code the caller sees, logs it (a responder's own refusal
    /// is logged where it is decided), and releases the connection. Returns the exception to throw.
    /// </summary>
    private static async Task<Exception> FailAsync(Exception e, PeerConnection connection, SecureSessionOptions options, ILogger logger, bool responder, CancellationToken cancellationToken)
    {
        Exception error = Translate(e, options, cancellationToken);
        if (!(responder && error is PeerLinkException { Error: PeerLinkError.PeerRefused }))
        {
            // (A responder's own refusal is logged where it is decided.)
            LogFailure(logger, connection, error);
        }

        await connection.DisposeAsync().ConfigureAwait(false);
        return error;
    }

    /// <summary>Logs a failed handshake or establishment.</summary>
    public static void LogFailure(ILogger logger, PeerConnection connection, Exception error) =>
        SessionLog.HandshakeFailed(logger, connection.ConnectionId, (error as PeerLinkException)?.Error ?? PeerLinkError.Unknown, error.Message);

    /// <summary>The exception the caller sees for a failure during the handshake or while waiting for the peer's ACCEPT.</summary>
    public static Exception Translate(Exception e, SecureSessionOptions options, CancellationToken cancellationToken) => e switch
    {
        OperationCanceledException when !cancellationToken.IsCancellationRequested =>
            new PeerLinkException(PeerLinkError.HandshakeTimeout, $"The handshake did not complete within {options.HandshakeTimeout.TotalSeconds} s.", e),
        PeerLinkException { Error: PeerLinkError.DecryptionFailed } p =>
            new PeerLinkException(PeerLinkError.HandshakeFailed, p.Message, p),
        PeerLinkException { Error: PeerLinkError.InvalidMessagePack } p =>
            new PeerLinkException(PeerLinkError.ProtocolViolation, p.Message, p),
        InvalidOperationException or ObjectDisposedException =>
            new PeerLinkException(PeerLinkError.ConnectionAborted, "The connection closed during the handshake.", e),
        _ => e,
    };


    internal static async ValueTask<bool> IsAllowedAsync(SecureSessionOptions options, PeerId peer, ILogger logger, CancellationToken cancellationToken)
    {
        if (options.AllowedPeers is { } allowed && !allowed.Contains(peer))
        {
            return false;
        }

        if (options.Authorize is not { } authorize)
        {
            return true;
        }

        try
        {
            return await authorize(peer, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            SessionLog.HandshakeFailed(logger, "-", PeerLinkError.PeerRefused, $"The authorization callback threw {e.GetType().Name}; the peer is refused.");
            return false;
        }
    }

    private static byte[] Prologue(byte pattern)
    {
        byte[] prologue = new byte[SessionWire.PreambleSize];
        SessionWire.Magic.CopyTo(prologue);
        prologue[4] = SessionWire.Version;
        prologue[5] = pattern;
        return prologue;
    }

    internal static PooledBufferWriter Hello(SecureSessionOptions options)
    {
        PooledBufferWriter writer = PooledBufferWriter.Rent();
        new SessionHello(SessionWire.Version, options.ApplicationId, options.MaxMessageSize, SessionWire.HasAesHardware).WriteTo(writer);
        return writer;
    }

    private static void WriteFrame(PipeWriter output, byte[] message, int length) => NoiseFrame.Write(output, message.AsSpan(0, length));

    private static async ValueTask FlushAsync(PipeWriter output, CancellationToken cancellationToken)
    {
        FlushResult result = await output.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (result.IsCompleted)
        {
            throw new PeerLinkException(PeerLinkError.ConnectionReset, "The peer closed the connection during the handshake.");
        }
    }

    /// <summary>The initiator's six-byte preamble, checked before anything else is read.</summary>
    private static async ValueTask<byte[]> ReadPreambleAsync(PipeReader input, CancellationToken cancellationToken)
    {
        while (true)
        {
            ReadResult result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (buffer.Length >= SessionWire.PreambleSize)
            {
                byte[] preamble = buffer.Slice(0, SessionWire.PreambleSize).ToArray();
                input.AdvanceTo(buffer.GetPosition(SessionWire.PreambleSize));
                if (!preamble.AsSpan(0, 4).SequenceEqual(SessionWire.Magic))
                {
                    throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The connection does not start with the PeerLink preamble.");
                }

                if (preamble[4] != SessionWire.Version)
                {
                    throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"The peer speaks PeerLink protocol version {preamble[4]}; this node speaks {SessionWire.Version}.");
                }

                if (!SessionWire.TryParsePattern(preamble[5], out _, out _, out _))
                {
                    throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"Unknown handshake pattern 0x{preamble[5]:x2}.");
                }

                return preamble;
            }

            if (result.IsCompleted)
            {
                input.AdvanceTo(buffer.End);
                throw new PeerLinkException(PeerLinkError.Truncated, "The connection ended inside the preamble.");
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Reads one length-prefixed handshake message into <paramref name="destination"/>; returns its length (0 is the IK key-mismatch signal).</summary>
    private static async ValueTask<int> ReadFrameAsync(PipeReader input, byte[] destination, CancellationToken cancellationToken)
    {
        while (true)
        {
            ReadResult result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (NoiseFrame.TryRead(ref buffer, out ReadOnlySequence<byte> message))
            {
                message.CopyTo(destination);
                input.AdvanceTo(buffer.Start);
                return (int)message.Length;
            }

            buffer = result.Buffer;

            if (result.IsCompleted)
            {
                input.AdvanceTo(buffer.End);
                throw new PeerLinkException(buffer.IsEmpty ? PeerLinkError.ConnectionReset : PeerLinkError.Truncated,
                    buffer.IsEmpty ? "The peer closed the connection during the handshake." : "The connection ended inside a handshake message.");
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}
