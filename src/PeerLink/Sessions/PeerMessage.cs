using System;
using Nerdbank.MessagePack;
using PeerLink.Messaging;
using PolyType;

namespace PeerLink.Sessions;

/// <summary>
/// One message received on a <see cref="SecureSession"/>. <see cref="Payload"/> is borrowed: it stays valid until the
/// next receive on the same session (the next <see cref="SecureSession.ReceiveAsync"/> call or the next iteration of
/// <see cref="SecureSession.ReadAllAsync"/>) or until the session is disposed. Copy it (<c>Payload.ToArray()</c>) or
/// deserialize it before then to keep it.
/// </summary>
public readonly struct PeerMessage
{
    private readonly MessagePackSerializer? _serializer;

    internal PeerMessage(byte[] buffer, int length, uint requestId, bool isRequest, MessagePackSerializer? serializer = null)
    {
        Buffer = buffer;
        Length = length;
        RequestId = requestId;
        IsRequest = isRequest;
        _serializer = serializer;
    }

    /// <summary>The message bytes; see the type's remarks for how long they stay valid.</summary>
    public ReadOnlyMemory<byte> Payload => Buffer.AsMemory(0, Length);

    /// <summary>True when the peer sent this with <see cref="SecureSession.RequestAsync"/> and waits for a response.</summary>
    public bool IsRequest { get; }

    /// <summary>The id to answer with <see cref="SecureSession.RespondAsync"/>; 0 for plain messages.</summary>
    public uint RequestId { get; }

    internal byte[] Buffer { get; }

    internal int Length { get; }

    /// <summary>
    /// Reads the payload, in place, as a MessagePack <typeparamref name="T"/> (sent with <see cref="SecureSession.SendAsync{T}(T, System.Threading.CancellationToken)"/>),
    /// with the session's <see cref="SecureSessionOptions.Serializer"/>.
    /// </summary>
    /// <typeparam name="T">A type with a generated shape.</typeparam>
    /// <exception cref="PeerLinkException">
    /// <see cref="PeerLinkError.InvalidMessagePack"/>: the payload is not a <typeparamref name="T"/>, has bytes after the value,
    /// is nil (allowed only for a nullable value type), nests too deeply, or has invalid UTF-8.
    /// </exception>
    public T Deserialize<T>()
        where T : IShapeable<T> => Deserialize(T.GetTypeShape());

    /// <summary>Reads the payload as a <typeparamref name="T"/> whose shape comes from elsewhere (a witness class).</summary>
    /// <typeparam name="T">The message type.</typeparam>
    /// <param name="shape">The type's shape.</param>
    /// <exception cref="ArgumentNullException"><paramref name="shape"/> is null.</exception>
    /// <exception cref="PeerLinkException"><see cref="PeerLinkError.InvalidMessagePack"/>, as for <see cref="Deserialize{T}()"/>.</exception>
    public T Deserialize<T>(ITypeShape<T> shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        return TypedMessages.Deserialize(_serializer ?? TypedMessages.DefaultSerializer, Payload, shape);
    }
}
