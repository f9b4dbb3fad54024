using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net;
using System.Threading.Tasks;
using PeerLink.Sessions;

namespace PeerLink.Samples.SmartHome;

/// <summary>
/// <c>SmartHome footprint</c>: the figures docs/benchmarks.md records for small devices. The time from the start of
/// the process to the first established session (a node connects to a second node in this process over loopback), and
/// the resident memory once both sit idle with that one session.
/// </summary>
internal static class Footprint
{
    public static async Task<int> RunAsync()
    {
        DateTime started = Process.GetCurrentProcess().StartTime.ToUniversalTime();
        using NetworkKey key = NetworkKey.Generate();
        using PeerIdentity lightIdentity = PeerIdentity.Generate();
        using PeerIdentity sensorIdentity = PeerIdentity.Generate();
        await using PeerNode light = await new PeerNodeBuilder(lightIdentity).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).Configure(o => o.Session.NetworkKey = key).StartAsync();
        await using PeerNode sensor = await new PeerNodeBuilder(sensorIdentity).Configure(o => o.Session.NetworkKey = key).StartAsync();
        SecureSession session = await sensor.ConnectAsync(light.LocalEndPoints[0], light.PeerId);
        SecureSession accepted = (await light.AcceptAsync())!;
        await session.SendAsync<LightRequest>(new MotionDetected("hallway", DateTimeOffset.UtcNow));
        _ = (await accepted.ReceiveAsync())!.Value.Deserialize<LightRequest>();
        double toFirstSession = (DateTime.UtcNow - started).TotalMilliseconds;

        await Task.Delay(TimeSpan.FromSeconds(2));   // idle: a measurement of memory at rest, not a synchronisation
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        long rssKiB = File.ReadLines("/proc/self/status").Where(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
            .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture)).FirstOrDefault();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"first session after {toFirstSession:F0} ms from process start; idle RSS {rssKiB / 1024.0:F1} MiB (two nodes, one session, one process)"));
        await session.CloseAsync();
        return 0;
    }
}
