using System;
using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Testing;
using PeerLink.Transport.Datagrams;
using Xunit;

namespace PeerLink.FunctionalTests.Transport;

/// <summary>
/// Reliable, ordered delivery over datagrams through a link that loses, duplicates, delays and reorders: every byte
/// arrives once and in order, or the connection reports that the link is dead. In memory, on the real clock (the
/// protocol's own timers drive the recovery; the test only awaits the outcome).
/// </summary>
public sealed class DatagramDeliveryTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(0.0, 0, 0, 4 * 1024 * 1024)]
    [InlineData(0.01, 20, 5, 1024 * 1024)]
    [InlineData(0.05, 50, 5, 256 * 1024)]
    [InlineData(0.20, 100, 5, 32 * 1024)]
    [InlineData(0.01, 20, 80, 256 * 1024)]     // heavy reordering: each datagram's delay anywhere in 20–100 ms
    public async Task EveryByteArrivesOnceAndInOrder(double loss, int delayMs, int jitterMs, int size)
    {
        var settings = new DatagramConnectionSettings();
        (DatagramConnection a, DatagramConnection b, ImpairedDatagramLink toB, ImpairedDatagramLink toA) = ImpairedDatagramLink.Pair(settings, seed: 42, impair: link =>
        {
            link.Loss = loss;
            link.Duplication = loss / 2;
            link.MaxDatagramSize = 1500;      // an Ethernet path
            link.MinDelay = TimeSpan.FromMilliseconds(delayMs);
            link.MaxDelay = TimeSpan.FromMilliseconds(delayMs + jitterMs);
        });
        await using DatagramConnection first = a;
        await using DatagramConnection second = b;
        byte[] forward = RandomNumberGenerator.GetBytes(size);
        byte[] backward = RandomNumberGenerator.GetBytes(size / 4);

        Task sendA = WriteAndCompleteAsync(a.Transport.Output, forward);
        Task sendB = WriteAndCompleteAsync(b.Transport.Output, backward);
        byte[] atB = await ReadToEndAsync(b.Transport.Input).WaitAsync(Limit);
        byte[] atA = await ReadToEndAsync(a.Transport.Input).WaitAsync(Limit);
        await Task.WhenAll(sendA, sendB).WaitAsync(Limit);

        Assert.True(forward.AsSpan().SequenceEqual(atB), "a → b arrived whole and in order");
        Assert.True(backward.AsSpan().SequenceEqual(atA), "b → a arrived whole and in order");
        if (loss > 0)
        {
            Assert.True(toB.Dropped > 0 && a.Retransmissions > 0, "the link lost datagrams and the sender resent them");
        }

        await a.ConnectionClosed.WaitHandle.WaitOneAsync(Limit);
        await b.ConnectionClosed.WaitHandle.WaitOneAsync(Limit);
    }

    [Theory]
    [InlineData(1280, 1232)]      // the IPv6 minimum: the base size, no probe passes
    [InlineData(1500, 1452)]      // Ethernet: the first probe passes, the jumbo one does not
    [InlineData(9000, 8952)]
    [InlineData(0, 16384)]        // no limit (a loopback): the largest PeerLink uses
    public async Task PathMtuDiscoveryFindsTheLargestSizeThatPassesAndDataFlowsAtIt(int pathMtu, int expected)
    {
        var settings = new DatagramConnectionSettings();
        (DatagramConnection a, DatagramConnection b, ImpairedDatagramLink toB, _) = ImpairedDatagramLink.Pair(settings, impair: link => link.MaxDatagramSize = pathMtu);
        await using DatagramConnection first = a;
        await using DatagramConnection second = b;
        // Some traffic gives a round trip to time the probes by; the search then goes on by itself.
        await a.Transport.Output.WriteAsync(new byte[1000]);
        await ReadExactlyAsync(b.Transport.Input, 1000).WaitAsync(Limit);
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (!a.IsPathMtuSearchDone)
        {
            Assert.True(deadline.Elapsed < Limit, "the path MTU search did not end");
            await Task.Delay(10);   // polls a state; the search's own timers decide when it ends
        }

        Assert.Equal(expected, a.DatagramSize);
        byte[] data = RandomNumberGenerator.GetBytes(2 * 1024 * 1024);
        Task sending = WriteAndCompleteAsync(a.Transport.Output, data);
        byte[] received = await ReadToEndAsync(b.Transport.Input).WaitAsync(Limit);
        await sending.WaitAsync(Limit);
        Assert.True(data.AsSpan().SequenceEqual(received), "the data flows at the size found");
        Assert.Equal(pathMtu == 0 ? 0 : 3, toB.Dropped);     // only the three tries of the size that does not pass
    }

    [Fact]
    public async Task WhenTheLinkDiesTheConnectionSaysSoInsteadOfHanging()
    {
        var settings = new DatagramConnectionSettings { DeliveryTimeout = TimeSpan.FromSeconds(1) };
        (DatagramConnection a, DatagramConnection b, ImpairedDatagramLink toB, ImpairedDatagramLink toA) = ImpairedDatagramLink.Pair(settings);
        await using DatagramConnection first = a;
        await using DatagramConnection second = b;
        await a.Transport.Output.WriteAsync(new byte[1000]);
        await ReadExactlyAsync(b.Transport.Input, 1000).WaitAsync(Limit);

        toB.Dead = true;
        toA.Dead = true;
        await a.Transport.Output.WriteAsync(new byte[100_000]);
        PeerLinkException e = await Assert.ThrowsAsync<PeerLinkException>(async () =>
        {
            while (true)
            {
                ReadResult result = await a.Transport.Input.ReadAsync().AsTask().WaitAsync(Limit);
                a.Transport.Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
            }
        });
        Assert.Equal(PeerLinkError.PeerTimeout, e.Error);
        Assert.True(a.Timeouts > 0);
    }

    [Fact]
    public async Task AnIdleConnectionSendsKeepalivesUntilTheApplicationHasBeenQuietTooLong()
    {
        // A fake clock jumps: the timers due within a step fire at its end, so each step is followed by the deliveries
        // it caused and the acknowledgements those owe.
        var time = new FakeTimeProvider();
        var settings = new DatagramConnectionSettings { Time = time, KeepAliveInterval = TimeSpan.FromSeconds(25), KeepAliveIdleLimit = TimeSpan.FromSeconds(60) };
        (DatagramConnection a, DatagramConnection b, ImpairedDatagramLink toB, ImpairedDatagramLink toA) = ImpairedDatagramLink.Pair(settings);
        try
        {
            await a.Transport.Output.WriteAsync(new byte[1000]);
            await ReadExactlyAsync(b.Transport.Input, 1000).WaitAsync(Limit);
            await StepAsync(TimeSpan.Zero);

            // Quiet, but the application was active lately: every 25 s something goes out (a PING, or an ACK owed).
            Assert.True(await StepAsync(TimeSpan.FromSeconds(25)) > 0, "nothing kept the mappings open after 25 s");
            Assert.True(await StepAsync(TimeSpan.FromSeconds(25)) > 0, "nothing kept the mappings open after 50 s");
            Assert.True(a.KeepAlivesSent + b.KeepAlivesSent >= 1);

            // 75 s, 100 s, 125 s: the application has moved nothing for more than 60 s, and nothing at all goes out.
            Assert.Equal(0, await StepAsync(TimeSpan.FromSeconds(25)));
            Assert.Equal(0, await StepAsync(TimeSpan.FromSeconds(25)));
            Assert.Equal(0, await StepAsync(TimeSpan.FromSeconds(25)));

            // Data again: keepalives resume.
            await a.Transport.Output.WriteAsync(new byte[10]);
            await ReadExactlyAsync(b.Transport.Input, 10).WaitAsync(Limit);
            await StepAsync(TimeSpan.Zero);
            long pings = a.KeepAlivesSent + b.KeepAlivesSent;
            Assert.True(await StepAsync(TimeSpan.FromSeconds(25)) > 0, "keepalives did not resume");
            Assert.True(await StepAsync(TimeSpan.FromSeconds(25)) > 0);
            Assert.True(a.KeepAlivesSent + b.KeepAlivesSent > pings);
        }
        finally
        {
            a.Abort();   // a graceful close would wait for the frozen clock
            b.Abort();
            await a.DisposeAsync();
            await b.DisposeAsync();
        }

        // Moves the clock, then lets what that sent arrive and be answered; returns the datagrams the step sent.
        async Task<long> StepAsync(TimeSpan step)
        {
            long before = toA.Sent + toB.Sent;
            time.Advance(step);
            long sent = toA.Sent + toB.Sent - before;
            for (int round = 0; round < 4; round++)
            {
                await UntilAsync(() => a.DatagramsReceived == toA.Sent && b.DatagramsReceived == toB.Sent);
                time.Advance(settings.MaxAckDelay);   // delayed acknowledgements go out
            }

            await UntilAsync(() => a.DatagramsReceived == toA.Sent && b.DatagramsReceived == toB.Sent);
            return sent;
        }
    }

    [Fact]
    public async Task ALostTailIsFoundByAProbeBeforeTheRetransmissionTimeout()
    {
        var time = new FakeTimeProvider();
        var settings = new DatagramConnectionSettings { Time = time, KeepAliveInterval = TimeSpan.Zero };
        (DatagramConnection a, DatagramConnection b, ImpairedDatagramLink toB, ImpairedDatagramLink toA) = ImpairedDatagramLink.Pair(settings);
        try
        {
            // A round trip measured, everything acknowledged.
            await a.Transport.Output.WriteAsync(new byte[1000]);
            await ReadExactlyAsync(b.Transport.Input, 1000).WaitAsync(Limit);
            for (int i = 0; i < 4; i++)
            {
                await UntilAsync(() => a.DatagramsReceived == toA.Sent && b.DatagramsReceived == toB.Sent);
                time.Advance(settings.MaxAckDelay);
            }

            // The last datagram of a flight is lost, and nothing follows it.
            toB.Dead = true;
            await a.Transport.Output.WriteAsync(new byte[100]);
            await UntilAsync(() => toB.Dropped == 1);
            toB.Dead = false;

            // 2·SRTT + the peer's acknowledgement delay later, inside the 20 ms floor of the retransmission timeout: a
            // probe, whose acknowledgement shows the hole, and the lost bytes go again. The clock moves a millisecond at
            // a time (timers fire inside Advance): how long SRTT came out depends on when the first exchange's delayed
            // acknowledgement went out relative to the clock's steps above, between 0 and 5 ms.
            for (int ms = 0; ms < 19 && a.TailProbes == 0; ms++)
            {
                time.Advance(TimeSpan.FromMilliseconds(1));
            }

            Assert.True(a.TailProbes == 1, $"{a.TailProbes} tail probes within 19 ms (SRTT {a.SmoothedRtt.TotalMilliseconds} ms)");
            await ReadExactlyAsync(b.Transport.Input, 100).WaitAsync(Limit);

            Assert.Equal(1, a.TailProbes);
            Assert.Equal(0, a.Timeouts);
        }
        finally
        {
            a.Abort();
            b.Abort();
            await a.DisposeAsync();
            await b.DisposeAsync();
        }
    }

    private static async Task UntilAsync(Func<bool> condition)
    {
        using var limit = new CancellationTokenSource(Limit);
        while (!condition())
        {
            await Task.Delay(1, limit.Token);   // polls a state the in-memory link changes; the outcome does not depend on timing
        }
    }

    [Fact]
    public async Task AWindowUpdateThatIsLostIsSentAgain()
    {
        // The sender waits at the receiver's limit with everything acknowledged, and the updates that would move it are
        // lost: nothing else is in flight, so unless the receiver sends its limit again both sides wait for ever.
        const int Window = 256 * 1024;   // the least the options allow
        var settings = new DatagramConnectionSettings { ReceiveWindowBytes = Window };
        (DatagramConnection a, DatagramConnection b, _, ImpairedDatagramLink toA) = ImpairedDatagramLink.Pair(settings);
        await using DatagramConnection first = a;
        await using DatagramConnection second = b;
        byte[] data = RandomNumberGenerator.GetBytes(1024 * 1024);
        Task writing = WriteAndCompleteAsync(a.Transport.Output, data);
        await UntilAsync(() => a.StoppedAtPeerLimit is not null && b.IsHoldingForReader);   // nobody reads b yet
        long limit = a.StoppedAtPeerLimit!.Value;

        toA.Dead = true;
        byte[] head = new byte[limit];
        await ReadExactlyAsync(b.Transport.Input, head).WaitAsync(Limit);   // b takes all it has: its new limit is lost
        await UntilAsync(() => b.LimitSent == limit + Window);
        Assert.True(toA.Dropped > 0);
        Assert.Equal(limit, a.StoppedAtPeerLimit);
        toA.Dead = false;

        byte[] tail = await ReadToEndAsync(b.Transport.Input).WaitAsync(Limit);
        await writing.WaitAsync(Limit);
        Assert.True(data.AsSpan().SequenceEqual([.. head, .. tail]));
    }

    [Fact]
    public async Task AReaderThatFallsBehindStopsTheSenderAtTheWindow()
    {
        var settings = new DatagramConnectionSettings { ReceiveWindowBytes = 256 * 1024, SendBufferBytes = 256 * 1024 };
        (DatagramConnection a, DatagramConnection b, _, _) = ImpairedDatagramLink.Pair(settings);
        await using DatagramConnection first = a;
        await using DatagramConnection second = b;
        byte[] data = RandomNumberGenerator.GetBytes(4 * 1024 * 1024);
        Task writing = WriteAndCompleteAsync(a.Transport.Output, data);

        // Nobody reads b: b holds back its limit, a stops at it with its send buffer full; 4 MiB is not buffered.
        while (!(a.IsWaitingForSendSpace && b.IsHoldingForReader))
        {
            Assert.False(writing.IsCompleted, "the writer was not held back by flow control");
            await Task.Delay(5);   // polls a state; the outcome does not depend on timing
        }

        Assert.False(writing.IsCompleted);

        byte[] atB = await ReadToEndAsync(b.Transport.Input).WaitAsync(Limit);
        await writing.WaitAsync(Limit);
        Assert.True(data.AsSpan().SequenceEqual(atB));
    }

    private static async Task WriteAndCompleteAsync(PipeWriter output, byte[] data)
    {
        for (int at = 0; at < data.Length; at += 16 * 1024)
        {
            FlushResult result = await output.WriteAsync(data.AsMemory(at, Math.Min(16 * 1024, data.Length - at)));
            Assert.False(result.IsCompleted);
        }

        await output.CompleteAsync();
    }

    private static async Task<byte[]> ReadToEndAsync(PipeReader input)
    {
        var collected = new ArrayBufferWriter<byte>();
        while (true)
        {
            ReadResult result = await input.ReadAsync();
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                collected.Write(segment.Span);
            }

            input.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return collected.WrittenSpan.ToArray();
            }
        }
    }

    private static async Task ReadExactlyAsync(PipeReader input, byte[] destination)
    {
        int at = 0;
        while (at < destination.Length)
        {
            ReadResult result = await input.ReadAsync();
            ReadOnlySequence<byte> taken = result.Buffer.Slice(0, Math.Min(result.Buffer.Length, destination.Length - at));
            taken.CopyTo(destination.AsSpan(at));
            at += (int)taken.Length;
            input.AdvanceTo(taken.End);
        }
    }

    private static async Task ReadExactlyAsync(PipeReader input, int count)
    {
        while (true)
        {
            ReadResult result = await input.ReadAsync();
            if (result.Buffer.Length >= count)
            {
                input.AdvanceTo(result.Buffer.GetPosition(count));
                return;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }
}

internal static class WaitHandleExtensions
{
    public static Task WaitOneAsync(this WaitHandle handle, TimeSpan timeout)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        RegisteredWaitHandle registration = ThreadPool.RegisterWaitForSingleObject(handle, (_, timedOut) =>
        {
            if (timedOut)
            {
                done.TrySetException(new TimeoutException());
            }
            else
            {
                done.TrySetResult();
            }
        }, null, timeout, executeOnlyOnce: true);
        return done.Task.ContinueWith(t => { registration.Unregister(null); return t; }).Unwrap();
    }
}
