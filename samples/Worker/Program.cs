// A PeerLink node in a worker service: configured from appsettings.json (section "PeerLink"), started and stopped with
// the host, with a health check, and its metrics and traces exported with OpenTelemetry (console exporter when
// Telemetry:Console is true). `--demo` also runs a switch in the same process that turns the light on and off, prints
// the health report and stops the host: nothing leaves loopback.
using System;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using PeerLink;
using PeerLink.Diagnostics;
using PeerLink.Hosting;
using PeerLink.Samples.Worker;
using PeerLink.Sessions;

bool demo = args.Contains("--demo");
HostApplicationBuilder builder = Host.CreateApplicationBuilder(args.Where(a => a != "--demo").ToArray());
if (demo)
{
    // The demo's light gets a fresh identity in a temporary folder instead of the configured key file.
    builder.Configuration["PeerLink:IdentityFile"] = System.IO.Path.Combine(System.IO.Directory.CreateTempSubdirectory("peerlink-worker-").FullName, "light.key");
}

builder.Services.AddPeerLink(builder.Configuration.GetSection("PeerLink"));
builder.Services.AddHealthChecks().AddPeerLink();
builder.Services.AddHostedService<LightService>();
if (builder.Configuration.GetValue<bool>("Telemetry:Console"))
{
    builder.Services.AddOpenTelemetry()
        .WithMetrics(metrics => metrics.AddMeter(PeerLinkTelemetry.MeterName).AddConsoleExporter())
        .WithTracing(tracing => tracing.AddSource(PeerLinkTelemetry.ActivitySourceName).AddConsoleExporter());
}

using IHost host = builder.Build();
if (!demo)
{
    await host.RunAsync();
    return 0;
}

await host.StartAsync();
PeerNode light = await host.Services.GetRequiredService<PeerLinkNode>().WaitForStartAsync();
Console.WriteLine($"light  {light.PeerId} on {light.LocalEndPoints[0]}");

using (PeerIdentity switchIdentity = PeerIdentity.Generate())
await using (PeerNode lightSwitch = await new PeerNodeBuilder(switchIdentity).StartAsync())
{
    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
    SecureSession session = await lightSwitch.ConnectAsync(light.LocalEndPoints[0], light.PeerId, timeout.Token);
    foreach (Command command in new[] { new Command(true, 80), new Command(false, 0) })
    {
        await session.SendAsync(command, timeout.Token);
        LightState state = (await session.ReceiveAsync(timeout.Token))!.Value.Deserialize<LightState>();
        Console.WriteLine($"switch <- light is {(state.On ? "on" : "off")} at {state.Brightness}%");
    }

    await session.CloseAsync();
}

HealthReport health = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
Console.WriteLine($"health: {health.Status} ({string.Join("; ", health.Entries.Select(e => $"{e.Key}: {e.Value.Description}"))})");
await host.StopAsync();
Console.WriteLine($"stopped: the node is running = {host.Services.GetRequiredService<PeerLinkNode>().IsRunning}");
return health.Status == HealthStatus.Healthy ? 0 : 1;
