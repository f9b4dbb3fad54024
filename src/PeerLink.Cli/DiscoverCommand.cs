using System;
using System.Collections.Concurrent;
using System.CommandLine;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Discovery;
using Spectre.Console;

namespace PeerLink.Cli;

/// <summary><c>peerlink discover</c>: PeerLink peers and any DNS-SD service type on the LAN, as a live table.</summary>
internal static class DiscoverCommand
{
    public static Command Create()
    {
        var types = new Option<string[]>("--type", "-t") { Description = "DNS-SD service type(s) to browse, e.g. _http._tcp (repeat). Default: _peerlink._tcp." };
        var duration = new Option<double?>("--duration", "-d") { Description = "Stop after this many seconds. Default: until Ctrl+C." };
        var interfaces = Cli.InterfaceOption();
        var verbose = Cli.VerboseOption();
        var command = new Command("discover", "Browse the LAN over mDNS: a live table of PeerLink peers (with their PeerIds) and of any service type given. Without a terminal it prints one line per change.")
        {
            types, duration, interfaces, verbose,
        };
        command.SetAction((result, token) => Cli.RunAsync(async () =>
        {
            string[] serviceTypes = result.GetValue(types) is { Length: > 0 } given ? given : ["_peerlink._tcp"];
            var options = new MdnsOptions();
            foreach (string name in result.GetValue(interfaces) ?? [])
            {
                options.Interfaces.Add(name);
            }

            using ILoggerFactory logging = Cli.Logging(result.GetValue(verbose));
            using CancellationTokenSource stop = Cli.StopOnSignals(token, out IDisposable signals);
            using (signals)
            {
                if (result.GetValue(duration) is { } seconds)
                {
                    stop.CancelAfter(TimeSpan.FromSeconds(seconds));
                }

                await using ServiceDiscovery discovery = await ServiceDiscovery.StartAsync(options, logging, stop.Token);
                var seen = new ConcurrentDictionary<(string Type, string Name), ServiceInstance>();
                var changed = new SemaphoreSlim(0);
                Task[] browsers = [.. serviceTypes.Select(type => Task.Run(async () =>
                {
                    try
                    {
                        await foreach (ServiceEvent e in discovery.BrowseAsync(type, stop.Token))
                        {
                            if (e.Kind == ServiceEventKind.Lost)
                            {
                                seen.TryRemove((type, e.Instance.InstanceName), out _);
                            }
                            else
                            {
                                seen[(type, e.Instance.InstanceName)] = e.Instance;
                            }

                            if (!Cli.Interactive)
                            {
                                Console.WriteLine($"{Sign(e.Kind)} {Describe(e.Instance)}");
                            }

                            changed.Release();
                        }
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }))];

                if (Cli.Interactive)
                {
                    var table = new Table().AddColumns("type", "instance", "endpoints", "peer id / properties");
                    await AnsiConsole.Live(table).StartAsync(async context =>
                    {
                        while (!stop.IsCancellationRequested)
                        {
                            try
                            {
                                await changed.WaitAsync(stop.Token);
                            }
                            catch (OperationCanceledException)
                            {
                                break;
                            }

                            table.Rows.Clear();
                            foreach (ServiceInstance instance in seen.Values.OrderBy(i => i.ServiceType).ThenBy(i => i.InstanceName))
                            {
                                table.AddRow(Markup.Escape(instance.ServiceType), Markup.Escape(instance.InstanceName), Markup.Escape(string.Join(", ", instance.EndPoints)), Markup.Escape(Properties(instance)));
                            }

                            context.Refresh();
                        }
                    });
                }

                await Task.WhenAll(browsers);
                if (!Cli.Interactive)
                {
                    Console.WriteLine($"found {seen.Count} service(s)");
                }

                return 0;
            }
        }));
        return command;
    }

    private static string Sign(ServiceEventKind kind) => kind switch
    {
        ServiceEventKind.Found => "+",
        ServiceEventKind.Updated => "~",
        _ => "-",
    };

    private static string Describe(ServiceInstance instance) =>
        $"{instance.ServiceType} \"{instance.InstanceName}\" {string.Join(", ", instance.EndPoints)} {Properties(instance)}".TrimEnd();

    private static string Properties(ServiceInstance instance) =>
        instance.Properties.TryGetValue("id", out string? id) && id is not null
            ? id
            : string.Join(" ", instance.Properties.Select(p => p.Value is null ? p.Key : $"{p.Key}={p.Value}"));
}
