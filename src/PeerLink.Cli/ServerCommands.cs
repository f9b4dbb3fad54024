using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Nat;
using PeerLink.Nat.Rendezvous;

namespace PeerLink.Cli;

/// <summary><c>peerlink rendezvous</c> and <c>peerlink stun-server</c>: run until Ctrl+C or SIGTERM.</summary>
internal static class ServerCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return Rendezvous();
        yield return StunServerCommand();
    }

    private static Command Rendezvous()
    {
        var identity = Cli.IdentityOption();
        var listen = new Option<string>("--listen", "-l") { Description = "Endpoint for attach sessions and relays, ADDRESS:PORT.", DefaultValueFactory = _ => "0.0.0.0:7400" };
        var stunPort = new Option<int>("--stun-port") { Description = "UDP and TCP port of the node's STUN server; -1 for none.", DefaultValueFactory = _ => 3478 };
        var allow = new Option<string[]>("--allow") { Description = "Let only these PeerIds attach (repeat). Default: any device." };
        var keepAlive = new Option<int>("--keepalive") { Description = "Seconds between the keepalives the node asks devices for.", DefaultValueFactory = _ => 25 };
        var verbose = Cli.VerboseOption();
        var command = new Command("rendezvous", "Run a rendezvous node: attach, signalling, an end-to-end encrypted relay and STUN in one process. Prints its PeerId, which devices pin.")
        {
            identity, listen, stunPort, allow, keepAlive, verbose,
        };
        command.SetAction((result, token) => Cli.RunAsync(async () =>
        {
            var options = new RendezvousServerOptions
            {
                ListenEndPoint = Cli.ParseEndPoint(result.GetValue(listen)!, "--listen"),
                StunPort = result.GetValue(stunPort) is >= 0 and var port ? port : null,
                KeepAliveInterval = TimeSpan.FromSeconds(result.GetValue(keepAlive) is > 0 and var seconds ? seconds : throw new ArgumentException("--keepalive must be positive.", "--keepalive")),
            };
            var allowed = (result.GetValue(allow) ?? []).Select(a => Cli.ParsePeerId(a, "--allow")).ToHashSet();
            if (allowed.Count > 0)
            {
                options.AllowedDevices = allowed;
            }

            using ILoggerFactory logging = Cli.Logging(result.GetValue(verbose));
            using PeerIdentity me = Cli.LoadIdentity(result.GetValue(identity));
            using CancellationTokenSource stop = Cli.StopOnSignals(token, out IDisposable signals);
            using (signals)
            {
                await using RendezvousServer server = await RendezvousServer.StartAsync(me, options, logging, stop.Token);
                Console.WriteLine($"rendezvous: {server.PeerId} on {server.EndPoint}{(server.StunEndPoint is { } s ? $", STUN on {s.Port} (UDP and TCP)" : "")}");
                await WaitAsync(stop.Token);
                Console.WriteLine("stopped");
                return 0;
            }
        }));
        return command;
    }

    private static Command StunServerCommand()
    {
        var listen = new Option<string>("--listen", "-l") { Description = "Primary endpoint, ADDRESS:PORT (UDP and TCP).", DefaultValueFactory = _ => "0.0.0.0:3478" };
        var alternate = new Option<string?>("--alternate") { Description = "Second address and port, ADDRESS:PORT, for RFC 5780 behaviour tests (both addresses must be specific)." };
        var noTcp = new Option<bool>("--no-tcp") { Description = "UDP only." };
        var verbose = Cli.VerboseOption();
        var command = new Command("stun-server", "Run a STUN server (RFC 8489; RFC 5780 with --alternate).") { listen, alternate, noTcp, verbose };
        command.SetAction((result, token) => Cli.RunAsync(async () =>
        {
            var options = new StunServerOptions
            {
                PrimaryEndPoint = Cli.ParseEndPoint(result.GetValue(listen)!, "--listen"),
                EnableTcp = !result.GetValue(noTcp),
            };
            if (result.GetValue(alternate) is { } text)
            {
                IPEndPoint other = Cli.ParseEndPoint(text, "--alternate");
                options.AlternateAddress = other.Address;
                options.AlternatePort = other.Port;
            }

            using ILoggerFactory logging = Cli.Logging(result.GetValue(verbose));
            using CancellationTokenSource stop = Cli.StopOnSignals(token, out IDisposable signals);
            using (signals)
            {
                await using StunServer server = await StunServer.StartAsync(options, logging, stop.Token);
                Console.WriteLine($"stun-server: {string.Join(", ", server.LocalEndPoints)}{(options.EnableTcp ? " (UDP and TCP)" : " (UDP)")}");
                await WaitAsync(stop.Token);
                Console.WriteLine("stopped");
                return 0;
            }
        }));
        return command;
    }

    /// <summary>Until Ctrl+C or SIGTERM (standard input is not read: under systemd or with &amp; it is /dev/null).</summary>
    private static async Task WaitAsync(CancellationToken stop)
    {
        try
        {
            await Task.Delay(Timeout.Infinite, stop);
        }
        catch (OperationCanceledException)
        {
        }
    }
}
