using System;
using PeerLink.Messaging;

namespace PeerLink.Sessions;

/// <summary>
/// One message received on a <see cref="SecureSession"/>. <see cref="Payload"/> is borrowed: it stays valid until the
/// next receive on the same session (the next <see cref="SecureSession.ReceiveAsync"/> call or the next iteration of
/// <see cref="SecureSession.ReadAllAsync"/>) or until the session is disposed. Copy it (<c>Payload.ToArray()</c>) or
/// deserialize it before then to keep it.
/// </summary>
public readonly struct PeerMessage
{
    internal PeerMessage(byte[] buffer, int length, uint requestId, bool isRequest)
    {
        Buffer = buffer;
        Length = length;
        RequestId = requestId;
        IsRequest = isRequest;
    }

    /// <summary>The message bytes; see the type's remarks for how long they stay valid.</summary>
    public ReadOnlyMemory<byte> Payload => Buffer.AsMemory(0, Length);

    /// <summary>True when the peer sent this with <see cref="SecureSession.RequestAsync"/> and waits for a response.</summary>
    public bool IsRequest { get; }

    /// <summary>The id to answer with <see cref="SecureSession.RespondAsync"/>; 0 for plain messages.</summary>
    public uint RequestId { get; }

    internal byte[] Buffer { get; }

    internal int Length { get; }

    /// <summary>Reads the payload as a MessagePack value of type <typeparamref name="T"/>.</summary>
    /// <exception cref="PeerLinkException">The payload is not a valid <typeparamref name="T"/> (<see cref="PeerLinkError.InvalidMessagePack"/>).</exception>
    public T Deserialize<T>()
        where T : IMessagePackSerializable<T> => MessagePackSerializer.Deserialize<T>(Payload);
}
