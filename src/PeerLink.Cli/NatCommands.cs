using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat;
using Spectre.Console;

namespace PeerLink.Cli;

/// <summary><c>peerlink stun</c> and <c>peerlink netcheck</c>.</summary>
internal static class NatCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return Stun();
        yield return NetCheck();
    }

    private static Option<string[]> StunServers(bool required) => new("--stun", "-s")
    {
        Description = "A STUN server, ADDRESS:PORT (repeat for several; the first one is used for the RFC 5780 tests).",
        Required = required,
    };

    private static Command Stun()
    {
        var servers = new Argument<string[]>("server") { Description = "STUN server(s), ADDRESS:PORT.", Arity = ArgumentArity.OneOrMore };
        var tcp = new Option<bool>("--tcp") { Description = "Also ask over TCP (RFC 8489 §6.2.2)." };
        var command = new Command("stun", "Ask STUN servers for this host's reflexive (public) address over UDP, and TCP with --tcp.") { servers, tcp };
        command.SetAction((result, token) => Cli.RunAsync(async () =>
        {
            IPEndPoint[] targets = [.. result.GetValue(servers)!.Select(s => Cli.ParseEndPoint(s, "server"))];
            int failed = 0;
            foreach (IPEndPoint server in targets)
            {
                (IPEndPoint? udp, TimeSpan udpRtt, string? udpError) = await UdpBindingAsync(server, token);
                Console.WriteLine(udp is not null
                    ? $"udp {server}: {udp} ({udpRtt.TotalMilliseconds:F1} ms)"
                    : $"udp {server}: {udpError}");
                failed += udp is null ? 1 : 0;
                if (result.GetValue(tcp))
                {
                    (IPEndPoint? mapped, TimeSpan rtt, string? error) = await TcpBindingAsync(server, token);
                    Console.WriteLine(mapped is not null ? $"tcp {server}: {mapped} ({rtt.TotalMilliseconds:F1} ms)" : $"tcp {server}: {error}");
                    failed += mapped is null ? 1 : 0;
                }
            }

            return failed == 0 ? 0 : Cli.Failure;
        }));
        return command;
    }

    private static async Task<(IPEndPoint? Mapped, TimeSpan Rtt, string? Error)> UdpBindingAsync(IPEndPoint server, CancellationToken token)
    {
        using var socket = new Socket(server.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.Bind(new IPEndPoint(server.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0));
            StunBindingResult answer = await StunClient.BindingAsync(socket, server, new StunClientOptions { MaxTransmissions = 4, InitialRto = TimeSpan.FromMilliseconds(250) }, cancellationToken: token);
            return (answer.MappedAddress, answer.RoundTripTime, null);
        }
        catch (PeerLinkException e)
        {
            return (null, default, $"{e.Error}: {Cli.OneLine(e.Message)}");
        }
        catch (SocketException e)
        {
            return (null, default, e.SocketErrorCode.ToString());
        }
    }

    private static async Task<(IPEndPoint? Mapped, TimeSpan Rtt, string? Error)> TcpBindingAsync(IPEndPoint server, CancellationToken token)
    {
        using var socket = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            await socket.ConnectAsync(server, timeout.Token);
            StunBindingResult answer = await StunClient.BindingAsync(socket, server, cancellationToken: timeout.Token);
            return (answer.MappedAddress, answer.RoundTripTime, null);
        }
        catch (PeerLinkException e)
        {
            return (null, default, $"{e.Error}: {Cli.OneLine(e.Message)}");
        }
        catch (SocketException e)
        {
            return (null, default, e.SocketErrorCode.ToString());
        }
        catch (OperationCanceledException) when (!token.IsCancellationRequested)
        {
            return (null, default, "no TCP connection within 5 s");
        }
    }

    private static Command NetCheck()
    {
        var servers = StunServers(required: true);
        var rendezvous = Cli.RendezvousOption();
        var lifetime = new Option<bool>("--lifetime") { Description = "Also measure how long an idle UDP mapping lives (RFC 5780 §4.6; up to --lifetime-limit)." };
        var lifetimeLimit = new Option<double>("--lifetime-limit") { Description = "Longest mapping lifetime to test, seconds.", DefaultValueFactory = _ => 120 };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON." };
        var command = new Command("netcheck", "Report this network: reflexive addresses over UDP and TCP, NAT mapping and filtering (RFC 5780), mapping lifetime, IPv4/IPv6 reachability, round trip to each STUN server and rendezvous node.")
        {
            servers, rendezvous, lifetime, lifetimeLimit, json,
        };
        command.SetAction((result, token) => Cli.RunAsync(async () =>
        {
            IPEndPoint[] stun = [.. result.GetValue(servers)!.Select(s => Cli.ParseEndPoint(s, "--stun"))];
            IPEndPoint[] nodes = [.. (result.GetValue(rendezvous) ?? []).Select(s => Cli.ParseEndPoint(s, "--rendezvous"))];
            var report = new NetReport();

            // One socket per address family asks every server at once: a mapping that differs between servers is then
            // the NAT's doing (symmetric), not a second socket's.
            foreach (IGrouping<AddressFamily, IPEndPoint> family in stun.GroupBy(s => s.AddressFamily))
            {
                using var socket = new Socket(family.Key, SocketType.Dgram, ProtocolType.Udp);
                try
                {
                    socket.Bind(new IPEndPoint(family.Key == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0));
                }
                catch (SocketException e)
                {
                    report.Udp.AddRange(family.Select(server => new ServerResult(server, null, default, e.SocketErrorCode.ToString())));
                    continue;
                }

                StunQueryResult answers = await StunClient.QueryAsync(socket, [.. family], new StunClientOptions { MaxTransmissions = 4, InitialRto = TimeSpan.FromMilliseconds(250) }, cancellationToken: token);
                foreach (IPEndPoint server in family)
                {
                    if (answers.Answers.FirstOrDefault(a => a.Server.Equals(server)) is { } answer)
                    {
                        report.Udp.Add(new ServerResult(server, answer.MappedAddress, answer.RoundTripTime, null));
                    }
                    else
                    {
                        PeerLinkException? error = answers.Failures.FirstOrDefault(f => f.Server.Equals(server)).Error;
                        report.Udp.Add(new ServerResult(server, null, default, error is null ? "no answer" : $"{error.Error}: {Cli.OneLine(error.Message)}"));
                    }
                }
            }

            IPEndPoint? first4 = stun.FirstOrDefault(s => s.AddressFamily == AddressFamily.InterNetwork);
            if (first4 is not null)
            {
                (IPEndPoint? mapped, TimeSpan rtt, string? error) = await TcpBindingAsync(first4, token);
                report.Tcp = new ServerResult(first4, mapped, rtt, error);
                try
                {
                    var options = new NatBehaviorDiscoveryOptions
                    {
                        MeasureMappingLifetime = result.GetValue(lifetime),
                        MappingLifetimeLimit = TimeSpan.FromSeconds(result.GetValue(lifetimeLimit)),
                    };
                    report.Nat = await NatBehaviorDiscovery.DiscoverAsync(first4, options: options, cancellationToken: token);
                }
                catch (PeerLinkException e)
                {
                    report.NatError = $"{e.Error}: {Cli.OneLine(e.Message)}";
                }
            }

            foreach (IPEndPoint node in nodes)
            {
                using var socket = new Socket(node.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
                timeout.CancelAfter(TimeSpan.FromSeconds(5));
                long start = Stopwatch.GetTimestamp();
                try
                {
                    await socket.ConnectAsync(node, timeout.Token);
                    report.Rendezvous.Add(new ServerResult(node, null, Stopwatch.GetElapsedTime(start), null));
                }
                catch (Exception e) when (e is SocketException or OperationCanceledException && !token.IsCancellationRequested)
                {
                    report.Rendezvous.Add(new ServerResult(node, null, default, e is SocketException s ? s.SocketErrorCode.ToString() : "no TCP connection within 5 s"));
                }
            }

            if (result.GetValue(json))
            {
                Console.WriteLine(report.ToJson());
            }
            else
            {
                report.Print();
            }

            return report.Udp.Any(u => u.Mapped is not null) ? 0 : Cli.Failure;
        }));
        return command;
    }

    private sealed record ServerResult(IPEndPoint Server, IPEndPoint? Mapped, TimeSpan Rtt, string? Error);

    private sealed class NetReport
    {
        public List<ServerResult> Udp { get; } = [];

        public ServerResult? Tcp { get; set; }

        public NatBehavior? Nat { get; set; }

        public string? NatError { get; set; }

        public List<ServerResult> Rendezvous { get; } = [];

        private bool Ipv4 => Udp.Any(u => u.Server.AddressFamily == AddressFamily.InterNetwork && u.Mapped is not null);

        private bool? Ipv6 => Udp.Any(u => u.Server.AddressFamily == AddressFamily.InterNetworkV6)
            ? Udp.Any(u => u.Server.AddressFamily == AddressFamily.InterNetworkV6 && u.Mapped is not null)
            : null;

        /// <summary>The reflexive address depends on the server: the NAT maps per destination (symmetric).</summary>
        private bool VariesByServer => Udp.Where(u => u.Mapped is not null && u.Server.AddressFamily == AddressFamily.InterNetwork).Select(u => u.Mapped!).Distinct().Count() > 1;

        public void Print()
        {
            var table = new Table().AddColumn("check").AddColumn("result");
            Row(table, "UDP IPv4", Ipv4 ? "yes" : "no");
            Row(table, "UDP IPv6", Ipv6 switch { true => "yes", false => "no", null => "not tested (no IPv6 STUN server given)" });
            foreach (ServerResult u in Udp)
            {
                Row(table, $"  via {u.Server}", u.Mapped is not null ? $"{u.Mapped} ({u.Rtt.TotalMilliseconds:F1} ms)" : u.Error!);
            }

            Row(table, "mapping varies by server", VariesByServer ? "yes (symmetric NAT: direct UDP is hard)" : "no");
            if (Tcp is not null)
            {
                Row(table, "TCP", Tcp.Mapped is not null ? $"{Tcp.Mapped} ({Tcp.Rtt.TotalMilliseconds:F1} ms)" : Tcp.Error!);
            }

            if (Nat is not null)
            {
                Row(table, "NAT", Nat.Kind);
                Row(table, "  mapping", Nat.Mapping.ToString());
                Row(table, "  filtering", Nat.Filtering.ToString());
                Row(table, "  mapping lifetime", Nat.MappingLifetime?.ToString() ?? "not measured (--lifetime)");
                Row(table, "  keepalive", $"every {Nat.RecommendedKeepAliveInterval.TotalSeconds:F0} s");
            }
            else if (NatError is not null)
            {
                Row(table, "NAT", $"unknown: {NatError}");
            }

            foreach (ServerResult r in Rendezvous)
            {
                Row(table, $"rendezvous {r.Server}", r.Error ?? $"{r.Rtt.TotalMilliseconds:F1} ms (TCP connect)");
            }

            AnsiConsole.Write(table);
        }

        /// <summary>A row of plain text: brackets in addresses ([::1]:3478) are not markup.</summary>
        private static void Row(Table table, string check, string result) => table.AddRow(new Text(check), new Text(result));

        public string ToJson()
        {
            using var buffer = new MemoryStream();
            using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            {
                json.WriteStartObject();
                json.WriteBoolean("ipv4", Ipv4);
                if (Ipv6 is { } v6)
                {
                    json.WriteBoolean("ipv6", v6);
                }
                else
                {
                    json.WriteNull("ipv6");
                }

                json.WriteBoolean("mappingVariesByServer", VariesByServer);
                json.WriteStartArray("udp");
                foreach (ServerResult u in Udp)
                {
                    Write(json, u);
                }

                json.WriteEndArray();
                if (Tcp is not null)
                {
                    json.WritePropertyName("tcp");
                    Write(json, Tcp);
                }

                json.WriteStartObject("nat");
                if (Nat is not null)
                {
                    json.WriteString("mapping", Nat.Mapping.ToString());
                    json.WriteString("filtering", Nat.Filtering.ToString());
                    json.WriteString("kind", Nat.Kind);
                    json.WriteString("mapped", Nat.MappedAddress.ToString());
                    json.WriteString("local", Nat.LocalEndPoint.ToString());
                    json.WriteString("summary", Nat.Summary);
                    json.WriteNumber("keepAliveSeconds", Nat.RecommendedKeepAliveInterval.TotalSeconds);
                    if (Nat.MappingLifetime is { } life)
                    {
                        json.WriteNumber("lifetimeAtLeastMs", life.AtLeast.TotalMilliseconds);
                        if (life.AtMost is { } most)
                        {
                            json.WriteNumber("lifetimeAtMostMs", most.TotalMilliseconds);
                        }
                    }
                }
                else
                {
                    json.WriteString("error", NatError ?? "no IPv4 STUN server given");
                }

                json.WriteEndObject();
                json.WriteStartArray("rendezvous");
                foreach (ServerResult r in Rendezvous)
                {
                    Write(json, r);
                }

                json.WriteEndArray();
                json.WriteEndObject();
            }

            return Encoding.UTF8.GetString(buffer.ToArray());
        }

        private static void Write(Utf8JsonWriter json, ServerResult result)
        {
            json.WriteStartObject();
            json.WriteString("server", result.Server.ToString());
            if (result.Error is null)
            {
                if (result.Mapped is not null)
                {
                    json.WriteString("mapped", result.Mapped.ToString());
                }

                json.WriteNumber("rttMs", Math.Round(result.Rtt.TotalMilliseconds, 3));
            }
            else
            {
                json.WriteString("error", result.Error);
            }

            json.WriteEndObject();
        }
    }
}
