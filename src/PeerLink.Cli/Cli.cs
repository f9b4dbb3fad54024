using System;
using System.Collections.Generic;
using System.CommandLine;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.NetworkInformation;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PeerLink.Discovery;
using PeerLink.Nat.Rendezvous;

namespace PeerLink.Cli;

/// <summary>What every command shares: options, identity files, endpoints, the one-line error and the exit codes.</summary>
internal static class Cli
{
    /// <summary>Exit codes: 0 success, 1 a network or protocol failure, 2 bad arguments, 130 interrupted.</summary>
    public const int Failure = 1;
    public const int BadArguments = 2;
    public const int Interrupted = 130;

    public static Option<string?> IdentityOption() => new("--identity", "-i")
    {
        Description = "The identity's key file (created when missing). Default: $PEERLINK_IDENTITY, else peerlink/identity.key in the user's data folder.",
    };

    public static Option<string[]> RendezvousOption() => new("--rendezvous")
    {
        Description = "A rendezvous node as ADDRESS:PORT; repeat for the nodes of a tier (with --rendezvous-peer in the same order).",
        AllowMultipleArgumentsPerToken = false,
    };

    public static Option<string[]> RendezvousPeerOption() => new("--rendezvous-peer")
    {
        Description = "The PeerId of each --rendezvous node, as it printed it.",
    };

    public static Option<bool> LanOption() => new("--lan")
    {
        Description = "Use mDNS on the LAN (multicast: opt-in).",
    };

    public static Option<string[]> InterfaceOption() => new("--interface")
    {
        Description = "Network interface(s) for mDNS, by name (e.g. lo, eth0). Default: every multicast-capable interface.",
    };

    public static Option<bool> VerboseOption() => new("--verbose", "-v")
    {
        Description = "Log what PeerLink does (to standard error). Without it, only the outcome and a one-line error are printed.",
    };

    public static string DefaultIdentityPath() =>
        Environment.GetEnvironmentVariable("PEERLINK_IDENTITY") is { Length: > 0 } fromEnvironment
            ? fromEnvironment
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "peerlink", "identity.key");

    public static PeerIdentity LoadIdentity(string? path)
    {
        path ??= DefaultIdentityPath();
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return PeerIdentity.LoadOrCreate(path);
    }

    public static ILoggerFactory Logging(bool verbose) => LoggerFactory.Create(b => b
        .AddSimpleConsole(o => o.SingleLine = true)
        .AddFilter((category, level) => verbose && level >= LogLevel.Information)
        .Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace));

    /// <summary>ADDRESS:PORT; port 0 ("any free port") only where this side binds (--listen, --alternate).</summary>
    public static IPEndPoint ParseEndPoint(string text, string option)
    {
        bool binds = option is "--listen" or "--alternate";
        return IPEndPoint.TryParse(text, out IPEndPoint? endPoint) && text.Contains(':', StringComparison.Ordinal) && (endPoint.Port != 0 || binds)
            ? endPoint
            : throw new ArgumentException($"{option}: '{text}' is not ADDRESS:PORT{(binds ? "" : " with a port")}.", option);
    }

    public static PeerId ParsePeerId(string text, string option) =>
        PeerId.TryParse(text, out PeerId peer, out string? error) ? peer : throw new ArgumentException($"{option}: '{text}' is not a PeerId ({error}).", option);

    public static List<RendezvousNode> RendezvousNodes(string[]? endPoints, string[]? peerIds)
    {
        endPoints ??= [];
        peerIds ??= [];
        if (endPoints.Length != peerIds.Length)
        {
            throw new ArgumentException($"Give one --rendezvous-peer per --rendezvous ({endPoints.Length} and {peerIds.Length}).", "--rendezvous-peer");
        }

        return [.. endPoints.Zip(peerIds, (e, p) => new RendezvousNode(ParseEndPoint(e, "--rendezvous"), ParsePeerId(p, "--rendezvous-peer")))];
    }

    public static PeerNodeBuilder UseLan(this PeerNodeBuilder builder, bool lan, string[]? interfaces, bool advertise, string? instanceName = null)
    {
        if (!lan)
        {
            return builder;
        }

        return builder.UseMdnsDiscovery(o =>
        {
            o.Advertise = advertise;
            o.InstanceName = instanceName;
            foreach (string name in interfaces ?? [])
            {
                o.Mdns.Interfaces.Add(name);
            }
        });
    }

    /// <summary>Cancelled by Ctrl+C or SIGTERM (the first one; a second Ctrl+C ends the process at once).</summary>
    public static CancellationTokenSource StopOnSignals(CancellationToken invocation, out IDisposable registrations)
    {
        var stop = CancellationTokenSource.CreateLinkedTokenSource(invocation);
        PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        registrations = term;
        return stop;
    }

    /// <summary>Runs a command's body: a failure is one line on standard error and an exit code, never a stack trace.</summary>
    public static async Task<int> RunAsync(Func<Task<int>> body)
    {
        try
        {
            return await body().ConfigureAwait(false);
        }
        catch (ArgumentException e)
        {
            string message = e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal);
            Console.Error.WriteLine($"peerlink: {OneLine(message)}");
            return BadArguments;
        }
        catch (PeerLinkException e)
        {
            Console.Error.WriteLine($"peerlink: {e.Error}: {OneLine(e.Message)}");
            return Failure;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("peerlink: interrupted");
            return Interrupted;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or TimeoutException)
        {
            Console.Error.WriteLine($"peerlink: {OneLine(e.Message)}");
            return Failure;
        }
    }

    public static string OneLine(string text) => text.ReplaceLineEndings(" ");

    public static string LoopbackInterfaceName() =>
        NetworkInterface.GetAllNetworkInterfaces().First(n => n.NetworkInterfaceType == NetworkInterfaceType.Loopback).Name;

    /// <summary>True when a person watches (colour, live tables and progress bars); false when output goes to a file or pipe.</summary>
    public static bool Interactive => !Console.IsOutputRedirected;
}
