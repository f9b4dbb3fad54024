using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Threading.Tasks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using PeerLink.Hosting;
using PeerLink.Sessions;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.FunctionalTests.Hosting;

/// <summary>AddPeerLink in a generic host on loopback: configuration, start and stop with the host, the health check.</summary>
public sealed class HostingTests : PeerIdentities, IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("peerlink-hosting-");

    [Fact]
    public async Task TheNodeRunsWithTheHostFromConfigurationAndAdmitsOnlyTheAllowedPeers()
    {
        using IHost host = Build(new()
        {
            ["PeerLink:IdentityFile"] = "keys/light.key",
            ["PeerLink:Listen:0"] = "127.0.0.1:0",
            ["PeerLink:AllowedPeers:0"] = Alice.PeerId.ToString(),
        });
        PeerLinkNode hosted = host.Services.GetRequiredService<PeerLinkNode>();
        Assert.Throws<InvalidOperationException>(() => hosted.Node);
        Assert.Equal(HealthStatus.Unhealthy, (await CheckAsync(host)).Status);

        await host.StartAsync().WaitAsync(Limit);
        PeerNode light = await hosted.WaitForStartAsync().WaitAsync(Limit);
        Assert.True(File.Exists(Path.Combine(_root.FullName, "keys", "light.key")), "the identity file is created under the content root");
        using (PeerIdentity stored = PeerIdentity.Load(Path.Combine(_root.FullName, "keys", "light.key")))
        {
            Assert.Equal(stored.PeerId, light.PeerId);
        }

        Assert.Equal(IPAddress.Loopback, ((IPEndPoint)light.LocalEndPoints[0]).Address);
        HealthReport health = await CheckAsync(host);
        Assert.Equal(HealthStatus.Healthy, health.Status);
        Assert.Equal(light.PeerId.ToString(), health.Entries["peerlink"].Data["peerId"]);

        // Alice is allowed; Mallory is refused by the configured list.
        await using (PeerNode alice = await new PeerNodeBuilder(Alice).StartAsync())
        {
            SecureSession session = await alice.ConnectAsync(light.LocalEndPoints[0], light.PeerId).WaitAsync(Limit);
            SecureSession accepted = (await light.AcceptAsync().AsTask().WaitAsync(Limit))!;
            Assert.Equal(Alice.PeerId, accepted.RemotePeerId);
            await session.CloseAsync();
        }

        await using (PeerNode mallory = await new PeerNodeBuilder(Mallory).StartAsync())
        {
            PeerLinkException refused = await Assert.ThrowsAsync<PeerLinkException>(() => mallory.ConnectAsync(light.LocalEndPoints[0], light.PeerId).WaitAsync(Limit));
            Assert.Equal(PeerLinkError.PeerRefused, refused.Error);
        }

        await host.StopAsync().WaitAsync(Limit);
        Assert.False(hosted.IsRunning);
        Assert.Equal(HealthStatus.Unhealthy, (await CheckAsync(host)).Status);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => light.ConnectAsync(new IPEndPoint(IPAddress.Loopback, 9)));
    }

    [Fact]
    public async Task TheSameIdentityFileGivesTheSamePeerIdAtTheNextStart()
    {
        var settings = new Dictionary<string, string?> { ["PeerLink:IdentityFile"] = "light.key" };
        PeerId first;
        using (IHost host = Build(settings))
        {
            await host.StartAsync().WaitAsync(Limit);
            first = host.Services.GetRequiredService<PeerLinkNode>().Node.PeerId;
            await host.StopAsync().WaitAsync(Limit);
        }

        using (IHost host = Build(settings))
        {
            await host.StartAsync().WaitAsync(Limit);
            Assert.Equal(first, host.Services.GetRequiredService<PeerLinkNode>().Node.PeerId);
            await host.StopAsync().WaitAsync(Limit);
        }
    }

    [Fact]
    public async Task TheNetworkKeyFromConfigurationKeepsOutPeersWithoutIt()
    {
        byte[] key = new byte[NetworkKey.Size];
        Random.Shared.NextBytes(key);
        using IHost host = Build(new()
        {
            ["PeerLink:Listen:0"] = "127.0.0.1:0",
            ["PeerLink:NetworkKey"] = Convert.ToBase64String(key),
        });
        await host.StartAsync().WaitAsync(Limit);
        PeerNode light = host.Services.GetRequiredService<PeerLinkNode>().Node;

        using var networkKey = new NetworkKey(key);
        await using (PeerNode member = await new PeerNodeBuilder(Alice).Configure(o => o.Session.NetworkKey = networkKey).StartAsync())
        {
            SecureSession session = await member.ConnectAsync(light.LocalEndPoints[0], light.PeerId).WaitAsync(Limit);
            await session.CloseAsync();
        }

        await using (PeerNode outsider = await new PeerNodeBuilder(Mallory).StartAsync())
        {
            await Assert.ThrowsAsync<PeerLinkException>(() => outsider.ConnectAsync(light.LocalEndPoints[0], light.PeerId).WaitAsync(Limit));
        }

        await host.StopAsync().WaitAsync(Limit);
    }

    [Theory]
    [InlineData("PeerLink:Listen:0", "not an endpoint")]
    [InlineData("PeerLink:AllowedPeers:0", "not-a-peer-id")]
    [InlineData("PeerLink:NetworkKey", "c2hvcnQ=")]
    [InlineData("PeerLink:Rendezvous:0:PeerId", "nope")]
    public async Task ABadSettingFailsTheStartNamingTheSetting(string key, string value)
    {
        var settings = new Dictionary<string, string?> { [key] = value };
        if (key.StartsWith("PeerLink:Rendezvous", StringComparison.Ordinal))
        {
            settings["PeerLink:Rendezvous:0:EndPoint"] = "127.0.0.1:9";
        }

        using IHost host = Build(settings);
        ArgumentException error = await Assert.ThrowsAnyAsync<ArgumentException>(() => host.StartAsync().WaitAsync(Limit));
        Assert.Equal(key, error.ParamName);

        HealthReport health = await CheckAsync(host);
        Assert.Equal(HealthStatus.Unhealthy, health.Status);
        Assert.Same(error, health.Entries["peerlink"].Exception);
    }

    [Fact]
    public async Task ANodeThatCannotReachItsRendezvousNodeIsDegraded()
    {
        // A rendezvous node that is not there: a port on loopback with nothing listening.
        using var nothing = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        nothing.Start();
        int port = ((IPEndPoint)nothing.LocalEndpoint).Port;
        nothing.Stop();

        using IHost host = Build(new()
        {
            ["PeerLink:Rendezvous:0:EndPoint"] = $"127.0.0.1:{port}",
            ["PeerLink:Rendezvous:0:PeerId"] = Relay.PeerId.ToString(),
        });
        await host.StartAsync().WaitAsync(Limit);

        HealthReport health = await CheckAsync(host);
        Assert.Equal(HealthStatus.Degraded, health.Status);
        Assert.Contains("not attached", health.Entries["peerlink"].Description, StringComparison.Ordinal);
        await host.StopAsync().WaitAsync(Limit);
    }

    [Fact]
    public void AddPeerLinkTwiceIsAnError()
    {
        var services = new ServiceCollection();
        services.AddPeerLink(o => o.Listen.Add("127.0.0.1:0"));
        Assert.Throws<InvalidOperationException>(() => services.AddPeerLink(o => o.Listen.Add("127.0.0.1:0")));
    }

    void IDisposable.Dispose()
    {
        Dispose();
        _root.Delete(recursive: true);
    }

    private IHost Build(Dictionary<string, string?> settings)
    {
        HostApplicationBuilder builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            ContentRootPath = _root.FullName,
            DisableDefaults = true,
        });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddPeerLink(builder.Configuration.GetSection("PeerLink"));
        builder.Services.AddHealthChecks().AddPeerLink();
        return builder.Build();
    }

    private static Task<HealthReport> CheckAsync(IHost host) => host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
}
