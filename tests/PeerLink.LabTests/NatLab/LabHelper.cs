using System;
using System.Net;
using System.Text.Json;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.LabTests.MdnsLab;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// The entry point of this assembly, for the NAT laboratory: `dotnet PeerLink.LabTests.dll stun-server PRIMARY ALTERNATE`
/// runs a <see cref="StunServer"/> until its standard input closes; `dotnet PeerLink.LabTests.dll nat-discover SERVER [--lifetime LIMIT_MS RESOLUTION_MS]`
/// prints the result of <see cref="NatBehaviorDiscovery"/> as one JSON line. The test host never calls it.
/// </summary>
public static class LabHelper
{
    public static async Task<int> Main(string[] args)
    {
        try
        {
            switch (args.Length > 0 ? args[0] : string.Empty)
            {
                case "stun-server":
                    IPEndPoint alternate = IPEndPoint.Parse(args[2]);
                    await using (StunServer server = await StunServer.StartAsync(new StunServerOptions
                    {
                        PrimaryEndPoint = IPEndPoint.Parse(args[1]),
                        AlternateAddress = alternate.Address,
                        AlternatePort = alternate.Port,
                    }))
                    {
                        Console.WriteLine("ready " + string.Join(' ', server.LocalEndPoints));
                        while (await Console.In.ReadLineAsync() is not null)
                        {
                        }
                    }

                    return 0;

                case "nat-discover":
                    var options = new NatBehaviorDiscoveryOptions();
                    if (args.Length == 5 && args[2] == "--lifetime")
                    {
                        options.MeasureMappingLifetime = true;
                        options.MappingLifetimeLimit = TimeSpan.FromMilliseconds(int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture));
                        options.MappingLifetimeResolution = TimeSpan.FromMilliseconds(int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture));
                    }

                    NatBehavior behavior = await NatBehaviorDiscovery.DiscoverAsync(IPEndPoint.Parse(args[1]), options: options);
                    Console.WriteLine(JsonSerializer.Serialize(new
                    {
                        mapping = behavior.Mapping.ToString(),
                        filtering = behavior.Filtering.ToString(),
                        kind = behavior.Kind,
                        mapped = behavior.MappedAddress.ToString(),
                        local = behavior.LocalEndPoint.ToString(),
                        summary = behavior.Summary,
                        lifetimeAtLeastMs = behavior.MappingLifetime?.AtLeast.TotalMilliseconds,
                        lifetimeAtMostMs = behavior.MappingLifetime?.AtMost?.TotalMilliseconds,
                    }));
                    return 0;

                case "rendezvous":
                case "device-listen":
                case "device-connect":
                case "device-session":
                    return await RendezvousLabHelper.RunAsync(args);

                case "sink":
                case "send":
                    return await UdpLabHelper.RunAsync(args);

                case "mdns-advertise":
                case "mdns-browse":
                case "peer-node":
                case "peer-connect":
                    return await MdnsLabHelper.RunAsync(args);

                default:
                    Console.Error.WriteLine("usage: PeerLink.LabTests.dll stun-server PRIMARY ALTERNATE | nat-discover SERVER [--lifetime LIMIT_MS RESOLUTION_MS] | " + MdnsLabHelper.Usage + " | " + RendezvousLabHelper.Usage + " | " + UdpLabHelper.Usage);
                    return 2;
            }
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(e);
            return 1;
        }
    }
}
