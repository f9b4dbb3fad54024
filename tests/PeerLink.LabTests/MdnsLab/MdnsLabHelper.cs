using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Discovery;
using Microsoft.Extensions.Logging;
using PeerLink.Sessions;

namespace PeerLink.LabTests.MdnsLab;

/// <summary>
/// The mDNS laboratory's side of <see cref="LabHelper"/>: runs inside a namespace of eng/mdnslab.sh on real sockets.
/// Every command prints JSON lines; long-running ones print "ready …" first and stop when standard input closes.
/// </summary>
internal static class MdnsLabHelper
{
    public const string Usage =
        "mdns-advertise NAME TYPE PORT [KEY=VALUE|KEY ...] | mdns-browse TYPE TIMEOUT_MS COUNT | peer-node NAME | peer-connect NAME";

    /// <summary>Debug logging to standard error when MDNSLAB_LOG is set.</summary>
    private static readonly Microsoft.Extensions.Logging.ILoggerFactory s_logging = Environment.GetEnvironmentVariable("MDNSLAB_LOG") is null
        ? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance
        : Microsoft.Extensions.Logging.LoggerFactory.Create(b => b.AddConsole(o => o.LogToStandardErrorThreshold = Microsoft.Extensions.Logging.LogLevel.Trace).SetMinimumLevel(Microsoft.Extensions.Logging.LogLevel.Debug));

    public static async Task<int> RunAsync(string[] args)
    {
        switch (args[0])
        {
            case "mdns-advertise":
            {
                await using ServiceDiscovery mdns = await ServiceDiscovery.StartAsync(loggerFactory: s_logging);
                var profile = new ServiceProfile(args[1], args[2], int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture));
                foreach (string pair in args.Skip(4))
                {
                    int equals = pair.IndexOf('=', StringComparison.Ordinal);
                    profile.Properties.Add(equals < 0 ? new(pair, null) : new(pair[..equals], pair[(equals + 1)..]));
                }

                var clock = Stopwatch.StartNew();
                await using ServiceRegistration registration = await mdns.AdvertiseAsync(profile);
                Console.WriteLine($"ready {JsonSerializer.Serialize(new { name = registration.InstanceName, host = mdns.HostName, ms = clock.ElapsedMilliseconds })}");
                await WaitForStdinCloseAsync();
                return 0;
            }

            case "mdns-browse":
            {
                // Prints every event with the milliseconds since the browse started; ends after COUNT "found" or TIMEOUT_MS.
                await using ServiceDiscovery mdns = await ServiceDiscovery.StartAsync(loggerFactory: s_logging);
                int count = int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture);
                using var timeout = new CancellationTokenSource(int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture));
                Console.WriteLine($"ready {JsonSerializer.Serialize(new { unixMs = UnixMs() })}");
                var clock = Stopwatch.StartNew();
                int found = 0;
                try
                {
                    await foreach (ServiceEvent e in mdns.BrowseAsync(args[1], timeout.Token))
                    {
                        Console.WriteLine(JsonSerializer.Serialize(new
                        {
                            kind = e.Kind.ToString(),
                            name = e.Instance.InstanceName,
                            type = e.Instance.ServiceType,
                            host = e.Instance.HostName,
                            port = e.Instance.Port,
                            addresses = e.Instance.Addresses.Select(a => a.ToString()).ToArray(),
                            properties = e.Instance.Properties,
                            ms = clock.Elapsed.TotalMilliseconds,
                            unixMs = UnixMs(),
                        }));
                        if (e.Kind == ServiceEventKind.Found && ++found == count)
                        {
                            break;
                        }
                    }
                }
                catch (OperationCanceledException)
                {
                }

                return 0;
            }

            case "peer-node":
            {
                // A node that advertises itself and echoes every message of every session.
                using PeerIdentity identity = PeerIdentity.Generate();
                var clock = Stopwatch.StartNew();
                double startUnixMs = UnixMs();
                await using PeerNode node = await new PeerNodeBuilder(identity, s_logging)
                    .ListenOn(new IPEndPoint(IPAddress.Any, 0))
                    .UseMdnsDiscovery(o => o.InstanceName = args[1])
                    .StartAsync();
                Console.WriteLine($"ready {JsonSerializer.Serialize(new { peer = node.PeerId.ToString(), port = ((IPEndPoint)node.LocalEndPoints[0]).Port, name = node.GetDiscovery().InstanceName, ms = clock.ElapsedMilliseconds, startUnixMs })}");
                Task echo = Task.Run(async () =>
                {
                    await foreach (SecureSession session in node.AcceptAllAsync())
                    {
                        _ = Task.Run(async () =>
                        {
                            try
                            {
                                await foreach (PeerMessage message in session.ReadAllAsync())
                                {
                                    await session.SendAsync(message.Payload.ToArray());
                                }
                            }
                            catch (PeerLinkException)
                            {
                            }
                        });
                    }
                });
                await WaitForStdinCloseAsync();
                Console.WriteLine(JsonSerializer.Serialize(new { stoppingUnixMs = UnixMs() }));
                return 0;
            }

            case "peer-connect":
            {
                // Finds the first peer on the LAN, connects by its PeerId (IK) and expects its echo.
                using PeerIdentity identity = PeerIdentity.Generate();
                await using PeerNode node = await new PeerNodeBuilder(identity, s_logging)
                    .ListenOn(new IPEndPoint(IPAddress.Any, 0))
                    .UseMdnsDiscovery(o => o.InstanceName = args[1])
                    .StartAsync();
                var clock = Stopwatch.StartNew();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                PeerDiscoveryEvent first = await node.GetDiscovery().WatchAsync(timeout.Token).FirstAsync(e => e.Kind == ServiceEventKind.Found, timeout.Token);
                double discoveredMs = clock.Elapsed.TotalMilliseconds;
                await using SecureSession session = await node.ConnectAsync(first.Peer.PeerId, timeout.Token);
                await session.SendAsync(Encoding.UTF8.GetBytes("hello from " + args[1]), timeout.Token);
                PeerMessage? echo = await session.ReceiveAsync(timeout.Token);
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    peer = first.Peer.PeerId.ToString(),
                    name = first.Peer.Instance.InstanceName,
                    endPoint = first.Peer.EndPoints[0].ToString(),
                    discoveredMs,
                    echoed = echo is { } m ? Encoding.UTF8.GetString(m.Payload.Span) : null,
                }));
                await session.CloseAsync();
                return 0;
            }

            default:
                return 2;
        }
    }

    private static double UnixMs() => (DateTime.UtcNow - DateTime.UnixEpoch).TotalMilliseconds;

    private static async Task WaitForStdinCloseAsync()
    {
        while (await Console.In.ReadLineAsync() is not null)
        {
        }
    }
}
