using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using PeerLink.Security.Noise;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Noise;

/// <summary>
/// Replays the public Noise vectors byte for byte: every handshake and transport ciphertext, every decrypted payload, and the
/// handshake hash where the vector has one. Each vector is its own test case.
/// </summary>
public sealed class NoiseVectorTests
{
    private static readonly ConcurrentDictionary<string, JsonElement[]> s_files = new();

    public static TheoryData<string, int, string> Vectors()
    {
        var data = new TheoryData<string, int, string>();
        foreach (string file in new[] { "cacophony.json", "snow.json", "noise-c-basic.json" })
        {
            JsonElement[] vectors = Load(file);
            for (int i = 0; i < vectors.Length; i++)
            {
                string name = NameOf(vectors[i]);
                if (name.Contains("_25519_", StringComparison.Ordinal) && name.StartsWith("Noise_", StringComparison.Ordinal))
                {
                    data.Add(file, i, name);
                }
            }
        }

        return data;
    }

    public static TheoryData<string, int, string> FallbackVectors()
    {
        var data = new TheoryData<string, int, string>();
        JsonElement[] vectors = Load("noise-c-fallback.json");
        for (int i = 0; i < vectors.Length; i++)
        {
            string name = NameOf(vectors[i]);
            if (name.StartsWith("Noise_", StringComparison.Ordinal) && name.Contains("_25519_", StringComparison.Ordinal))
            {
                data.Add("noise-c-fallback.json", i, name);
            }
        }

        return data;
    }

    [Fact]
    public void TheVectorSetHasTheExpectedSize()
    {
        // 472 cacophony + 408 snow + 120 noise-c: if the filter or the files change, this says so.
        Assert.Equal(1000, Vectors().Count());
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void VectorReplays(string file, int index, string protocolName)
    {
        JsonElement vector = Load(file)[index];
        NoiseProtocol protocol = NoiseProtocol.Parse(protocolName);

        using VectorSide initiatorSide = CreateSide(protocol, vector, "init", initiator: true);
        using VectorSide responderSide = CreateSide(protocol, vector, "resp", initiator: false);
        NoiseHandshakeState initiator = initiatorSide.State;
        NoiseHandshakeState responder = responderSide.State;

        JsonElement[] messages = vector.GetProperty("messages").EnumerateArray().ToArray();
        NoiseTransport? initiatorTransport = null;
        NoiseTransport? responderTransport = null;
        try
        {
            for (int i = 0; i < messages.Length; i++)
            {
                byte[] payload = TestFiles.Hex(messages[i].GetProperty("payload").GetString()!);
                byte[] expected = TestFiles.Hex(messages[i].GetProperty("ciphertext").GetString()!);
                bool initiatorSends = protocol.Pattern.IsOneWay || i % 2 == 0;

                if (!initiator.IsCompleted)
                {
                    NoiseHandshakeState sender = initiatorSends ? initiator : responder;
                    NoiseHandshakeState receiver = initiatorSends ? responder : initiator;
                    Assert.True(sender.IsMyTurnToWrite, $"message {i}: the pattern disagrees with the vector about who sends");

                    byte[] written = new byte[65535];
                    int length = sender.WriteMessage(payload, written);
                    Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(written, 0, length));

                    byte[] read = new byte[65535];
                    int readLength = receiver.ReadMessage(expected, read);
                    Assert.Equal(Convert.ToHexString(payload), Convert.ToHexString(read, 0, readLength));

                    if (initiator.IsCompleted)
                    {
                        Assert.True(responder.IsCompleted);
                        Assert.Equal(Convert.ToHexString(initiator.HandshakeHash), Convert.ToHexString(responder.HandshakeHash));
                        if (vector.TryGetProperty("handshake_hash", out JsonElement hash))
                        {
                            Assert.Equal(hash.GetString()!, Convert.ToHexString(initiator.HandshakeHash), ignoreCase: true);
                        }

                        initiatorTransport = initiator.Split();
                        responderTransport = responder.Split();
                    }
                }
                else
                {
                    NoiseCipherState send = (initiatorSends ? initiatorTransport!.Send : responderTransport!.Send)!;
                    NoiseCipherState receive = (initiatorSends ? responderTransport!.Receive : initiatorTransport!.Receive)!;

                    byte[] written = new byte[payload.Length + NoiseCipherState.TagSize];
                    int length = send.EncryptWithAd(default, payload, written);
                    Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(written, 0, length));

                    byte[] read = new byte[expected.Length];
                    Assert.True(receive.TryDecryptWithAd(default, expected, read, out int readLength));
                    Assert.Equal(Convert.ToHexString(payload), Convert.ToHexString(read, 0, readLength));
                }
            }

            Assert.True(initiator.IsCompleted, "the vector ended before the handshake did");
        }
        finally
        {
            initiatorTransport?.Dispose();
            responderTransport?.Dispose();
        }
    }

    internal static JsonElement[] Load(string file) =>
        s_files.GetOrAdd(file, f =>
        {
            using JsonDocument document = TestFiles.Json("noise/" + f);
            return document.RootElement.GetProperty("vectors").EnumerateArray().Select(v => v.Clone()).ToArray();
        });

    internal static string NameOf(JsonElement vector) =>
        (vector.TryGetProperty("protocol_name", out JsonElement n) ? n : vector.GetProperty("name")).GetString()!;

    internal static VectorSide CreateSide(NoiseProtocol protocol, JsonElement vector, string side, bool initiator)
    {
        byte[] prologue = Bytes(vector, side + "_prologue") ?? [];
        NoiseKeyPair? localStatic = KeyPair(vector, side + "_static");
        NoiseKeyPair? ephemeral = KeyPair(vector, side + "_ephemeral");
        byte[]? remoteStatic = Bytes(vector, side + "_remote_static");
        List<byte[]> psks = [];
        if (vector.TryGetProperty(side + "_psks", out JsonElement list))
        {
            psks.AddRange(list.EnumerateArray().Select(p => TestFiles.Hex(p.GetString()!)));
        }

        // Vectors give keys a side may not need for its pattern (for example a responder static in NN); pass only what the pattern uses.
        try
        {
            return new VectorSide(NoiseHandshakeState.Create(protocol, initiator, prologue, localStatic, remoteStatic ?? default, psks, ephemeral), localStatic, ephemeral);
        }
        catch
        {
            localStatic?.Dispose();
            ephemeral?.Dispose();
            throw;
        }
    }

    private static byte[]? Bytes(JsonElement vector, string property) =>
        vector.TryGetProperty(property, out JsonElement value) ? TestFiles.Hex(value.GetString()!) : null;

    private static NoiseKeyPair? KeyPair(JsonElement vector, string property) =>
        Bytes(vector, property) is { } key ? NoiseKeyPair.Import(key) : null;

    /// <summary>One side of a vector: the handshake and the fixed keys it borrows, disposed together.</summary>
    internal sealed class VectorSide(NoiseHandshakeState state, NoiseKeyPair? localStatic, NoiseKeyPair? ephemeral) : IDisposable
    {
        public NoiseHandshakeState State { get; } = state;

        public void Dispose()
        {
            State.Dispose();
            localStatic?.Dispose();
            ephemeral?.Dispose();
        }
    }
}
