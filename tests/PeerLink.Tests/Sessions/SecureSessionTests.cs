using System;
using System.Collections.Generic;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Sessions;
using PeerLink.Transport;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Sessions;

/// <summary>Sessions over in-memory connections: handshakes, messages, close and abort.</summary>
public sealed class SecureSessionTests : PeerIdentities
{
    private static readonly TimeSpan Limit = SessionPair.Limit;

    [Theory]
    [InlineData(false, false, false, "Noise_XX_25519_ChaChaPoly_SHA256")]
    [InlineData(true, false, false, "Noise_IK_25519_ChaChaPoly_SHA256")]
    [InlineData(false, true, false, "Noise_XXpsk3_25519_ChaChaPoly_SHA256")]
    [InlineData(true, true, false, "Noise_IKpsk2_25519_ChaChaPoly_SHA256")]
    [InlineData(false, false, true, "Noise_XX_25519_AESGCM_SHA256")]
    [InlineData(true, true, true, "Noise_IKpsk2_25519_AESGCM_SHA256")]
    public async Task EveryPatternAuthenticatesBothSidesAndCarriesMessages(bool ik, bool psk, bool aesGcm, string protocol)
    {
        using NetworkKey networkKey = NetworkKey.Generate();
        void Configure(SecureSessionOptions o)
        {
            o.NetworkKey = psk ? networkKey : null;
            o.PreferAesGcm = aesGcm;
        }

        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik, Configure, Configure);

        await pair.Initiator.SendAsync("ping from alice"u8.ToArray());
        PeerMessage? atBob = await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit);
        Assert.Equal("ping from alice"u8.ToArray(), atBob!.Value.Payload.ToArray());
        await pair.Responder.SendAsync("pong from bob"u8.ToArray());
        PeerMessage? atAlice = await pair.Initiator.ReceiveAsync().AsTask().WaitAsync(Limit);

        Assert.Equal("pong from bob"u8.ToArray(), atAlice!.Value.Payload.ToArray());
        Assert.Equal(protocol, pair.Initiator.Protocol.Name);
        Assert.Equal(protocol, pair.Responder.Protocol.Name);
        Assert.Equal(Bob.PeerId, pair.Initiator.RemotePeerId);
        Assert.Equal(Alice.PeerId, pair.Responder.RemotePeerId);
        Assert.Equal(pair.Initiator.HandshakeHash.ToArray(), pair.Responder.HandshakeHash.ToArray());
        Assert.True(pair.Initiator.IsInitiator);
        Assert.False(pair.Responder.IsInitiator);
    }

    [Fact]
    public async Task LargeMessagesAreFragmentedAndReassembled()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true,
            o => o.MaxMessageSize = 4 * 1024 * 1024, o => o.MaxMessageSize = 4 * 1024 * 1024);
        byte[] big = RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 17);
        byte[] exact = RandomNumberGenerator.GetBytes(65515);

        Task send = Task.Run(async () =>
        {
            await pair.Initiator.SendAsync(big);
            await pair.Initiator.SendAsync(exact);
            await pair.Initiator.SendAsync(ReadOnlyMemory<byte>.Empty);
        });
        byte[] first = (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray();
        byte[] second = (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray();
        PeerMessage? empty = await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit);
        await send.WaitAsync(Limit);

        Assert.Equal(big, first);
        Assert.Equal(exact, second);
        Assert.Equal(0, empty!.Value.Payload.Length);
    }

    [Fact]
    public async Task AMessageOverTheNegotiatedLimitIsRefusedToTheCaller()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true, o => o.MaxMessageSize = 1 << 20, o => o.MaxMessageSize = 1000);

        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>("message", () => pair.Initiator.SendAsync(new byte[1001]).AsTask());

        Assert.Equal(1000, pair.Initiator.MaxMessageSize);
        Assert.Contains("1000", error.Message, StringComparison.Ordinal);
        await pair.Initiator.SendAsync(new byte[1000]);   // the session is still fine
        Assert.Equal(1000, (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.Length);
    }

    [Fact]
    public async Task ManyConcurrentSendersKeepTheirOwnOrder()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true);
        const int Senders = 8;
        const int PerSender = 2000;

        Task[] senders = Enumerable.Range(0, Senders).Select(s => Task.Run(async () =>
        {
            byte[] message = new byte[8];
            for (int i = 0; i < PerSender; i++)
            {
                BitConverter.TryWriteBytes(message.AsSpan(0, 4), s);
                BitConverter.TryWriteBytes(message.AsSpan(4, 4), i);
                await pair.Initiator.SendAsync(message);
            }
        })).ToArray();
        int[] next = new int[Senders];
        for (int received = 0; received < Senders * PerSender; received++)
        {
            PeerMessage message = (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value;
            int sender = BitConverter.ToInt32(message.Payload.Span[..4]);
            int sequence = BitConverter.ToInt32(message.Payload.Span[4..8]);
            Assert.Equal(next[sender], sequence);
            next[sender]++;
        }

        await Task.WhenAll(senders).WaitAsync(Limit);
        Assert.All(next, n => Assert.Equal(PerSender, n));
    }

    [Fact]
    public async Task AGracefulCloseDeliversEverySentMessageFirst()
    {
        SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: false);
        const int Count = 20000;
        for (int i = 0; i < Count; i++)
        {
            await pair.Initiator.SendAsync(BitConverter.GetBytes(i));
        }

        Task close = pair.Initiator.CloseAsync();
        int received = 0;
        await foreach (PeerMessage message in pair.Responder.ReadAllAsync().WithCancellation(default))
        {
            Assert.Equal(received, BitConverter.ToInt32(message.Payload.Span));
            received++;
        }

        await close.WaitAsync(Limit);
        Assert.Equal(Count, received);
        await pair.Initiator.Completion.WaitAsync(Limit);
        await pair.Responder.Completion.WaitAsync(Limit);
        var late = await Assert.ThrowsAsync<PeerLinkException>(() => pair.Responder.SendAsync(new byte[1]).AsTask());
        Assert.Equal(PeerLinkError.SessionClosed, late.Error);
        Assert.Equal(SessionCloseCode.Normal, late.RemoteCloseCode);     // the peer's reason reaches the application
        await pair.DisposeAsync();
    }

    [Fact]
    public async Task AnAbortIsReportedAsAnAbortOnBothSides()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true);
        await pair.Initiator.SendAsync(new byte[10]);
        Assert.NotNull(await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit));

        pair.Initiator.Abort();
        var remote = await Assert.ThrowsAsync<PeerLinkException>(() => pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit));
        var local = await Assert.ThrowsAsync<PeerLinkException>(() => pair.Initiator.ReceiveAsync().AsTask().WaitAsync(Limit));

        Assert.Equal(PeerLinkError.ConnectionReset, remote.Error);
        Assert.Equal(PeerLinkError.ConnectionAborted, local.Error);
        await Assert.ThrowsAsync<PeerLinkException>(() => pair.Responder.Completion.WaitAsync(Limit));
    }

    [Fact]
    public async Task ACancelledReceiveLeavesTheSessionUsable()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true);
        using var cancel = new System.Threading.CancellationTokenSource();

        ValueTask<PeerMessage?> waiting = pair.Responder.ReceiveAsync(cancel.Token);
        Assert.False(waiting.IsCompleted);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.AsTask().WaitAsync(Limit));

        await pair.Initiator.SendAsync("after the cancel"u8.ToArray());
        PeerMessage? next = await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit);
        Assert.Equal("after the cancel"u8.ToArray(), next!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task AReceiveTokenCancelledAfterItsReceiveEndedDoesNotCancelTheNextReceive()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true);
        using var cancel = new System.Threading.CancellationTokenSource();

        ValueTask<PeerMessage?> first = pair.Responder.ReceiveAsync(cancel.Token);
        await pair.Initiator.SendAsync("one"u8.ToArray());
        Assert.Equal("one"u8.ToArray(), (await first.AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
        ValueTask<PeerMessage?> second = pair.Responder.ReceiveAsync();
        await cancel.CancelAsync();   // the first receive's registration must be gone

        Assert.False(second.IsCompleted);
        await pair.Initiator.SendAsync("two"u8.ToArray());
        Assert.Equal("two"u8.ToArray(), (await second.AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task AReceiveWithACancelledTokenEndsAtOnceAndTheSessionStaysUsable()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pair.Responder.ReceiveAsync(new System.Threading.CancellationToken(canceled: true)).AsTask().WaitAsync(Limit));

        await pair.Initiator.SendAsync("after"u8.ToArray());
        Assert.Equal("after"u8.ToArray(), (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task OnlyOneReceiveMayWaitAtATime()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true);

        ValueTask<PeerMessage?> first = pair.Responder.ReceiveAsync();
        Assert.False(first.IsCompleted);
        await Assert.ThrowsAsync<InvalidOperationException>(() => pair.Responder.ReceiveAsync().AsTask());

        await pair.Initiator.SendAsync(new byte[] { 42 });
        PeerMessage? message = await first.AsTask().WaitAsync(Limit);
        Assert.Equal(new byte[] { 42 }, message!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task MessagesAlreadyQueuedAreReturnedWithoutWaiting()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true);
        for (byte i = 0; i < 3; i++)
        {
            await pair.Initiator.SendAsync(new[] { i });
        }

        Assert.Equal(new byte[] { 0 }, (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
        await pair.Initiator.PingAsync().WaitAsync(Limit);   // the PONG comes after both remaining messages were queued

        ValueTask<PeerMessage?> second = pair.Responder.ReceiveAsync();
        Assert.True(second.IsCompleted);
        Assert.Equal(new byte[] { 1 }, (await second)!.Value.Payload.ToArray());
        Assert.Equal(new byte[] { 2 }, (await pair.Responder.ReceiveAsync())!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task RequestsGetTheirResponses()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true);
        Task server = Task.Run(async () =>
        {
            await foreach (PeerMessage request in pair.Responder.ReadAllAsync())
            {
                Assert.True(request.IsRequest);
                byte[] reply = request.Payload.ToArray().Reverse().ToArray();
                await pair.Responder.RespondAsync(request, reply);
            }
        });

        Task<byte[]>[] requests = Enumerable.Range(0, 50).Select(i => pair.Initiator.RequestAsync(new byte[] { (byte)i, 1, 2 })).ToArray();
        byte[][] responses = await Task.WhenAll(requests).WaitAsync(Limit);

        for (int i = 0; i < responses.Length; i++)
        {
            Assert.Equal(new byte[] { 2, 1, (byte)i }, responses[i]);
        }

        await pair.Initiator.CloseAsync();
        await server.WaitAsync(Limit);
    }

    [Fact]
    public async Task ARequestWithoutResponseTimesOut()
    {
        var clock = new FakeTimeProvider();
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true, o => o.TimeProvider = clock);   // RequestTimeout 30 s

        // With room in the send queue the request is queued at once, and its wait (on the session's clock) has begun.
        Task<byte[]> request = pair.Initiator.RequestAsync(new byte[] { 1 });
        Assert.True((await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.IsRequest);
        clock.Advance(TimeSpan.FromSeconds(30) - TimeSpan.FromTicks(1));
        Assert.False(request.IsCompleted);
        clock.Advance(TimeSpan.FromTicks(1));

        var error = await Assert.ThrowsAsync<PeerLinkException>(() => request.WaitAsync(Limit));
        Assert.Equal(PeerLinkError.RequestTimeout, error.Error);
    }

    [Fact]
    public async Task PingMeasuresARoundTrip()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true);

        TimeSpan rtt = await pair.Initiator.PingAsync().WaitAsync(Limit);

        Assert.InRange(rtt, TimeSpan.Zero, Limit);
    }

    [Fact]
    public async Task BothDirectionsRekeyOnTheirMessageBudgetAndKeepWorking()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true, o => o.RekeyAfterMessages = 5, o => o.RekeyAfterMessages = 7);

        for (int i = 0; i < 40; i++)
        {
            await pair.Initiator.SendAsync(BitConverter.GetBytes(i));
            Assert.Equal(i, BitConverter.ToInt32((await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.Span));
            await pair.Responder.SendAsync(BitConverter.GetBytes(-i));
            Assert.Equal(-i, BitConverter.ToInt32((await pair.Initiator.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.Span));
        }

        Assert.InRange(pair.Initiator.SendRekeys, 6, 40);
        Assert.Equal(pair.Initiator.SendRekeys, pair.Responder.ReceiveRekeys);
        Assert.InRange(pair.Responder.SendRekeys, 4, 40);
        Assert.Equal(pair.Responder.SendRekeys, pair.Initiator.ReceiveRekeys);
    }

    [Fact]
    public async Task ASenderFailsFastWhenThePeerDoesNotReadAndFailModeIsSet()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true,
            o =>
            {
                o.MaxSendQueueBytes = 64 * 1024;
                o.SendQueueFullMode = SendQueueFullMode.Fail;
                o.CloseTimeout = TimeSpan.FromMilliseconds(500);   // the peer never reads, so a close cannot complete
            },
            o =>
            {
                o.MaxReceiveQueueBytes = 64 * 1024;
                o.CloseTimeout = TimeSpan.FromMilliseconds(500);
            });
        byte[] chunk = new byte[8 * 1024];

        // The responder never reads: its queue, the pipe (1 MiB) and then the sender's queue fill up.
        PeerLinkException? full = null;
        for (int i = 0; i < 10_000 && full is null; i++)
        {
            try
            {
                await pair.Initiator.SendAsync(chunk);
            }
            catch (PeerLinkException e)
            {
                full = e;
            }
        }

        Assert.NotNull(full);
        Assert.Equal(PeerLinkError.SendQueueFull, full!.Error);
    }

    [Fact]
    public async Task ASenderWaitsWhileThePeerDoesNotReadAndResumesWhenItDoes()
    {
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true, o => o.MaxSendQueueBytes = 64 * 1024, o => o.MaxReceiveQueueBytes = 64 * 1024);
        byte[] chunk = new byte[8 * 1024];
        int sent = 0;
        Task sender = Task.Run(async () =>
        {
            for (; sent < 1000; sent++)
            {
                await pair.Initiator.SendAsync(chunk);
            }
        });

        // Nobody reads: the sender must stall well before 1000 x 8 KiB, instead of buffering it all. Wait for the stall
        // itself (a send waiting for queue space), not for a guess of how long it takes.
        Assert.True(SpinWait.SpinUntil(() => pair.Initiator.IsSendBlocked || sender.IsCompleted, Limit));
        Assert.False(sender.IsCompleted);
        int stalledAt = sent;
        Assert.InRange(stalledAt, 1, 300);

        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(chunk.Length, (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.Length);
        }

        await sender.WaitAsync(Limit);
    }
}
