using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.Benchmarks;

/// <summary>
/// Managed memory per idle attached device, and the attach rate, on a rendezvous node in this process: a child process
/// (this assembly with <c>--attach-clients</c>) attaches the devices, so that only the node's memory is measured here.
/// Not a BenchmarkDotNet benchmark (it measures a state): run with <c>-- --attach-memory [COUNT]</c>.
/// </summary>
internal static class AttachMemory
{
    public static async Task RunAsync(int count)
    {
        using PeerIdentity identity = PeerIdentity.Generate();
        await using RendezvousServer server = await RendezvousServer.StartAsync(identity, new RendezvousServerOptions
        {
            ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            StunPort = null,
            MaxAttachments = count + 100,
            MaxPendingHandshakes = 256,
            MaxPendingHandshakesPerAddress = 256,   // every device comes from 127.0.0.1
        });
        long before = Measure();
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (!Environment.ProcessPath!.EndsWith("PeerLink.Benchmarks", StringComparison.Ordinal))
        {
            start.ArgumentList.Add(typeof(AttachMemory).Assembly.Location);   // run through the dotnet host
        }

        foreach (string arg in new[] { "--attach-clients", server.EndPoint.ToString(), server.PeerId.ToString(), count.ToString(System.Globalization.CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(arg);
        }

        var clock = Stopwatch.StartNew();
        using Process clients = Process.Start(start)!;
        string? line = await clients.StandardOutput.ReadLineAsync();
        double seconds = clock.Elapsed.TotalSeconds;
        if (line != "attached" || server.AttachedCount != count)
        {
            throw new InvalidOperationException($"The clients said '{line}'; the node has {server.AttachedCount} attached.");
        }

        long after = Measure();
        Console.WriteLine($"Attached devices: {count} (one process, loopback); attach rate {count / seconds:N0}/s ({seconds:N1} s in all).");
        Console.WriteLine($"Node's managed heap growth just after: {(after - before) / 1024.0 / 1024.0:N1} MiB, {(after - before) / (double)count:N0} bytes per attached device.");

        // Idle is a state that lasts: after a keepalive interval, the sessions have given back their recycled buffers.
        await Task.Delay(TimeSpan.FromSeconds(30));
        long idle = Measure();
        Console.WriteLine($"Node's managed heap growth after 30 s idle: {(idle - before) / 1024.0 / 1024.0:N1} MiB, {(idle - before) / (double)count:N0} bytes per attached device.");
        clients.StandardInput.Close();
        await clients.WaitForExitAsync();
    }

    /// <summary>The child: attaches <paramref name="count"/> devices (raw attach sessions), says "attached", waits for the end of its input.</summary>
    public static async Task ClientsAsync(IPEndPoint node, PeerId nodeId, int count)
    {
        var sessions = new List<SecureSession>(count);
        var identities = new List<PeerIdentity>(count);
        var connector = new TcpPeerConnector();
        using var gate = new SemaphoreSlim(64);
        var tasks = new List<Task>();
        var lockObject = new object();
        for (int i = 0; i < count; i++)
        {
            await gate.WaitAsync();
            tasks.Add(Task.Run(async () =>
            {
                try
                {
                    var identity = PeerIdentity.Generate();
                    PeerConnection connection = await connector.ConnectAsync(node);
                    var options = new SecureSessionOptions { Identity = identity, ApplicationId = "peerlink-rendezvous", MaxMessageSize = 4096, KeepAliveInterval = TimeSpan.FromMinutes(10), IdleTimeout = TimeSpan.FromMinutes(30) };
                    SecureSession session = await SecureSession.ConnectAsync(connection, options, nodeId);
                    _ = await session.ReceiveAsync();   // the welcome
                    lock (lockObject)
                    {
                        sessions.Add(session);
                        identities.Add(identity);
                    }
                }
                finally
                {
                    gate.Release();
                }
            }));
        }

        await Task.WhenAll(tasks);
        Console.WriteLine("attached");
        while (await Console.In.ReadLineAsync() is not null)
        {
        }

        foreach (SecureSession session in sessions)
        {
            session.Abort();
            await session.DisposeAsync();
        }

        foreach (PeerIdentity identity in identities)
        {
            identity.Dispose();
        }
    }

    private static long Measure() => Measurements.ManagedHeap();
}
