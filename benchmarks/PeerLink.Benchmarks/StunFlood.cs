using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Nat.Stun;

namespace PeerLink.Benchmarks;

/// <summary>
/// A STUN server under a flood at loopback line rate (issue 15 §4): senders blast valid Binding requests and garbage as
/// fast as they can while a client times Binding transactions; the server's managed memory and the process's CPU are
/// measured. <c>-- --stun-flood [SENDERS] [SECONDS]</c>.
/// </summary>
internal static class StunFlood
{
    public static async Task RunAsync(int senders, int seconds)
    {
        await using StunServer server = await StunServer.StartAsync(new StunServerOptions { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0), EnableTcp = false });
        IPEndPoint target = server.LocalEndPoints[0];
        (double[] quiet, int quietFailed) = await BindingsAsync(target, 200);
        Report("without the flood", quiet, quietFailed);

        long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        long sent = 0;
        Task[] flood = [.. Enumerable.Range(0, senders).Select(i => Task.Run(() =>
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            var random = new Random(i);
            byte[] valid = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, StunMessageBuilder.NewTransactionId()).ToArray();
            byte[] garbage = new byte[120];
            while (!stop.IsCancellationRequested)
            {
                random.NextBytes(garbage);
                socket.SendTo((sent & 1) == 0 ? valid : garbage, target);
                Interlocked.Increment(ref sent);
            }
        }))];
        TimeSpan cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        (double[] flooded, int floodFailed) = await BindingsAsync(target, 200);
        await Task.WhenAll(flood);
        double elapsed = clock.Elapsed.TotalSeconds;
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuStart;
        long heapAfter = GC.GetTotalMemory(forceFullCollection: true);
        Report($"during the flood ({senders} senders, {Interlocked.Read(ref sent) / elapsed:N0} datagrams/s offered, half valid requests, half garbage)", flooded, floodFailed);
        Console.WriteLine($"process CPU {cpu.TotalSeconds / elapsed * 100:N0} % of one core (senders included); managed heap {heapBefore / 1024.0:N0} KiB before, {heapAfter / 1024.0:N0} KiB after");
    }

    private static async Task<(double[] Milliseconds, int Failed)> BindingsAsync(IPEndPoint server, int count)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var options = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(100), MaxTransmissions = 5 };
        var times = new List<double>();
        int failed = 0;
        for (int i = 0; i < count; i++)
        {
            try
            {
                StunBindingResult result = await StunClient.BindingAsync(socket, server, options);
                times.Add(result.RoundTripTime.TotalMilliseconds);
            }
            catch (PeerLinkException)
            {
                failed++;
            }
        }

        return ([.. times.Order()], failed);
    }

    private static void Report(string label, double[] times, int failed) =>
        Console.WriteLine(Measurements.Latencies(label, times, failed, "Bindings answered", "failed after 5 transmissions"));
}
