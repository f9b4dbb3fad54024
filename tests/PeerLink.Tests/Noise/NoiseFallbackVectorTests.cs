using System;
using System.Linq;
using System.Text.Json;
using PeerLink.Security.Noise;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Noise;

/// <summary>
/// Noise Pipes (Noise spec revision 34 §10.2, noise-c fallback vectors): Alice tries IK with a stale copy of Bob's static key,
/// Bob fails to decrypt, and both switch to XXfallback with Alice's ephemeral key as a pre-message and Bob as the initiator.
/// </summary>
public sealed class NoiseFallbackVectorTests
{
    public static TheoryData<string, int, string> Vectors() => NoiseVectorTests.FallbackVectors();

    [Theory]
    [MemberData(nameof(Vectors))]
    public void FallbackVectorReplays(string file, int index, string protocolName)
    {
        JsonElement vector = NoiseVectorTests.Load(file)[index];
        NoiseProtocol fallback = NoiseProtocol.Parse(protocolName);
        NoiseProtocol first = NoiseProtocol.Parse(protocolName.Replace("XXfallback", vector.GetProperty("pattern").GetString(), StringComparison.Ordinal));
        JsonElement[] messages = vector.GetProperty("messages").EnumerateArray().ToArray();
        byte[] prologue = TestFiles.Hex(vector.GetProperty("init_prologue").GetString()!);
        byte[] buffer = new byte[65535];

        // Message 0: Alice's IK attempt, which Bob cannot decrypt.
        byte[] message0;
        using (NoiseVectorTests.VectorSide aliceSide = NoiseVectorTests.CreateSide(first, vector, "init", initiator: true))
        using (NoiseVectorTests.VectorSide bobSide = NoiseVectorTests.CreateSide(first, vector, "resp", initiator: false))
        {
            NoiseHandshakeState aliceIk = aliceSide.State;
            NoiseHandshakeState bobIk = bobSide.State;
            int length = aliceIk.WriteMessage(Hex(messages[0], "payload"), buffer);
            message0 = buffer.AsSpan(0, length).ToArray();
            Assert.Equal(Hex(messages[0], "ciphertext"), message0);
            PeerLinkException failure = Assert.Throws<PeerLinkException>(() => bobIk.ReadMessage(message0, new byte[65535]));
            Assert.Equal(PeerLinkError.DecryptionFailed, failure.Error);
        }

        using NoiseKeyPair aliceStatic = Key(vector, "init_static");
        using NoiseKeyPair aliceEphemeral = Key(vector, "init_ephemeral");
        using NoiseKeyPair bobStatic = Key(vector, "resp_static");
        using NoiseKeyPair bobEphemeral = Key(vector, "resp_ephemeral");
        using var bob = NoiseHandshakeState.Create(fallback, initiator: true, prologue, bobStatic, localEphemeral: bobEphemeral, remoteEphemeral: message0.AsSpan(0, 32));
        using var alice = NoiseHandshakeState.Create(fallback, initiator: false, prologue, aliceStatic, localEphemeral: aliceEphemeral);
        NoiseTransport? bobTransport = null;
        NoiseTransport? aliceTransport = null;
        try
        {
            for (int i = 1; i < messages.Length; i++)
            {
                bool bobSends = i % 2 == 1;
                byte[] payload = Hex(messages[i], "payload");
                byte[] expected = Hex(messages[i], "ciphertext");
                byte[] read = new byte[65535];
                if (!bob.IsCompleted)
                {
                    NoiseHandshakeState sender = bobSends ? bob : alice;
                    NoiseHandshakeState receiver = bobSends ? alice : bob;
                    int length = sender.WriteMessage(payload, buffer);
                    Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(buffer, 0, length));
                    int readLength = receiver.ReadMessage(expected, read);
                    Assert.Equal(payload, read.AsSpan(0, readLength).ToArray());
                    if (bob.IsCompleted)
                    {
                        Assert.Equal(vector.GetProperty("handshake_hash").GetString()!, Convert.ToHexString(bob.HandshakeHash), ignoreCase: true);
                        Assert.Equal(Convert.ToHexString(bob.HandshakeHash), Convert.ToHexString(alice.HandshakeHash));
                        bobTransport = bob.Split();
                        aliceTransport = alice.Split();
                    }
                }
                else
                {
                    NoiseCipherState send = (bobSends ? bobTransport!.Send : aliceTransport!.Send)!;
                    NoiseCipherState receive = (bobSends ? aliceTransport!.Receive : bobTransport!.Receive)!;
                    int length = send.EncryptWithAd(default, payload, buffer);
                    Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(buffer, 0, length));
                    Assert.True(receive.TryDecryptWithAd(default, expected, read, out int readLength));
                    Assert.Equal(payload, read.AsSpan(0, readLength).ToArray());
                }
            }

            Assert.True(bob.IsCompleted);
        }
        finally
        {
            bobTransport?.Dispose();
            aliceTransport?.Dispose();
        }
    }

    private static byte[] Hex(JsonElement element, string property) => TestFiles.Hex(element.GetProperty(property).GetString()!);

    private static NoiseKeyPair Key(JsonElement vector, string property) => NoiseKeyPair.Import(Hex(vector, property));
}
