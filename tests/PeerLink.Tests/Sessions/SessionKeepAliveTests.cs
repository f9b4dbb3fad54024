using System;
using PeerLink.Sessions;
using Xunit;

namespace PeerLink.Tests.Sessions;

/// <summary>The keepalive policy as a pure decision (docs/protocol.md §6).</summary>
public sealed class SessionKeepAliveTests
{
    private static readonly SessionKeepAlive Policy = new(TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(45));

    [Theory]
    [InlineData(0, 0, false, (int)KeepAliveAction.None)]
    [InlineData(7.4, 14.9, false, (int)KeepAliveAction.None)]
    [InlineData(7.5, 0, false, (int)KeepAliveAction.TrimBuffers)]
    [InlineData(0, 15, false, (int)KeepAliveAction.SendPing)]
    [InlineData(45, 15, false, (int)(KeepAliveAction.SendPing | KeepAliveAction.TrimBuffers))]     // exactly the idle timeout: not yet dead
    [InlineData(45.1, 0, false, (int)KeepAliveAction.Dead)]
    [InlineData(45.1, 15, true, (int)(KeepAliveAction.SendPing | KeepAliveAction.TrimBuffers))]   // paused by the application: not the peer's fault
    public void TheTimerDoesWhatTheElapsedTimesCallFor(double sinceReceived, double sinceSent, bool paused, int expected)
    {
        Assert.Equal((KeepAliveAction)expected, Policy.Decide(TimeSpan.FromSeconds(sinceReceived), TimeSpan.FromSeconds(sinceSent), paused));
        Assert.Equal(TimeSpan.FromSeconds(7.5), Policy.TimerPeriod);
    }
}
