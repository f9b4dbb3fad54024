using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Sessions;
using PeerLink.Testing;
using PeerLink.Transport;
using Xunit;

namespace PeerLink.Tests.Transport;

/// <summary>
/// A session over a connection whose path changes: make-before-break to a new path, fallback when a path dies or goes
/// silent, and nothing lost, duplicated or reordered in any of them. In memory, on clocks the test controls.
/// </summary>
public sealed class MigratingConnectionTests : PeerIdentities
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(2);

    [Fact]
    public async Task ASessionMovesToANewPathWithoutLosingOrReorderingAnything()
    {
        await using var pair = await OpenAsync(new FakeTimeProvider());
        const int Count = 3000;
        Task<int> receiving = ReceiveNumberedAsync(pair.Responder, Count);
        Task sending = SendNumberedAsync(pair.Initiator, Count, atHalf: () =>
        {
            (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
            pair.InitiatorConnection.AddPathAndMove(a, "direct");
            pair.ResponderConnection.AddPathAndMove(b, "direct");
        });

        await sending.WaitAsync(Limit);
        Assert.Equal(Count, await receiving.WaitAsync(Limit));
        await EchoAsync(pair);   // the responder's direction moved too

        Assert.Equal("direct", pair.InitiatorConnection.CurrentPath);
        Assert.Equal("direct", pair.ResponderConnection.CurrentPath);
        Assert.Equal(2, pair.InitiatorConnection.Paths.Count);   // the relay stays as the fallback
    }

    [Fact]
    public async Task WhenTheNewPathBreaksMidTransferTheDataFallsBackToTheOld()
    {
        await using var pair = await OpenAsync(new FakeTimeProvider());
        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        pair.InitiatorConnection.AddPathAndMove(a, "direct");
        pair.ResponderConnection.AddPathAndMove(b, "direct");
        await EchoAsync(pair);

        const int Count = 3000;
        Task<int> receiving = ReceiveNumberedAsync(pair.Responder, Count);
        Task sending = SendNumberedAsync(pair.Initiator, Count, atHalf: () => a.Abort());   // a reset, mid-transfer

        await sending.WaitAsync(Limit);
        Assert.Equal(Count, await receiving.WaitAsync(Limit));
        await EchoAsync(pair);

        Assert.Equal("relayed", pair.InitiatorConnection.CurrentPath);
        Assert.Equal("relayed", pair.ResponderConnection.CurrentPath);
        Assert.Equal(["relayed"], pair.InitiatorConnection.Paths);
    }

    [Fact]
    public async Task APathThatGoesSilentIsDroppedAfterThreeKeepAlives()
    {
        var clock = new FakeTimeProvider();
        await using var pair = await OpenAsync(clock);
        var link = new CuttableLink();
        pair.InitiatorConnection.AddPathAndMove(link.First, "direct");
        pair.ResponderConnection.AddPathAndMove(link.Second, "direct");
        await EchoAsync(pair);

        link.Cut();   // a black hole: no reset, no FIN, nothing more arrives either way
        await pair.Initiator.SendAsync(Numbered(1));
        for (int step = 0; step < 4; step++)
        {
            // One keepalive at a time, and only after both sides took in the other's ACK on the relay, so that the
            // relay (which carries them) stays alive while the direct path (which does not) falls silent.
            long initiatorFrames = pair.InitiatorConnection.FramesReceived;
            long responderFrames = pair.ResponderConnection.FramesReceived;
            clock.Advance(KeepAlive);
            await pair.InitiatorConnection.WhenFramesReceivedAsync(initiatorFrames + 1).WaitAsync(Limit);
            await pair.ResponderConnection.WhenFramesReceivedAsync(responderFrames + 1).WaitAsync(Limit);
        }

        PeerMessage? message = await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit);

        Assert.Equal(1, BinaryPrimitives.ReadInt32BigEndian(message!.Value.Payload.Span));
        Assert.Equal("relayed", pair.InitiatorConnection.CurrentPath);
    }

    /// <summary>
    /// An application that does not read for longer than three keepalives, with data waiting: the path layer stops
    /// reading its path meanwhile (the session takes no more), and that silence is its own, not the path's. The path
    /// stays, and everything is delivered once the application reads (the lab's relayed bulk echo lost its relay so).
    /// </summary>
    [Fact]
    public async Task APathIsNotSilentWhileTheApplicationIsNotReading()
    {
        var clock = new FakeTimeProvider();
        var (mine, theirs) = PeerConnection.CreatePair();
        var connection = new MigratingConnection(mine, "relayed", clock, KeepAlive);
        try
        {
            PipeWriter peer = theirs.Transport.Output;
            WriteFrame(peer, MigratingConnection.Resume, 0, []);
            byte[] chunk = new byte[32 * 1024];
            for (int i = 0; i < 8; i++)
            {
                chunk[0] = (byte)i;
                WriteFrame(peer, MigratingConnection.Data, chunk.Length, chunk);
            }

            Task<FlushResult> flushing = peer.FlushAsync().AsTask();   // completes once the path layer reads again
            // 128 KiB delivered and left unread: the session's pipe is full, and the path layer waits to deliver more.
            ReadResult full = await connection.Input.ReadAtLeastAsync(128 * 1024).AsTask().WaitAsync(Limit);
            connection.Input.AdvanceTo(full.Buffer.Start, full.Buffer.End);
            for (int i = 0; i < 4; i++)
            {
                clock.Advance(KeepAlive);
            }

            Assert.Equal(["relayed"], connection.Paths);
            Assert.Equal(8 * 32 * 1024, await DrainAsync(connection.Input, 8 * 32 * 1024).WaitAsync(Limit));
            await flushing.WaitAsync(Limit);
            Assert.Equal(["relayed"], connection.Paths);
        }
        finally
        {
            await theirs.DisposeAsync();
            Task disposing = connection.DisposeAsync().AsTask();
            clock.Advance(TimeSpan.FromSeconds(6));   // disposal waits at most 5 s (of this clock) for the FIN to go out
            await disposing.WaitAsync(Limit);
        }
    }

    [Fact]
    public async Task AnOldResumeReadAfterTheFallbackDoesNotStrandTheData()
    {
        // The peer moved to a direct path (RESUME there) and at once fell back to the relay (RESUME there). This side read
        // the relay's frames first and the direct path's old RESUME after them; then the direct path died. The relay's
        // data must not wait for a path that is gone: this side asks for it again (RESEND), and it arrives.
        var (relay, peerRelay) = PeerConnection.CreatePair();
        await using var connection = new MigratingConnection(relay, "relayed", new FakeTimeProvider(), KeepAlive);
        (PeerConnection direct, PeerConnection peerDirect) = PeerConnection.CreatePair();
        await using PeerConnection peerRelayEnd = peerRelay;     // the peer's ends go first: the connection's loops then end
        await using PeerConnection peerDirectEnd = peerDirect;
        connection.AddPathAndMove(direct, "direct");
        byte[] data = new byte[300];
        Random.Shared.NextBytes(data);
        PipeWriter toRelay = peerRelay.Transport.Output;
        WriteFrame(toRelay, MigratingConnection.Resume, 0, []);
        WriteFrame(toRelay, MigratingConnection.Data, 100, data.AsSpan(0, 100));
        WriteFrame(toRelay, MigratingConnection.Move, 100, []);
        WriteFrame(toRelay, MigratingConnection.Resume, 100, []);
        WriteFrame(toRelay, MigratingConnection.Data, 100, data.AsSpan(100, 100));
        await toRelay.FlushAsync();
        Assert.Equal(data[..200], await ReadExactlyAsync(connection.Input, 200));

        WriteFrame(peerDirect.Transport.Output, MigratingConnection.Resume, 100, []);   // the old one
        await peerDirect.Transport.Output.FlushAsync();
        await connection.WhenFramesReceivedAsync(6).WaitAsync(Limit);
        peerDirect.Abort();
        WriteFrame(toRelay, MigratingConnection.Data, 100, data.AsSpan(200, 100));
        await toRelay.FlushAsync();

        Assert.Equal(200, await NextFrameAsync(peerRelay.Transport.Input, MigratingConnection.Resend).WaitAsync(Limit));
        WriteFrame(toRelay, MigratingConnection.Resume, 200, []);
        WriteFrame(toRelay, MigratingConnection.Data, 100, data.AsSpan(200, 100));
        await toRelay.FlushAsync();
        Assert.Equal(data[200..], await ReadExactlyAsync(connection.Input, 100));
    }

    [Fact]
    public async Task WhenTheLastPathDiesTheSessionFailsWithItsReason()
    {
        await using var pair = await OpenAsync(new FakeTimeProvider());

        pair.InitiatorConnection.DropPath("relayed");
        var end = await Assert.ThrowsAsync<PeerLinkException>(() => pair.Initiator.Completion.WaitAsync(Limit));

        Assert.Equal(PeerLinkError.ConnectionAborted, end.Error);
        Assert.Contains("relayed path", end.Message);
    }

    [Fact]
    public async Task ARelayLimitDoesNotMatterOnceTheSessionIsDirect()
    {
        await using var pair = await OpenAsync(new FakeTimeProvider());
        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        pair.InitiatorConnection.AddPathAndMove(a, "direct");
        pair.ResponderConnection.AddPathAndMove(b, "direct");
        await EchoAsync(pair);

        pair.RelayOfInitiator.Abort(new PeerLinkException(PeerLinkError.RelayLimitExceeded, "The relay reached its byte limit."));
        await EchoAsync(pair);

        Assert.False(pair.Initiator.Completion.IsCompleted);
    }

    [Fact]
    public async Task AnUnknownFrameIsAProtocolViolation()
    {
        var (mine, theirs) = PeerConnection.CreatePair();
        await using var connection = new MigratingConnection(mine, "relayed", new FakeTimeProvider(), KeepAlive);
        byte[] frame = new byte[9];
        frame[0] = 99;
        await theirs.Transport.Output.WriteAsync(frame);

        ReadResult result = await Assert.ThrowsAsync<PeerLinkException>(async () => await connection.Input.ReadAsync().AsTask().WaitAsync(Limit)) is { Error: PeerLinkError.ProtocolViolation }
            ? default
            : throw new Xunit.Sdk.XunitException("expected a protocol violation");
        await theirs.DisposeAsync();
    }

    [Fact]
    public async Task AnAckForBytesNeverSentIsIgnored()
    {
        var (mine, theirs) = PeerConnection.CreatePair();
        await using var connection = new MigratingConnection(mine, "relayed", new FakeTimeProvider(), KeepAlive);
        byte[] frame = new byte[9];
        frame[0] = MigratingConnection.Ack;
        BinaryPrimitives.WriteInt64BigEndian(frame.AsSpan(1), 1_000_000);
        await connection.Output.WriteAsync(new byte[100]);
        await theirs.Transport.Output.WriteAsync(frame);
        await ReadAtLeastAsync(theirs, 9 + 9 + 100);   // RESUME(0), DATA(100): sent, not acknowledged

        Assert.Equal(100, connection.Unacknowledged);
        await theirs.DisposeAsync();
    }

    [Fact]
    public async Task WhatTheSessionWroteLeavesAsDataFramesOfAtMost32KiB()
    {
        var (mine, theirs) = PeerConnection.CreatePair();
        await using var connection = new MigratingConnection(mine, "relayed", new FakeTimeProvider(), KeepAlive);
        byte[] written = new byte[100 * 1024];
        Random.Shared.NextBytes(written);
        await connection.Output.WriteAsync(written);

        ReadResult result = await theirs.Transport.Input.ReadAtLeastAsync(9 + (4 * 9) + written.Length).AsTask().WaitAsync(Limit);
        byte[] wire = result.Buffer.ToArray();
        theirs.Transport.Input.AdvanceTo(result.Buffer.End);
        Assert.Equal(MigratingConnection.Resume, wire[0]);
        Assert.Equal(0, BinaryPrimitives.ReadInt64BigEndian(wire.AsSpan(1)));
        int at = 9;
        int offset = 0;
        foreach (int expected in new[] { 32768, 32768, 32768, 4096 })
        {
            Assert.Equal(MigratingConnection.Data, wire[at]);
            Assert.Equal(expected, BinaryPrimitives.ReadInt64BigEndian(wire.AsSpan(at + 1)));
            Assert.True(wire.AsSpan(at + 9, expected).SequenceEqual(written.AsSpan(offset, expected)));
            at += 9 + expected;
            offset += expected;
        }

        Assert.Equal(wire.Length, at);
        await theirs.DisposeAsync();
    }

    [Fact]
    public async Task TheReceiverAcknowledgesEvery256KiB()
    {
        var (mine, theirs) = PeerConnection.CreatePair();
        await using var connection = new MigratingConnection(mine, "relayed", new FakeTimeProvider(), KeepAlive);
        Task<long> draining = DrainAsync(connection.Input, 512 * 1024);
        PipeWriter peer = theirs.Transport.Output;
        WriteFrame(peer, MigratingConnection.Resume, 0, []);
        byte[] chunk = new byte[32 * 1024];
        for (int i = 0; i < 16; i++)
        {
            WriteFrame(peer, MigratingConnection.Data, chunk.Length, chunk);
            await peer.FlushAsync();
        }

        Assert.Equal(512 * 1024, await draining.WaitAsync(Limit));
        var acks = new System.Collections.Generic.List<long>();
        PipeReader input = theirs.Transport.Input;
        while (acks.Count < 2)
        {
            ReadResult result = await input.ReadAsync().AsTask().WaitAsync(Limit);
            ReadOnlySequence<byte> buffer = result.Buffer;
            while (buffer.Length >= 9)
            {
                byte[] frame = buffer.Slice(0, 9).ToArray();
                Assert.NotEqual(MigratingConnection.Data, frame[0]);   // nothing was sent this way
                if (frame[0] == MigratingConnection.Ack)
                {
                    acks.Add(BinaryPrimitives.ReadInt64BigEndian(frame.AsSpan(1)));
                }

                buffer = buffer.Slice(9);
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }

        Assert.Equal([256 * 1024, 512 * 1024], acks);   // not one per 32 KiB frame, nor per 64 KiB
        await theirs.DisposeAsync();
    }

    private static void WriteFrame(PipeWriter output, byte type, long value, ReadOnlySpan<byte> data)
    {
        Span<byte> frame = output.GetSpan(9 + data.Length);
        frame[0] = type;
        BinaryPrimitives.WriteInt64BigEndian(frame[1..], value);
        data.CopyTo(frame[9..]);
        output.Advance(9 + data.Length);
    }

    private static async Task<byte[]> ReadExactlyAsync(PipeReader input, int count)
    {
        ReadResult result = await input.ReadAtLeastAsync(count).AsTask().WaitAsync(Limit);
        byte[] read = result.Buffer.Slice(0, count).ToArray();
        input.AdvanceTo(result.Buffer.GetPosition(count));
        return read;
    }

    /// <summary>The value of the next control frame of <paramref name="type"/> (the other side sends no DATA here).</summary>
    private static async Task<long> NextFrameAsync(PipeReader input, byte type)
    {
        while (true)
        {
            ReadResult result = await input.ReadAsync();
            ReadOnlySequence<byte> buffer = result.Buffer;
            while (buffer.Length >= 9)
            {
                byte[] frame = buffer.Slice(0, 9).ToArray();
                buffer = buffer.Slice(9);
                Assert.NotEqual(MigratingConnection.Data, frame[0]);
                if (frame[0] == type)
                {
                    input.AdvanceTo(buffer.Start);
                    return BinaryPrimitives.ReadInt64BigEndian(frame.AsSpan(1));
                }
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static async Task<long> DrainAsync(PipeReader input, long bytes)
    {
        long total = 0;
        while (total < bytes)
        {
            ReadResult result = await input.ReadAsync();
            total += result.Buffer.Length;
            input.AdvanceTo(result.Buffer.End);
        }

        return total;
    }

    private static async Task ReadAtLeastAsync(PeerConnection connection, int bytes)
    {
        ReadResult result = await connection.Transport.Input.ReadAtLeastAsync(bytes).AsTask().WaitAsync(Limit);
        connection.Transport.Input.AdvanceTo(result.Buffer.End);
    }

    private static byte[] Numbered(int i)
    {
        byte[] message = new byte[4 + (i % 7 * 300)];
        BinaryPrimitives.WriteInt32BigEndian(message, i);
        return message;
    }

    private static async Task SendNumberedAsync(SecureSession session, int count, Action atHalf)
    {
        for (int i = 0; i < count; i++)
        {
            if (i == count / 2)
            {
                atHalf();
            }

            await session.SendAsync(Numbered(i));
        }
    }

    private static async Task<int> ReceiveNumberedAsync(SecureSession session, int count)
    {
        for (int i = 0; i < count; i++)
        {
            PeerMessage? message = await session.ReceiveAsync();
            Assert.NotNull(message);
            Assert.Equal(i, BinaryPrimitives.ReadInt32BigEndian(message.Value.Payload.Span));
            Assert.Equal(Numbered(i).Length, message.Value.Payload.Length);
        }

        return count;
    }

    private static async Task EchoAsync(Pair pair)
    {
        await pair.Initiator.SendAsync(new byte[] { 1 });
        Assert.Equal(new byte[] { 1 }, (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
        await pair.Responder.SendAsync(new byte[] { 2 });
        Assert.Equal(new byte[] { 2 }, (await pair.Initiator.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value.Payload.ToArray());
    }

    private async Task<Pair> OpenAsync(FakeTimeProvider clock)
    {
        (PeerConnection relayA, PeerConnection relayB) = PeerConnection.CreatePair();
        var initiatorConnection = new MigratingConnection(relayA, "relayed", clock, KeepAlive);
        var responderConnection = new MigratingConnection(relayB, "relayed", clock, KeepAlive);
        Task<SecureSession> accepting = SecureSession.AcceptAsync(responderConnection, SessionPair.Options(Bob));
        SecureSession initiator = await SecureSession.ConnectAsync(initiatorConnection, SessionPair.Options(Alice), Bob.PeerId).WaitAsync(Limit);
        SecureSession responder = await accepting.WaitAsync(Limit);
        return new Pair(initiator, responder, initiatorConnection, responderConnection, relayA);
    }

    private sealed record Pair(SecureSession Initiator, SecureSession Responder, MigratingConnection InitiatorConnection, MigratingConnection ResponderConnection, PeerConnection RelayOfInitiator) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Initiator.Abort();
            Responder.Abort();
            await Initiator.DisposeAsync();
            await Responder.DisposeAsync();
        }
    }

    /// <summary>Two connections joined by pumps that can be cut: afterwards bytes vanish in both directions, with no reset.</summary>
    private sealed class CuttableLink
    {
        private volatile bool _cut;

        public CuttableLink()
        {
            var toSecond = new Pipe();
            var fromFirst = new Pipe();
            var toFirst = new Pipe();
            var fromSecond = new Pipe();
            First = PeerConnection.Create(new DuplexPipe(toFirst.Reader, fromFirst.Writer));
            Second = PeerConnection.Create(new DuplexPipe(toSecond.Reader, fromSecond.Writer));
            _ = PumpAsync(fromFirst.Reader, toSecond.Writer);
            _ = PumpAsync(fromSecond.Reader, toFirst.Writer);
        }

        public PeerConnection First { get; }

        public PeerConnection Second { get; }

        public void Cut() => _cut = true;

        private async Task PumpAsync(PipeReader from, PipeWriter to)
        {
            try
            {
                while (true)
                {
                    ReadResult result = await from.ReadAsync();
                    if (!_cut)
                    {
                        foreach (ReadOnlyMemory<byte> segment in result.Buffer)
                        {
                            await to.WriteAsync(segment);
                        }
                    }

                    from.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted)
                    {
                        return;
                    }
                }
            }
            catch (Exception)
            {
                // the test is over
            }
        }

        private sealed record DuplexPipe(PipeReader Input, PipeWriter Output) : IDuplexPipe;
    }
}
