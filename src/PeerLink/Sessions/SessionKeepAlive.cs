using System;

namespace PeerLink.Sessions;

/// <summary>What the keepalive timer should do now; several may apply at once.</summary>
[Flags]
internal enum KeepAliveAction
{
    None = 0,

    /// <summary>Nothing was sent for a keepalive interval: send PING.</summary>
    SendPing = 1,

    /// <summary>Nothing arrived for half an interval: give recycled delivery buffers back.</summary>
    TrimBuffers = 2,

    /// <summary>Nothing arrived for the idle timeout while this side was ready to read: the peer is gone.</summary>
    Dead = 4,
}

/// <summary>
/// The keepalive policy (docs/protocol.md §6) as a pure decision over elapsed times, apart from timers and I/O, in the
/// manner of Kestrel's Http2KeepAlive: the session's timer asks it what to do, and tests ask it directly.
/// </summary>
internal readonly struct SessionKeepAlive(TimeSpan interval, TimeSpan idleTimeout)
{
    /// <summary>How long nothing is sent before a PING.</summary>
    public TimeSpan Interval => interval;

    /// <summary>How long nothing arrives before the peer counts as gone.</summary>
    public TimeSpan IdleTimeout => idleTimeout;

    /// <summary>How often the timer should ask: twice per interval, so a PING goes out at most half an interval late.</summary>
    public TimeSpan TimerPeriod => interval / 2;

    /// <summary>The action for the time since the last received and the last sent byte.</summary>
    /// <param name="sinceReceived">Time since anything arrived from the peer.</param>
    /// <param name="sinceSent">Time since this side last sent.</param>
    /// <param name="receivePaused">
    /// True while this side does not read because the application does not take messages: silence is then not the
    /// peer's fault, and does not count against it.
    /// </param>
    public KeepAliveAction Decide(TimeSpan sinceReceived, TimeSpan sinceSent, bool receivePaused)
    {
        if (sinceReceived > idleTimeout && !receivePaused)
        {
            return KeepAliveAction.Dead;
        }

        KeepAliveAction action = KeepAliveAction.None;
        if (sinceSent >= interval)
        {
            action |= KeepAliveAction.SendPing;
        }

        if (sinceReceived >= interval / 2)
        {
            action |= KeepAliveAction.TrimBuffers;
        }

        return action;
    }
}
