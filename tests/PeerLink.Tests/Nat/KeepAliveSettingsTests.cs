using System;
using System.Net;
using System.Threading;
using PeerLink.Nat;
using PeerLink.Transport;
using Xunit;

namespace PeerLink.Tests.Nat;

/// <summary>The keepalive of UDP sessions: from a measured NAT mapping lifetime, and the options' bounds.</summary>
public sealed class KeepAliveSettingsTests
{
    private static readonly IPEndPoint Local = IPEndPoint.Parse("10.0.1.2:40000");
    private static readonly IPEndPoint Mapped = IPEndPoint.Parse("203.0.113.101:40000");

    [Theory]
    [InlineData(30, 24_000)]      // a NAT that forgets after 30 s: every 24 s
    [InlineData(180, 120_000)]    // a generous one: at most every 2 minutes
    [InlineData(1, 1_000)]        // an aggressive one: every second at least
    public void AMeasuredLifetimeGivesFourFifthsOfIt(int aliveSeconds, int expectedMs)
    {
        var behavior = new NatBehavior(NatMappingBehavior.EndpointIndependent, NatFilteringBehavior.AddressAndPortDependent, Local, Mapped,
            new NatMappingLifetime(TimeSpan.FromSeconds(aliveSeconds), TimeSpan.FromSeconds(aliveSeconds * 2)));

        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), behavior.RecommendedKeepAliveInterval);
    }

    [Fact]
    public void AnUnmeasuredLifetimeGivesTwentyFiveSeconds()
    {
        var behavior = new NatBehavior(NatMappingBehavior.EndpointIndependent, NatFilteringBehavior.EndpointIndependent, Local, Mapped);

        Assert.Equal(TimeSpan.FromSeconds(25), behavior.RecommendedKeepAliveInterval);
        Assert.Equal(TimeSpan.FromSeconds(25), new UdpTransportOptions().KeepAliveInterval);
    }

    [Fact]
    public void KeepAliveOptionsOutOfRangeAreRefusedByName()
    {
        Assert.Equal("udp", Assert.Throws<ArgumentException>(() => new UdpTransportOptions { KeepAliveInterval = TimeSpan.FromSeconds(-1) }.Validate("udp")).ParamName);
        Assert.Equal("udp", Assert.Throws<ArgumentException>(() => new UdpTransportOptions { KeepAliveIdleLimit = TimeSpan.Zero }.Validate("udp")).ParamName);
        _ = new UdpTransportOptions { KeepAliveInterval = TimeSpan.Zero, KeepAliveIdleLimit = Timeout.InfiniteTimeSpan }.Validate("udp");
    }
}
