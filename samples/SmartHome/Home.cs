using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.NetworkInformation;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Discovery;
using PeerLink.Nat.Rendezvous;

namespace PeerLink.Samples.SmartHome;

/// <summary>What every device of the home shares: the home's network key, loopback only, and how to find a device.</summary>
internal static class Home
{
    /// <summary>The application id of the home's devices; peers of other applications are refused at the handshake.</summary>
    public const string ApplicationId = "smarthome/1";

    /// <summary>The home's network key (base64, from the scene): only the home's devices and its phone complete a handshake.</summary>
    public static NetworkKey Key() => new(Convert.FromBase64String(Environment.GetEnvironmentVariable("SMARTHOME_KEY")
        ?? throw new InvalidOperationException("SMARTHOME_KEY is not set: run the 'scene' role, which starts the devices.")));

    public static string Loopback { get; } = NetworkInterface.GetAllNetworkInterfaces()
        .First(n => n.NetworkInterfaceType == NetworkInterfaceType.Loopback).Name;

    /// <summary>A device's node: listening on loopback, found over mDNS on the loopback interface only, and attached to
    /// the home's rendezvous node when one is given (so that the phone reaches it from outside).</summary>
    public static Task<PeerNode> StartDeviceAsync(PeerIdentity identity, NetworkKey key, string? instanceName, RendezvousNode? rendezvous, bool lan = true)
    {
        var builder = new PeerNodeBuilder(identity)
            .Configure(o =>
            {
                o.Session.NetworkKey = key;
                o.Session.ApplicationId = ApplicationId;
            });
        if (instanceName is not null)
        {
            builder.ListenOn(new IPEndPoint(IPAddress.Loopback, 0));
        }

        if (lan)
        {
            builder.UseMdnsDiscovery(o =>
            {
                o.InstanceName = instanceName;
                o.Advertise = instanceName is not null;
                o.Mdns.Interfaces.Add(Loopback);   // nothing reaches the real LAN
            });
        }

        if (rendezvous is not null)
        {
            builder.UseRendezvous([rendezvous], o =>
            {
                o.PunchAddresses = [IPAddress.Loopback];
                o.UdpEndPoint = new IPEndPoint(IPAddress.Loopback, 0);
            });
        }

        return builder.StartAsync();
    }

    /// <summary>Waits until mDNS finds the home device advertised under <paramref name="instanceName"/>.</summary>
    public static async Task<DiscoveredPeer> FindAsync(PeerNode node, string instanceName, CancellationToken cancellationToken)
    {
        PeerDiscovery discovery = node.GetDiscovery();
        await foreach (PeerDiscoveryEvent e in discovery.WatchAsync(cancellationToken))
        {
            if (e.Kind != ServiceEventKind.Lost && e.Peer.Instance.InstanceName == instanceName && e.Peer.ApplicationId == ApplicationId)
            {
                return e.Peer;
            }
        }

        throw new OperationCanceledException(cancellationToken);
    }

    public static RendezvousNode? RendezvousFromArgs(IReadOnlyList<string> args) =>
        args.Count >= 2 ? new RendezvousNode(IPEndPoint.Parse(args[0]), PeerId.Parse(args[1])) : null;

    /// <summary>Lines from the scene on standard input; the end of input is the device's signal to stop.</summary>
    public static IAsyncEnumerable<string> CommandsAsync(CancellationToken cancellationToken) => ReadAsync(cancellationToken);

    private static async IAsyncEnumerable<string> ReadAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        while (await Console.In.ReadLineAsync(cancellationToken) is { } line)
        {
            yield return line;
        }
    }

    public static void Say(string line)
    {
        Console.WriteLine(line);
        Console.Out.Flush();
    }
}
