using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Security.Noise;
using PeerLink.Sessions;
using PeerLink.Transport;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.FunctionalTests.Sessions;

/// <summary>Tests that read the process-wide count of live X25519 keys: they run alone, after the parallel tests.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class KeyCountCollection
{
    public const string Name = "Live key count";
}

/// <summary>
/// NSec keeps private keys in locked native memory, and about 16,000 live keys abort the process (not an exception).
/// 20,000 handshakes, most of them failing in different ways, must leave no ephemeral key behind, and the number alive at
/// once must stay bounded by the number of handshakes under way.
/// </summary>
[Collection(KeyCountCollection.Name)]
public sealed class HandshakeKeyChurnTests : PeerIdentities
{
    private const int Handshakes = 20_000;
    private const int Concurrency = 32;

    [Fact]
    public async Task NoEphemeralKeyOutlivesItsHandshake()
    {
        using NetworkKey networkKey = NetworkKey.Generate();
        using NetworkKey otherKey = NetworkKey.Generate();
        int baseline = NoiseKeyPair.LiveCount;
        int peak = baseline;
        int next = -1;
        var outcomes = new int[6];

        async Task WorkerAsync()
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < Handshakes)
            {
                int kind = i % outcomes.Length;
                bool succeeded = await OneAsync(kind, networkKey, otherKey);
                Assert.Equal(kind == 0, succeeded);
                Interlocked.Increment(ref outcomes[kind]);
                int live = NoiseKeyPair.LiveCount;
                int seen;
                while (live > (seen = Volatile.Read(ref peak)) && Interlocked.CompareExchange(ref peak, live, seen) != seen)
                {
                }
            }
        }

        var workers = new List<Task>();
        for (int w = 0; w < Concurrency; w++)
        {
            workers.Add(Task.Run(WorkerAsync));
        }

        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromMinutes(5));

        Assert.Equal(Handshakes, outcomes[0] + outcomes[1] + outcomes[2] + outcomes[3] + outcomes[4] + outcomes[5]);
        Assert.Equal(baseline, NoiseKeyPair.LiveCount);
        Assert.InRange(peak - baseline, 1, 2 * Concurrency);   // at most one ephemeral per side of each handshake under way
    }

    /// <summary>One handshake of the given kind; true when a session was established (kind 0 only).</summary>
    private async Task<bool> OneAsync(int kind, NetworkKey networkKey, NetworkKey otherKey)
    {
        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        SecureSessionOptions initiator = SessionPair.Options(Alice, o => o.NetworkKey = kind == 3 ? otherKey : networkKey);
        SecureSessionOptions responder = SessionPair.Options(Bob, o =>
        {
            o.NetworkKey = networkKey;
            if (kind == 2)
            {
                o.AllowedPeers = new HashSet<PeerId> { Mallory.PeerId };
            }
        });

        Task<SecureSession> accept = SecureSession.AcceptAsync(b, responder);
        Task<SecureSession> connect;
        switch (kind)
        {
            case 1:     // IK to a key the responder does not have
                connect = SecureSession.ConnectAsync(a, initiator, Mallory.PeerId);
                break;
            case 4:     // the initiator sends a valid first IK message, then hangs up: the responder has made its ephemeral key
                await SendFirstIkMessageAndHangUpAsync(a, networkKey);
                connect = Task.FromException<SecureSession>(new PeerLinkException(PeerLinkError.ConnectionAborted, "hung up"));
                break;
            case 5:     // the initiator sends its preamble and garbage
                await a.Transport.Output.WriteAsync((byte[])[80, 76, 78, 75, 1, 4, 0, 40, .. new byte[40]]);
                await a.DisposeAsync();
                connect = Task.FromException<SecureSession>(new PeerLinkException(PeerLinkError.ConnectionAborted, "hung up"));
                break;
            default:    // 0: a session; 2: refused by the responder; 3: a different network key
                connect = SecureSession.ConnectAsync(a, initiator, Bob.PeerId);
                break;
        }

        try
        {
            await using SecureSession first = await connect.WaitAsync(SessionPair.Limit);
            await using SecureSession second = await accept.WaitAsync(SessionPair.Limit);
            return true;
        }
        catch (Exception e) when (e is PeerLinkException or OperationCanceledException)
        {
            await Observe(accept);
            await Observe(connect);
            return false;
        }
    }

    private async Task SendFirstIkMessageAndHangUpAsync(PeerConnection connection, NetworkKey networkKey)
    {
        byte[] preamble = [.. "PLNK"u8, 1, SessionWire.PatternByte(ik: true, psk: true, aesGcm: false)];
        var hello = new System.Buffers.ArrayBufferWriter<byte>();
        new SessionHello(1, "peerlink", 1 << 20).WriteTo(hello);
        byte[] frame = new byte[2 + 1024];
        using (var handshake = new NoiseHandshakeState(SessionWire.Protocol(ik: true, psk: true, aesGcm: false), true, preamble, Alice.KeyPair, Bob.PeerId.ToArray(), [networkKey.Bytes]))
        {
            int length = handshake.WriteMessage(hello.WrittenSpan, frame.AsSpan(2));
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)length);
            await connection.Transport.Output.WriteAsync(preamble);
            await connection.Transport.Output.WriteAsync(frame.AsMemory(0, 2 + length));
        }

        await connection.DisposeAsync();
    }

    private static async Task Observe(Task<SecureSession> task)
    {
        try
        {
            await (await task.WaitAsync(SessionPair.Limit)).DisposeAsync();
        }
        catch (Exception e) when (e is PeerLinkException or OperationCanceledException)
        {
            // expected: this side failed too
        }
    }
}
