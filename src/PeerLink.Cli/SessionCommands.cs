using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.CommandLine;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;
using Spectre.Console;

namespace PeerLink.Cli;

/// <summary>
/// <c>peerlink listen</c>, <c>connect</c>, <c>send</c> and <c>bench</c>. Messages are UTF-8 text; requests are echoed
/// by a listener, which is what <c>send --request</c> and <c>bench</c> use.
/// </summary>
internal static class SessionCommands
{
    /// <summary>The first message of a benchmark session: the listener then counts instead of printing.</summary>
    private static readonly byte[] BenchHello = "\0peerlink-bench/1\0"u8.ToArray();

    public static IEnumerable<Command> Create()
    {
        yield return Listen();
        yield return Connect();
        yield return Send();
        yield return Bench();
    }

    /// <summary>The options every session command shares, and the node they describe.</summary>
    private sealed class NodeOptions
    {
        public readonly Option<string?> Identity = Cli.IdentityOption();
        public readonly Option<bool> Lan = Cli.LanOption();
        public readonly Option<string[]> Interfaces = Cli.InterfaceOption();
        public readonly Option<string[]> Rendezvous = Cli.RendezvousOption();
        public readonly Option<string[]> RendezvousPeers = Cli.RendezvousPeerOption();
        public readonly Option<bool> Verbose = Cli.VerboseOption();

        public void AddTo(Command command)
        {
            command.Options.Add(Identity);
            command.Options.Add(Lan);
            command.Options.Add(Interfaces);
            command.Options.Add(Rendezvous);
            command.Options.Add(RendezvousPeers);
            command.Options.Add(Verbose);
        }

        public PeerNodeBuilder Builder(ParseResult result, PeerIdentity identity, ILoggerFactory logging, bool advertise, string? instanceName = null)
        {
            var builder = new PeerNodeBuilder(identity, logging)
                .UseLan(result.GetValue(Lan), result.GetValue(Interfaces), advertise, instanceName);
            List<RendezvousNode> nodes = Cli.RendezvousNodes(result.GetValue(Rendezvous), result.GetValue(RendezvousPeers));
            if (nodes.Count > 0)
            {
                builder.UseRendezvous(nodes);
            }

            return builder;
        }

        public bool UsesRendezvous(ParseResult result) => result.GetValue(Rendezvous) is { Length: > 0 };
    }

    private static Command Listen()
    {
        var node = new NodeOptions();
        var listen = new Option<string[]>("--listen", "-l") { Description = "Endpoint(s) to listen on, ADDRESS:PORT. Default: 0.0.0.0:7300, or none with --rendezvous only." };
        var allow = new Option<string[]>("--allow") { Description = "Admit only these PeerIds (repeat). Default: every authenticated peer." };
        var name = new Option<string?>("--name") { Description = "The instance name advertised with --lan." };
        var command = new Command("listen", "Accept sessions: print each peer, its path and its messages; echo requests (for send --request and bench). Ctrl+C stops.") { listen, allow, name };
        node.AddTo(command);
        command.SetAction((result, token) => Cli.RunAsync(async () =>
        {
            string[] endPoints = result.GetValue(listen) is { Length: > 0 } given ? given : node.UsesRendezvous(result) ? [] : ["0.0.0.0:7300"];
            var allowed = (result.GetValue(allow) ?? []).Select(a => Cli.ParsePeerId(a, "--allow")).ToHashSet();
            using ILoggerFactory logging = Cli.Logging(result.GetValue(node.Verbose));
            using PeerIdentity identity = Cli.LoadIdentity(result.GetValue(node.Identity));
            using CancellationTokenSource stop = Cli.StopOnSignals(token, out IDisposable signals);
            using (signals)
            {
                PeerNodeBuilder builder = node.Builder(result, identity, logging, advertise: true, result.GetValue(name));
                foreach (string endPoint in endPoints)
                {
                    builder.ListenOn(Cli.ParseEndPoint(endPoint, "--listen"));
                }

                if (allowed.Count > 0)
                {
                    builder.Configure(o => o.Session.AllowedPeers = allowed);
                }

                await using PeerNode peer = await builder.StartAsync(stop.Token);
                Console.WriteLine($"listening: {peer.PeerId} on {(peer.LocalEndPoints.Count > 0 ? string.Join(", ", peer.LocalEndPoints) : "no address (rendezvous only)")}");
                if (peer.GetComponent<RendezvousClient>() is { } rendezvous)
                {
                    try
                    {
                        await rendezvous.WaitForAttachmentAsync(stop.Token).WaitAsync(TimeSpan.FromSeconds(10), stop.Token);
                        Console.WriteLine($"attached: rendezvous node {rendezvous.CurrentNode.EndPoint}");
                    }
                    catch (TimeoutException)
                    {
                        Console.WriteLine("attached: not yet (the node retries in the background)");
                    }
                }

                try
                {
                    await foreach (SecureSession session in peer.AcceptAllAsync(stop.Token))
                    {
                        _ = ServeAsync(session, stop.Token);
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                }

                Console.WriteLine("stopped");
                return 0;
            }
        }));
        return command;
    }

    private static async Task ServeAsync(SecureSession session, CancellationToken stop)
    {
        string who = session.RemotePeerId.ToFingerprint();
        Console.WriteLine($"session: {session.RemotePeerId} ({session.Protocol.Name}) path: {session.Path.Description}");
        session.PathChanged += (_, path) => Console.WriteLine($"path: {who} {path.Description}");
        bool bench = false;
        long benchBytes = 0;
        try
        {
            while (await session.ReceiveAsync(stop) is { } message)
            {
                if (message.IsRequest)
                {
                    await session.RespondAsync(message, bench ? Counted(benchBytes) : message.Payload, stop);
                }
                else if (bench)
                {
                    benchBytes += message.Payload.Length;
                }
                else if (message.Payload.Span.SequenceEqual(BenchHello))
                {
                    bench = true;
                    Console.WriteLine($"bench: {who}");
                }
                else
                {
                    Console.WriteLine($"{who}: {Encoding.UTF8.GetString(message.Payload.Span)}");
                }
            }

            Console.WriteLine($"closed: {who}{(bench ? $" (bench: {benchBytes} bytes)" : "")}");
        }
        catch (PeerLinkException e)
        {
            Console.WriteLine($"closed: {who}: {e.Error}");
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            await session.DisposeAsync();
        }

        static byte[] Counted(long bytes)
        {
            byte[] answer = new byte[8];
            BinaryPrimitives.WriteInt64BigEndian(answer, bytes);
            return answer;
        }
    }

    /// <summary>The target argument: an endpoint (with --peer for IK) or a PeerId (found over --lan or --rendezvous).</summary>
    private static Argument<string> TargetArgument() => new("target")
    {
        Description = "ADDRESS:PORT of the peer, or its PeerId (then found over --lan or through --rendezvous).",
    };

    private static Option<string?> PeerOption() => new("--peer", "-p")
    {
        Description = "The peer's PeerId when TARGET is an endpoint: one-round-trip IK, and the peer must be that one.",
    };

    private static async Task<SecureSession> OpenAsync(PeerNode node, string target, string? peer, CancellationToken cancellationToken)
    {
        if (PeerId.TryParse(target, out PeerId byId))
        {
            return await node.ConnectAsync(byId, cancellationToken);
        }

        IPEndPoint endPoint = Cli.ParseEndPoint(target, "target");
        return await node.ConnectAsync(endPoint, peer is null ? null : Cli.ParsePeerId(peer, "--peer"), cancellationToken);
    }

    private static Command Connect()
    {
        var node = new NodeOptions();
        var target = TargetArgument();
        var peer = PeerOption();
        var command = new Command("connect", "Open a session and chat: lines typed are sent, messages received are printed, with the path and its changes. Ctrl+D or Ctrl+C closes.") { target, peer };
        node.AddTo(command);
        command.SetAction((result, token) => Cli.RunAsync(async () =>
        {
            using ILoggerFactory logging = Cli.Logging(result.GetValue(node.Verbose));
            using PeerIdentity identity = Cli.LoadIdentity(result.GetValue(node.Identity));
            using CancellationTokenSource stop = Cli.StopOnSignals(token, out IDisposable signals);
            using (signals)
            {
                await using PeerNode me = await node.Builder(result, identity, logging, advertise: false).StartAsync(stop.Token);
                await AttachIfAskedAsync(me, stop.Token);
                SecureSession session = await OpenAsync(me, result.GetValue(target)!, result.GetValue(peer), stop.Token);
                Console.WriteLine($"session: {session.RemotePeerId} ({session.Protocol.Name})");
                Console.WriteLine($"path: {session.Path.Description}");
                session.PathChanged += (_, path) => Console.WriteLine($"path: {path.Description}");

                Task printing = Task.Run(async () =>
                {
                    try
                    {
                        while (await session.ReceiveAsync(stop.Token) is { } message)
                        {
                            Console.WriteLine($"{session.RemotePeerId.ToFingerprint()}: {Encoding.UTF8.GetString(message.Payload.Span)}");
                        }

                        Console.WriteLine("closed by the peer");
                    }
                    catch (Exception e) when (e is PeerLinkException or OperationCanceledException)
                    {
                    }
                }, CancellationToken.None);

                while (!stop.IsCancellationRequested && !printing.IsCompleted)
                {
                    Task<string?> read = Console.In.ReadLineAsync(stop.Token).AsTask();
                    if (await Task.WhenAny(read, printing) == printing)
                    {
                        break;
                    }

                    if (await read is not { } line)
                    {
                        break;   // end of input
                    }

                    await session.SendAsync(Encoding.UTF8.GetBytes(line), stop.Token);
                }

                await session.CloseAsync();
                await printing;
                return 0;
            }
        }));
        return command;
    }

    private static Command Send()
    {
        var node = new NodeOptions();
        var target = TargetArgument();
        var peer = PeerOption();
        var text = new Argument<string>("message") { Description = "The message (UTF-8 text)." };
        var request = new Option<bool>("--request") { Description = "Send it as a request and print the response (a listener echoes it)." };
        var timeout = new Option<double>("--timeout") { Description = "Give up after this many seconds.", DefaultValueFactory = _ => 15 };
        var command = new Command("send", "Send one message and close gracefully; exit code 0 when the peer took it. For scripts.") { target, text, peer, request, timeout };
        node.AddTo(command);
        command.SetAction((result, token) => Cli.RunAsync(async () =>
        {
            using ILoggerFactory logging = Cli.Logging(result.GetValue(node.Verbose));
            using PeerIdentity identity = Cli.LoadIdentity(result.GetValue(node.Identity));
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(token);
            deadline.CancelAfter(TimeSpan.FromSeconds(result.GetValue(timeout)));
            try
            {
                await using PeerNode me = await node.Builder(result, identity, logging, advertise: false).StartAsync(deadline.Token);
                await AttachIfAskedAsync(me, deadline.Token);
                SecureSession session = await OpenAsync(me, result.GetValue(target)!, result.GetValue(peer), deadline.Token);
                byte[] payload = Encoding.UTF8.GetBytes(result.GetValue(text)!);
                if (result.GetValue(request))
                {
                    byte[] response = await session.RequestAsync(payload, deadline.Token);
                    Console.WriteLine(Encoding.UTF8.GetString(response));
                }
                else
                {
                    await session.SendAsync(payload, deadline.Token);
                }

                await session.CloseAsync().WaitAsync(deadline.Token);   // delivered: the close follows the message
                return 0;
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested && !token.IsCancellationRequested)
            {
                throw new TimeoutException($"No answer within {result.GetValue(timeout)} s.");
            }
        }));
        return command;
    }

    private static async Task AttachIfAskedAsync(PeerNode node, CancellationToken cancellationToken)
    {
        if (node.GetComponent<RendezvousClient>() is { } rendezvous)
        {
            await rendezvous.WaitForAttachmentAsync(cancellationToken);
        }
    }

    private static Command Bench()
    {
        var node = new NodeOptions();
        var target = TargetArgument();
        var peer = PeerOption();
        var size = new Option<int>("--size") { Description = "Message size in bytes for the throughput run.", DefaultValueFactory = _ => 16 * 1024 };
        var seconds = new Option<double>("--duration", "-d") { Description = "Seconds of the throughput run.", DefaultValueFactory = _ => 5 };
        var roundTrips = new Option<int>("--round-trips") { Description = "Request/response round trips of 64 bytes to time.", DefaultValueFactory = _ => 1000 };
        var command = new Command("bench", "Measure throughput and round trips to a peer that runs 'peerlink listen'; prints a summary table.") { target, peer, size, seconds, roundTrips };
        node.AddTo(command);
        command.SetAction((result, token) => Cli.RunAsync(async () =>
        {
            int messageSize = result.GetValue(size);
            if (messageSize is < 1 or > 1024 * 1024)
            {
                throw new ArgumentException("--size must be 1 byte to 1 MiB.", "--size");
            }

            using ILoggerFactory logging = Cli.Logging(result.GetValue(node.Verbose));
            using PeerIdentity identity = Cli.LoadIdentity(result.GetValue(node.Identity));
            await using PeerNode me = await node.Builder(result, identity, logging, advertise: false).StartAsync(token);
            await AttachIfAskedAsync(me, token);
            SecureSession session = await OpenAsync(me, result.GetValue(target)!, result.GetValue(peer), token);
            await session.SendAsync(BenchHello, token);

            // Round trips first, on an idle session.
            int count = result.GetValue(roundTrips);
            var rtts = new double[count];
            byte[] small = new byte[64];
            TimeSpan duration = TimeSpan.FromSeconds(result.GetValue(seconds));
            byte[] bulk = new byte[messageSize];
            long sent = 0;
            var clock = Stopwatch.StartNew();
            TimeSpan bulkTime = default;
            long received = 0;

            async Task RunAsync(Action<double, string> report)
            {
                for (int i = 0; i < count; i++)
                {
                    long start = Stopwatch.GetTimestamp();
                    await session.RequestAsync(small, token);
                    rtts[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
                    report(50.0 * (i + 1) / Math.Max(1, count), "round trips");
                }

                clock.Restart();
                while (clock.Elapsed < duration)
                {
                    await session.SendAsync(bulk, token);
                    sent += bulk.Length;
                    report(50 + 50 * Math.Min(1, clock.Elapsed / duration), "throughput");
                }

                byte[] answer = await session.RequestAsync(small, token);   // after every message: the peer's count
                bulkTime = clock.Elapsed;
                received = BinaryPrimitives.ReadInt64BigEndian(answer);
            }

            if (Cli.Interactive)
            {
                await AnsiConsole.Progress().StartAsync(async context =>
                {
                    ProgressTask task = context.AddTask("bench", maxValue: 100);
                    await RunAsync((value, phase) =>
                    {
                        task.Value = value;
                        task.Description = phase;
                    });
                });
            }
            else
            {
                await RunAsync((_, _) => { });
            }

            await session.CloseAsync();
            Array.Sort(rtts);
            double median = count > 0 ? rtts[count / 2] : double.NaN;
            double p99 = count > 0 ? rtts[Math.Min(count - 1, (int)(count * 0.99))] : double.NaN;
            double megabytes = received / 1e6 / bulkTime.TotalSeconds;

            var table = new Table().AddColumn("measure").AddColumn(new TableColumn("value").RightAligned());
            table.AddRow("peer", session.RemotePeerId.ToFingerprint());
            table.AddRow("path", Markup.Escape(session.Path.Description));
            table.AddRow("round trip (64 B), median", $"{median:F0} µs");
            table.AddRow("round trip (64 B), p99", $"{p99:F0} µs");
            table.AddRow($"throughput ({messageSize} B messages)", $"{megabytes:F1} MB/s");
            table.AddRow("messages per second", $"{received / (double)messageSize / bulkTime.TotalSeconds:F0}");
            table.AddRow("bytes the peer received", $"{received} of {sent}");
            AnsiConsole.Write(table);
            return received == sent ? 0 : Cli.Failure;
        }));
        return command;
    }
}
