using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Threading.Tasks;
using PeerLink.Security.Noise;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.Testing;

/// <summary>
/// A hand-driven XX initiator built from the public Noise API, so that tests can send what a real session never
/// would: raw bytes, altered or replayed messages, bad records.
/// </summary>
internal sealed class RawInitiator : IDisposable
{
    private readonly PeerConnection _connection;
    private NoiseTransport? _transport;

    public RawInitiator(PeerConnection connection) => _connection = connection;

    public PipeWriter Output => _connection.Transport.Output;

    public PipeReader Input => _connection.Transport.Input;

    /// <summary>Runs XX to completion and reads the responder's ACCEPT.</summary>
    public async Task HandshakeAsync(PeerIdentity identity)
    {
        byte[] prologue = [.. "PLNK"u8, 1, 1];
        NoiseProtocol protocol = NoiseProtocol.Parse("Noise_XX_25519_ChaChaPoly_SHA256");
        using var handshake = new NoiseHandshakeState(protocol, initiator: true, prologue, identity.KeyPair);
        byte[] buffer = new byte[65535];
        await Output.WriteAsync(prologue);
        await WriteFrameAsync(buffer.AsSpan(0, handshake.WriteMessage(default, buffer)).ToArray());
        byte[] message2 = await ReadFrameAsync();
        handshake.ReadMessage(message2, buffer);
        var hello = new ArrayBufferWriter<byte>();
        new SessionHello(1, "peerlink", 1 << 20).WriteTo(hello);
        await WriteFrameAsync(buffer.AsSpan(0, handshake.WriteMessage(hello.WrittenSpan, buffer)).ToArray());
        _transport = handshake.Split();
        byte[] accept = await ReceivePlaintextAsync();
        if (accept.Length < 4 || accept[0] != SessionWire.Accept)
        {
            throw new InvalidOperationException("No ACCEPT from the responder.");
        }
    }

    /// <summary>Encrypts <paramref name="plaintext"/> as the next transport message and returns the framed bytes it sent.</summary>
    public async Task<byte[]> SendPlaintextAsync(byte[] plaintext)
    {
        byte[] framed = await EncryptAsync(plaintext);
        await Output.WriteAsync(framed);
        return framed;
    }

    /// <summary>Encrypts the next transport message and returns it framed, without sending it.</summary>
    public Task<byte[]> EncryptAsync(byte[] plaintext)
    {
        byte[] framed = new byte[2 + plaintext.Length + 16];
        BinaryPrimitives.WriteUInt16BigEndian(framed, (ushort)(plaintext.Length + 16));
        _transport!.Send!.EncryptWithAd(default, plaintext, framed.AsSpan(2));
        return Task.FromResult(framed);
    }

    public async Task<byte[]> WriteFrameAsync(byte[] message)
    {
        byte[] framed = new byte[2 + message.Length];
        BinaryPrimitives.WriteUInt16BigEndian(framed, (ushort)message.Length);
        message.CopyTo(framed, 2);
        await Output.WriteAsync(framed);
        return framed;
    }

    public async Task<byte[]> ReceivePlaintextAsync()
    {
        byte[] ciphertext = await ReadFrameAsync();
        byte[] plaintext = new byte[ciphertext.Length];
        if (!_transport!.Receive!.TryDecryptWithAd(default, ciphertext, plaintext, out int length))
        {
            throw new InvalidOperationException("A message from the responder failed authentication.");
        }

        return plaintext.AsSpan(0, length).ToArray();
    }

    public async Task<byte[]> ReadFrameAsync()
    {
        while (true)
        {
            ReadResult result = await Input.ReadAsync();
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (buffer.Length >= 2)
            {
                byte[] prefix = buffer.Slice(0, 2).ToArray();
                int length = BinaryPrimitives.ReadUInt16BigEndian(prefix);
                if (buffer.Length >= 2 + length)
                {
                    byte[] message = buffer.Slice(2, length).ToArray();
                    Input.AdvanceTo(buffer.GetPosition(2 + length));
                    return message;
                }
            }

            if (result.IsCompleted)
            {
                Input.AdvanceTo(buffer.End);
                throw new InvalidOperationException("The responder closed the connection.");
            }

            Input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    public static byte[] Record(byte type, byte flags, ReadOnlySpan<byte> body)
    {
        byte[] record = new byte[4 + body.Length];
        record[0] = type;
        record[1] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(record.AsSpan(2), (ushort)body.Length);
        body.CopyTo(record.AsSpan(4));
        return record;
    }

    public void Dispose() => _transport?.Dispose();
}
