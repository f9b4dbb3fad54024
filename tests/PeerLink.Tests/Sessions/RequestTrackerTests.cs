using System;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Sessions;
using Xunit;

namespace PeerLink.Tests.Sessions;

/// <summary>Requests matched with responses by id, and the one ping in flight with its PONG.</summary>
public sealed class RequestTrackerTests
{
    [Fact]
    public async Task ResponsesFindTheirRequestsAndLateOnesAreDropped()
    {
        var tracker = new RequestTracker(new FakeTimeProvider());
        (uint first, TaskCompletionSource<byte[]> a) = tracker.StartRequest();
        (uint second, TaskCompletionSource<byte[]> b) = tracker.StartRequest();
        Assert.NotEqual(first, second);

        byte[] body = [7, 8];
        tracker.OnResponse(second, body);
        body[0] = 0;                                    // the response was copied
        Assert.Equal(new byte[] { 7, 8 }, await b.Task);
        Assert.False(a.Task.IsCompleted);

        tracker.EndRequest(first);                      // timed out, say
        tracker.OnResponse(first, [1]);                 // late: dropped
        tracker.OnResponse(12345, [1]);                 // unknown: dropped
        Assert.False(a.Task.IsCompleted);
    }

    [Fact]
    public async Task APingMeasuresTheRoundTripOnTheSessionsClock()
    {
        var clock = new FakeTimeProvider();
        var tracker = new RequestTracker(clock);
        Assert.True(tracker.TryStartPing(out TaskCompletionSource<TimeSpan> ping));
        Assert.False(tracker.TryStartPing(out _));      // one at a time

        clock.Advance(TimeSpan.FromMilliseconds(42));
        tracker.OnPong();
        Assert.Equal(TimeSpan.FromMilliseconds(42), await ping.Task);

        tracker.EndPing(ping);
        Assert.True(tracker.TryStartPing(out TaskCompletionSource<TimeSpan> next));
        tracker.EndPing(next);
    }

    [Fact]
    public async Task WhenTheSessionEndsEveryWaitFailsWithItsReason()
    {
        var tracker = new RequestTracker(new FakeTimeProvider());
        (_, TaskCompletionSource<byte[]> request) = tracker.StartRequest();
        Assert.True(tracker.TryStartPing(out TaskCompletionSource<TimeSpan> ping));
        var reason = new PeerLinkException(PeerLinkError.PeerTimeout, "gone");

        tracker.FailAll(reason);

        Assert.Same(reason, await Assert.ThrowsAsync<PeerLinkException>(() => request.Task));
        Assert.Same(reason, await Assert.ThrowsAsync<PeerLinkException>(() => ping.Task));
    }
}
