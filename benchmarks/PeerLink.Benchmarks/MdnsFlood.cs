using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Discovery;
using PeerLink.Discovery.Dns;

namespace PeerLink.Benchmarks;

/// <summary>
/// An mDNS responder under a flood on the loopback interface (issue 15 §4; multicast is pinned to loopback, so nothing
/// reaches the machine's real interfaces). A sender multicasts as fast as it can: queries for random names, responses
/// full of records for random names (cache pressure), and garbage; a legacy querier meanwhile asks for the advertised
/// service's SRV record and times the unicast answer. <c>-- --mdns-flood [SECONDS]</c>.
/// </summary>
internal static class MdnsFlood
{
    private static readonly IPAddress Group = IPAddress.Parse("224.0.0.251");

    public static async Task RunAsync(int seconds)
    {
        string loopback = NetworkInterface.GetAllNetworkInterfaces().First(n => n.NetworkInterfaceType == NetworkInterfaceType.Loopback).Name;
        var options = new MdnsOptions { UseIPv6 = false };
        options.Interfaces.Add(loopback);
        await using ServiceDiscovery responder = await ServiceDiscovery.StartAsync(options);
        await using ServiceRegistration registration = await responder.AdvertiseAsync(new ServiceProfile("Flood target", "_peerlink._tcp", 4242));
        DnsName instance = DnsName.Parse("_peerlink._tcp.local").Prepend(registration.InstanceName);

        (double[] quiet, int quietLost) = await LegacyQueriesAsync(instance, 200);
        Report("without the flood", quiet, quietLost);

        long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        long sent = 0;
        Task flood = Task.Run(() =>
        {
            using Socket socket = Multicaster(port: 5353);   // responses count only from port 5353 (RFC 6762 §6)
            var random = new Random(6762);
            var target = new IPEndPoint(Group, 5353);
            while (!stop.IsCancellationRequested)
            {
                string name = $"flood-{random.Next()}";
                byte[] packet = (sent % 3) switch
                {
                    0 => new DnsMessage { Questions = [new DnsQuestion(DnsName.Parse($"{name}._http._tcp.local"), DnsRecordType.Srv)] }.ToArray(),
                    1 => new DnsMessage
                    {
                        Flags = DnsMessage.ResponseFlags,
                        Answers = [.. Enumerable.Range(0, 8).Select(i => (DnsRecord)new DnsAddressRecord(DnsName.Parse($"{name}-{i}.local"), 120, new IPAddress(random.Next())))],
                    }.ToArray(),
                    _ => RandomBytes(random),
                };
                socket.SendTo(packet, target);
                sent++;
            }
        });
        TimeSpan cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        (double[] flooded, int floodLost) = await LegacyQueriesAsync(instance, 200);
        await flood;
        double elapsed = clock.Elapsed.TotalSeconds;
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuStart;
        long heapAfter = GC.GetTotalMemory(forceFullCollection: true);
        int cached = await responder.Engine.InvokeAsync(() => responder.Engine.CachedRecords);
        Report($"during the flood ({sent / elapsed:N0} packets/s offered: random queries, responses of 8 records, garbage)", flooded, floodLost);
        Console.WriteLine($"process CPU {cpu.TotalSeconds / elapsed * 100:N0} % of one core (sender included); managed heap {heapBefore / 1024.0 / 1024.0:N1} MiB before, {heapAfter / 1024.0 / 1024.0:N1} MiB after; {cached} records cached (the bound is 4,096); {responder.Engine.DroppedPackets:N0} packets dropped at the engine's queue bound");
    }

    private static byte[] RandomBytes(Random random)
    {
        byte[] bytes = new byte[random.Next(12, 200)];
        random.NextBytes(bytes);
        return bytes;
    }

    /// <summary>A socket that multicasts on the loopback interface only.</summary>
    private static Socket Multicaster(int port = 0)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastInterface, IPAddress.Loopback.GetAddressBytes());
        socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastLoopback, true);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.Bind(new IPEndPoint(port == 0 ? IPAddress.Loopback : IPAddress.Any, port));
        return socket;
    }

    /// <summary>Legacy unicast queries (RFC 6762 §6.7) for the instance's SRV record, one at a time, each given 1 s.</summary>
    private static async Task<(double[] Milliseconds, int Lost)> LegacyQueriesAsync(DnsName instance, int count)
    {
        using Socket socket = Multicaster();
        byte[] buffer = new byte[9000];
        var times = new List<double>();
        int lost = 0;
        for (int i = 0; i < count; i++)
        {
            ushort id = (ushort)(i + 1);
            byte[] query = new DnsMessage { Id = id, Questions = [new DnsQuestion(instance, DnsRecordType.Srv)] }.ToArray();
            long start = Stopwatch.GetTimestamp();
            await socket.SendToAsync(query, new IPEndPoint(Group, 5353));
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            bool answered = false;
            try
            {
                while (!answered)
                {
                    SocketReceiveFromResult r = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), wait.Token);
                    answered = DnsMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out DnsMessage? m, out _) && m!.IsResponse && m.Id == id;
                }

                times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
            catch (OperationCanceledException)
            {
                lost++;
            }
        }

        return ([.. times.Order()], lost);
    }

    private static void Report(string label, double[] times, int lost) =>
        Console.WriteLine(Measurements.Latencies(label, times, lost, "legacy queries answered", "unanswered within 1 s"));
}
