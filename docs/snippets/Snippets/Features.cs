#pragma warning disable CA1822, IDE0059, IDE0060 // snippets: the code is the point, not its use
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using NATS.Client.Core;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using PeerLink.Diagnostics;
using PeerLink.Discovery;
using PeerLink.Hosting;
using PeerLink.Nat;
using PeerLink.Nat.Rendezvous;
using PeerLink.Rendezvous.Nats;
using PeerLink.Sessions;
using PolyType;

namespace PeerLink.Snippets;

// begin-snippet: typed-message-type
[GenerateShape]
public partial record MotionEvent(string Room, DateTimeOffset Time, int Strength);
// end-snippet

public static class Features
{
    public static async Task TypedMessagesAsync(SecureSession session)
    {
        // begin-snippet: typed-messages
        await session.SendAsync(new MotionEvent("hallway", DateTimeOffset.UtcNow, 40));
        await foreach (PeerMessage message in session.ReadAllAsync())
        {
            MotionEvent motion = message.Deserialize<MotionEvent>();   // read in place from the received buffer
            Console.WriteLine($"{motion.Room}: {motion.Strength}");
        }
        // end-snippet
    }

    public static async Task DiscoveryAsync(PeerIdentity identity, PeerId thermostat)
    {
        // begin-snippet: discovery
        await using PeerNode node = await new PeerNodeBuilder(identity)
            .ListenOn(new IPEndPoint(IPAddress.Any, 0))
            .UseMdnsDiscovery(o => o.InstanceName = "Hallway light")   // advertise, and find others
            .StartAsync();

        SecureSession session = await node.ConnectAsync(thermostat);      // found on the LAN by PeerId alone
        await foreach (PeerDiscoveryEvent e in node.GetDiscovery().WatchAsync())
        {
            Console.WriteLine($"{e.Kind}: {e.Peer.Instance.InstanceName} {e.Peer.PeerId} at {string.Join(", ", e.Peer.EndPoints)}");
        }
        // end-snippet
    }

    public static async Task RendezvousAsync(PeerIdentity identity, PeerId rendezvousNode, PeerId sensor)
    {
        // begin-snippet: rendezvous
        await using PeerNode node = await new PeerNodeBuilder(identity)
            .UseRendezvous(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 7400), rendezvousNode)
            .StartAsync();

        SecureSession session = await node.ConnectAsync(sensor);   // relayed at once, end-to-end encrypted
        Console.WriteLine(session.Path.Description);                // "relayed through rendezvous node …"
        session.PathChanged += (_, path) => Console.WriteLine(path.Description);   // then "direct-udp …"
        // end-snippet
    }

    public static async Task StunAsync()
    {
        // begin-snippet: stun
        var server = new IPEndPoint(IPAddress.Parse("198.51.100.7"), 3478);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Any, 0));
        StunBindingResult binding = await StunClient.BindingAsync(socket, server);
        Console.WriteLine($"public address {binding.MappedAddress}, round trip {binding.RoundTripTime.TotalMilliseconds} ms");

        NatBehavior nat = await NatBehaviorDiscovery.DiscoverAsync(server);   // RFC 5780: the server needs a second address
        Console.WriteLine(nat.Summary);   // e.g. "port-restricted cone: endpoint-independent mapping, …"
        // end-snippet
    }

    public static async Task StunServerAsync(Microsoft.Extensions.Logging.ILoggerFactory loggerFactory)
    {
        // begin-snippet: stun-server
        await using StunServer server = await StunServer.StartAsync(new StunServerOptions
        {
            PrimaryEndPoint = new IPEndPoint(IPAddress.Any, 3478),
            // AlternateAddress = IPAddress.Parse("192.0.2.2"), AlternatePort = 3479,   // RFC 5780 behaviour discovery
        }, loggerFactory);
        // end-snippet
    }

    public static async Task RendezvousTierAsync(PeerIdentity identity, IPEndPoint publicEndPoint)
    {
        // begin-snippet: rendezvous-tier
        await using var nats = new NatsConnection(new NatsOpts { Url = "nats://nats-1:4222" });
        await using var backplane = new NatsRendezvousBackplane(nats, new NatsRendezvousBackplaneOptions { PresenceBucket = "peerlink-presence" });
        await using RendezvousServer server = await RendezvousServer.StartAsync(identity, new RendezvousServerOptions
        {
            ListenEndPoint = new IPEndPoint(IPAddress.Any, 7400),
            PublicEndPoint = publicEndPoint,   // where devices attached elsewhere send their relay leg
            Backplane = backplane,
        });
        // end-snippet
    }

    public static async Task HostingAsync(string[] args)
    {
        // begin-snippet: hosting
        HostApplicationBuilder builder = Host.CreateApplicationBuilder(args);
        builder.Services.AddPeerLink(builder.Configuration.GetSection("PeerLink"));   // or AddPeerLink(o => …) in code
        builder.Services.AddHealthChecks().AddPeerLink();                              // "peerlink"
        builder.Services.AddHostedService<LightService>();
        await builder.Build().RunAsync();
        // end-snippet
    }

    public static void OpenTelemetry(HostApplicationBuilder builder)
    {
        // begin-snippet: opentelemetry
        builder.Services.AddOpenTelemetry()
            .WithMetrics(metrics => metrics.AddMeter(PeerLinkTelemetry.MeterName).AddConsoleExporter())
            .WithTracing(tracing => tracing.AddSource(PeerLinkTelemetry.ActivitySourceName).AddConsoleExporter());
        // end-snippet
    }
}

// begin-snippet: hosted-service
public sealed class LightService(PeerLinkNode peerLink) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        PeerNode node = await peerLink.WaitForStartAsync(stoppingToken);   // the node the host started
        await foreach (SecureSession session in node.AcceptAllAsync(stoppingToken))
        {
            Console.WriteLine($"{session.RemotePeerId} connected over {session.Path.Description}");
        }
    }
}
// end-snippet
