using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Discovery;
using PeerLink.Discovery.Dns;
using PeerLink.Discovery.Mdns;
using Xunit;

namespace PeerLink.Testing;

/// <summary>A clock that moves only when told, firing due timers in order on the caller's thread.</summary>
internal sealed class ManualClock : TimeProvider
{
    private readonly Lock _lock = new();
    private readonly List<ManualTimer> _timers = [];
    private TimeSpan _now = TimeSpan.FromHours(1);

    public TimeSpan Elapsed => _now;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => _now.Ticks;

    public override DateTimeOffset GetUtcNow() => new DateTimeOffset(2026, 11, 21, 0, 0, 0, TimeSpan.Zero) + _now;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new ManualTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>Moves time forward, firing every timer that falls due on the way at its own time.</summary>
    public void Advance(TimeSpan by)
    {
        TimeSpan end = _now + by;
        while (true)
        {
            ManualTimer? next;
            lock (_lock)
            {
                next = _timers.Where(t => t.Due <= end).OrderBy(t => t.Due).FirstOrDefault();
                if (next is null)
                {
                    break;
                }

                _now = next.Due > _now ? next.Due : _now;
                next.Due = next.Period > TimeSpan.Zero ? _now + next.Period : TimeSpan.MaxValue;
                if (next.Due == TimeSpan.MaxValue)
                {
                    _timers.Remove(next);
                }
            }

            next.Fire();
        }

        _now = end;
    }

    private sealed class ManualTimer(ManualClock clock, TimerCallback callback, object? state) : ITimer
    {
        public TimeSpan Due { get; set; } = TimeSpan.MaxValue;

        public TimeSpan Period { get; private set; }

        public void Fire() => callback(state);

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (clock._lock)
            {
                clock._timers.Remove(this);
                Period = period == Timeout.InfiniteTimeSpan ? TimeSpan.Zero : period;
                if (dueTime != Timeout.InfiniteTimeSpan)
                {
                    Due = clock._now + dueTime;
                    clock._timers.Add(this);
                }
            }

            return true;
        }

        public void Dispose()
        {
            lock (clock._lock)
            {
                clock._timers.Remove(this);
            }
        }

        public System.Threading.Tasks.ValueTask DisposeAsync()
        {
            Dispose();
            return default;
        }
    }
}

/// <summary>
/// One multicast link in memory. Every packet is delivered synchronously to every member, the sender included (as
/// multicast loopback does), and recorded with the time it was sent.
/// </summary>
internal sealed class MdnsTestNetwork
{
    private readonly List<Member> _members = [];

    public MdnsTestNetwork(int mtu = 1500, bool realTime = false)
    {
        Mtu = mtu;
        Time = realTime ? TimeProvider.System : Clock;
    }

    public ManualClock Clock { get; } = new();

    /// <summary>The clock the nodes use: <see cref="Clock"/>, or the system's for tests that run in real time.</summary>
    public TimeProvider Time { get; }

    public int Mtu { get; }

    public List<Sent> Packets { get; } = [];

    /// <summary>A node with its own address on this link, running the real engine.</summary>
    public ServiceDiscovery Node(string address, string hostName, int seed = 1)
    {
        var member = new Member(this, IPAddress.Parse(address));
        lock (_members)
        {
            _members.Add(member);
        }

        return ServiceDiscovery.Start(member, new MdnsOptions { HostName = hostName, TimeProvider = Time }, new Random(seed), NullLogger.Instance);
    }

    /// <summary>A raw endpoint for hand-made packets; its received packets are in <see cref="Packets"/>.</summary>
    public Member Raw(string address)
    {
        var member = new Member(this, IPAddress.Parse(address));
        _members.Add(member);
        member.Start((_, _, _) => { }, () => { });
        return member;
    }

    public IEnumerable<(Sent Sent, DnsMessage Message)> Messages(Func<Sent, bool>? where = null) =>
        Packets.Where(p => where?.Invoke(p) ?? true).Select(p =>
        {
            Assert.True(DnsMessage.TryParse(p.Data, out DnsMessage? m, out string? error), error);
            return (p, m!);
        });

    public sealed record Sent(TimeSpan At, IPAddress From, int FromPort, IPEndPoint? To, byte[] Data);

    internal sealed class Member(MdnsTestNetwork network, IPAddress address) : IMdnsTransport
    {
        private Action<ReadOnlyMemory<byte>, IPEndPoint, MdnsLink>? _onPacket;

        public IPAddress Address { get; } = address;

        public MdnsLink Link { get; } = new(1, "mem0", [address], network.Mtu - 48);

        public IReadOnlyList<MdnsLink> Links => [Link];

        public void Start(Action<ReadOnlyMemory<byte>, IPEndPoint, MdnsLink> onPacket, Action onLinksChanged) => _onPacket = onPacket;

        public void Send(ReadOnlySpan<byte> packet, MdnsLink link, AddressFamily family, IPEndPoint? destination) =>
            SendFrom(packet.ToArray(), UdpMdnsTransport.Port, destination);

        /// <summary>Sends as this member from any source port (a legacy querier uses another than 5353).</summary>
        public void SendFrom(byte[] packet, int sourcePort, IPEndPoint? destination)
        {
            Assert.True(packet.Length <= network.Mtu - 48 || packet.Length <= MdnsPackets.MaxPacketSize, "packet too large");
            Member[] members;
            lock (network._members)
            {
                network.Packets.Add(new Sent(network.Clock.Elapsed, Address, sourcePort, destination, packet));
                members = [.. network._members];
            }

            var source = new IPEndPoint(Address, sourcePort);
            foreach (Member member in members)
            {
                if (destination is null || member.Address.Equals(destination.Address))
                {
                    member._onPacket?.Invoke(packet, source, member.Link);
                }
            }
        }

        public System.Threading.Tasks.ValueTask DisposeAsync()
        {
            lock (network._members)
            {
                network._members.Remove(this);
            }

            return default;
        }
    }
}
