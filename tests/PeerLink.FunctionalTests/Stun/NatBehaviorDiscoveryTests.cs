using System;
using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks;
using PeerLink.Nat;
using Xunit;

namespace PeerLink.FunctionalTests.Stun;

/// <summary>Behaviour discovery on loopback (no NAT); the NAT laboratory tests cover real NATs.</summary>
public sealed class NatBehaviorDiscoveryTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task WithoutANatTheMappingLifetimeOutlivesEveryTest()
    {
        await using StunServer server = await StunServer.StartAsync(new()
        {
            PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            AlternateAddress = IPAddress.Parse("127.0.0.2"),
            AlternatePort = 0,
        });
        var options = new NatBehaviorDiscoveryOptions
        {
            MeasureMappingLifetime = true,
            MappingLifetimeLimit = TimeSpan.FromMilliseconds(400),
            MappingLifetimeResolution = TimeSpan.FromMilliseconds(100),
        };

        NatBehavior behavior = await NatBehaviorDiscovery.DiscoverAsync(server.LocalEndPoints[0], IPAddress.Loopback, options).WaitAsync(Limit);

        Assert.Equal(NatMappingBehavior.NoNat, behavior.Mapping);
        Assert.NotNull(behavior.MappingLifetime);
        Assert.Equal(TimeSpan.FromMilliseconds(400), behavior.MappingLifetime!.AtLeast);
        Assert.Null(behavior.MappingLifetime.AtMost);
        Assert.Contains("idle mappings live at least 0.4 s", behavior.Summary, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheLifetimeIsNotMeasuredUnlessAsked()
    {
        await using StunServer server = await StunServer.StartAsync(new()
        {
            PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            AlternateAddress = IPAddress.Parse("127.0.0.2"),
            AlternatePort = 0,
        });

        NatBehavior behavior = await NatBehaviorDiscovery.DiscoverAsync(server.LocalEndPoints[0], IPAddress.Loopback).WaitAsync(Limit);

        Assert.Null(behavior.MappingLifetime);
        Assert.DoesNotContain("idle mappings", behavior.Summary, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheResponsePortProbeArrivesOnlyWhereItWasSent()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        using Socket x = Bound();
        using Socket y = Bound();
        using Socket elsewhere = Bound();
        var quick = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(100), MaxTransmissions = 4, FinalWaitMultiplier = 4 };
        ushort xPort = (ushort)((IPEndPoint)x.LocalEndPoint!).Port;
        ushort elsewherePort = (ushort)((IPEndPoint)elsewhere.LocalEndPoint!).Port;

        bool reachedX = await StunClient.ProbeMappingAsync(y, x, server.LocalEndPoints[0], xPort, quick, null, default).WaitAsync(Limit);
        bool reachedXWhenSentElsewhere = await StunClient.ProbeMappingAsync(y, x, server.LocalEndPoints[0], elsewherePort, quick, null, default).WaitAsync(Limit);

        Assert.True(reachedX);
        Assert.False(reachedXWhenSentElsewhere);
    }

    [Fact]
    public async Task BadLifetimeOptionsAreNamed()
    {
        var endpoint = new IPEndPoint(IPAddress.Loopback, 9);
        await Assert.ThrowsAsync<ArgumentException>("options", () => NatBehaviorDiscovery.DiscoverAsync(endpoint, options: new() { MappingLifetimeResolution = TimeSpan.FromMilliseconds(10) }));
        await Assert.ThrowsAsync<ArgumentException>("options", () => NatBehaviorDiscovery.DiscoverAsync(endpoint, options: new() { MappingLifetimeLimit = TimeSpan.FromSeconds(1), MappingLifetimeResolution = TimeSpan.FromSeconds(2) }));
    }

    private static Socket Bound()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return socket;
    }
}
