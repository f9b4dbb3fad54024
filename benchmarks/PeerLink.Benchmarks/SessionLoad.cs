using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Sessions;

namespace PeerLink.Benchmarks;

/// <summary>
/// Many concurrent sessions on one node, each exchanging a message a second (issue 15 §4): the node (this process)
/// echoes every message; a child process (this assembly with <c>--load-clients</c>) opens the sessions, sends one
/// 64-byte message per session per second spread evenly over the second, and counts the echoes. Measured on the node:
/// managed heap and resident memory per session, CPU per session, and whether every message came back.
/// Not a BenchmarkDotNet benchmark (it measures a state under load): <c>-- --session-load [COUNT] [SECONDS]</c>.
/// </summary>
internal static class SessionLoad
{
    public static async Task RunAsync(int count, int seconds)
    {
        using PeerIdentity identity = PeerIdentity.Generate();
        await using PeerNode node = await new PeerNodeBuilder(identity)
            .ListenOn(new IPEndPoint(IPAddress.Loopback, 0))
            .Configure(o =>
            {
                o.MaxSessions = count + 100;
                o.MaxPendingHandshakes = 512;
                o.MaxPendingHandshakesPerAddress = 512;   // every client comes from 127.0.0.1
                o.IncomingQueueLength = 4096;
            })
            .StartAsync();
        long echoed = 0;
        _ = Task.Run(async () =>
        {
            await foreach (SecureSession session in node.AcceptAllAsync())
            {
                _ = Task.Run(async () =>
                {
                    try
                    {
                        while (await session.ReceiveAsync() is { } message)
                        {
                            await session.SendAsync(message.Payload);
                            Interlocked.Increment(ref echoed);
                        }
                    }
                    catch (PeerLinkException)
                    {
                    }
                });
            }
        });

        long heapBefore = Heap();
        long rssBefore = Rss();
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (!Environment.ProcessPath!.EndsWith("PeerLink.Benchmarks", StringComparison.Ordinal))
        {
            start.ArgumentList.Add(typeof(SessionLoad).Assembly.Location);
        }

        foreach (string arg in new[] { "--load-clients", node.LocalEndPoints[0].ToString()!, node.PeerId.ToString(), count.ToString(CultureInfo.InvariantCulture), seconds.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(arg);
        }

        var clock = Stopwatch.StartNew();
        using Process clients = Process.Start(start)!;
        string? opened = await clients.StandardOutput.ReadLineAsync();   // "opened N in S s"
        Console.WriteLine($"clients: {opened}");
        long heapOpen = Heap();
        long rssOpen = Rss();
        TimeSpan cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
        long echoedStart = Interlocked.Read(ref echoed);
        var steady = Stopwatch.StartNew();
        string? result = await clients.StandardOutput.ReadLineAsync();   // "sent N received M missing K"
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuStart;
        double steadySeconds = steady.Elapsed.TotalSeconds;
        long echoedSteady = Interlocked.Read(ref echoed) - echoedStart;
        long rssLoaded = Rss();
        clients.StandardInput.Close();
        await clients.WaitForExitAsync();

        Console.WriteLine($"clients: {result}");
        Console.WriteLine($"sessions: {count}; node managed heap {(heapOpen - heapBefore) / (double)count:N0} B/session, resident {(rssOpen - rssBefore) / (double)count:N0} B/session after opening ({(rssLoaded - rssBefore) / (double)count:N0} B/session under load)");
        Console.WriteLine($"steady state: {steadySeconds:N1} s, {echoedSteady / steadySeconds:N0} messages/s echoed; node CPU {cpu.TotalSeconds / steadySeconds * 100:N1} % of one core, {cpu.TotalMicroseconds / steadySeconds / count:N2} µs/s per session ({cpu.TotalMicroseconds / Math.Max(1, echoedSteady):N1} µs per echoed message)");
    }

    /// <summary>The child: opens the sessions, then sends one message per session per second for SECONDS, and reports.</summary>
    public static async Task ClientsAsync(IPEndPoint endPoint, PeerId nodeId, int count, int seconds)
    {
        // 100 identities with count/100 sessions each: NSec keeps every key in locked memory, which is limited.
        var identities = Enumerable.Range(0, 100).Select(_ => PeerIdentity.Generate()).ToArray();
        var nodes = new PeerNode[identities.Length];
        for (int i = 0; i < identities.Length; i++)
        {
            nodes[i] = await new PeerNodeBuilder(identities[i]).StartAsync();
        }

        var sessions = new SecureSession[count];
        var received = new long[count];
        var clock = Stopwatch.StartNew();
        using (var gate = new SemaphoreSlim(64))
        {
            await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
            {
                await gate.WaitAsync();
                try
                {
                    sessions[i] = await nodes[i % nodes.Length].ConnectAsync(endPoint, nodeId);
                }
                finally
                {
                    gate.Release();
                }
            }));
        }

        Console.WriteLine($"opened {count} in {clock.Elapsed.TotalSeconds:N1} s");
        Task[] readers = [.. Enumerable.Range(0, count).Select(i => Task.Run(async () =>
        {
            try
            {
                while (await sessions[i].ReceiveAsync() is { })
                {
                    Interlocked.Increment(ref received[i]);
                }
            }
            catch (PeerLinkException)
            {
            }
        }))];

        // Every second, every session sends once; the sends are spread over the second in 20 slices.
        byte[] payload = new byte[64];
        long sent = 0;
        const int Slices = 20;
        var pace = Stopwatch.StartNew();
        for (int second = 0; second < seconds; second++)
        {
            for (int slice = 0; slice < Slices; slice++)
            {
                for (int i = slice; i < count; i += Slices)
                {
                    await sessions[i].SendAsync(payload);
                    sent++;
                }

                TimeSpan due = TimeSpan.FromSeconds(second + ((slice + 1) / (double)Slices));
                if (due > pace.Elapsed)
                {
                    await Task.Delay(due - pace.Elapsed);   // pacing the load generator, not synchronising a test
                }
            }
        }

        // Every echo is in when each session's count reaches the messages it sent.
        var drain = Stopwatch.StartNew();
        while (received.Sum() < sent && drain.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(50);
        }

        long got = received.Sum();
        int short_ = received.Count(r => r != seconds);
        Console.WriteLine($"sent {sent} received {got} missing {sent - got}; sessions with a wrong count {short_}");
        while (await Console.In.ReadLineAsync() is not null)
        {
        }

        foreach (SecureSession session in sessions)
        {
            session.Abort();
        }

        foreach (PeerNode n in nodes)
        {
            await n.DisposeAsync();
        }

        foreach (PeerIdentity id in identities)
        {
            id.Dispose();
        }
    }

    private static long Heap() => Measurements.ManagedHeap();

    private static long Rss() => File.ReadLines("/proc/self/status").Where(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
        .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024).First();
}
