using System;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;

namespace PeerLink.Samples.SmartHome;

/// <summary>
/// The devices, one process each (the scene starts them): each prints "ready …" and then what happens to it, takes
/// the scene's prompts on standard input, and stops when its input ends.
/// </summary>
internal static class Devices
{
    /// <summary>The home's rendezvous node (a vendor's basestation): it relays for the phone and knows the home key.</summary>
    public static async Task<int> RendezvousAsync()
    {
        using NetworkKey key = Home.Key();
        using PeerIdentity identity = PeerIdentity.Generate();
        await using RendezvousServer server = await RendezvousServer.StartAsync(identity, new RendezvousServerOptions
        {
            ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            StunPort = 0,
            NetworkKey = key,
        });
        Home.Say($"ready {server.EndPoint} {server.PeerId}");
        await foreach (string _ in Home.CommandsAsync(CancellationToken.None))
        {
        }

        return 0;
    }

    /// <summary>The hallway light: switched on by motion (for five minutes, in a real home), and by the phone.</summary>
    public static async Task<int> LightAsync(string[] args)
    {
        using NetworkKey key = Home.Key();
        using PeerIdentity identity = PeerIdentity.Generate();
        await using PeerNode node = await Home.StartDeviceAsync(identity, key, "Hallway light", Home.RendezvousFromArgs(args));
        await AttachedAsync(node);
        Home.Say($"ready {node.PeerId}");
        var state = new LightState(false, 0, "start");
        var gate = new object();
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
                            LightRequest request = message.Deserialize<LightRequest>();
                            LightState now;
                            lock (gate)
                            {
                                state = request switch
                                {
                                    MotionDetected motion => new LightState(true, 80, $"motion in the {motion.Room}"),
                                    LightCommand { Action: "on" } on => new LightState(true, on.Brightness, "the phone"),
                                    LightCommand { Action: "off" } => new LightState(false, 0, "the phone"),
                                    _ => state,
                                };
                                now = state;
                            }

                            await session.SendAsync(now);
                            if (request is not LightCommand { Action: "status" })
                            {
                                Home.Say($"light is {(now.On ? $"on at {now.Brightness}%" : "off")} ({now.Reason}; {session.Path.Kind})");
                            }
                        }
                    }
                    catch (PeerLinkException)
                    {
                    }
                });
            }
        });
        await foreach (string _ in Home.CommandsAsync(CancellationToken.None))
        {
        }

        return 0;
    }

    /// <summary>The motion sensor: finds the light over mDNS alone and tells it of each motion; reports the time to light.</summary>
    public static async Task<int> SensorAsync()
    {
        using NetworkKey key = Home.Key();
        using PeerIdentity identity = PeerIdentity.Generate();
        await using PeerNode node = await Home.StartDeviceAsync(identity, key, instanceName: null, rendezvous: null);
        Home.Say($"ready {node.PeerId}");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var clock = Stopwatch.StartNew();
        var light = await Home.FindAsync(node, "Hallway light", timeout.Token);
        Home.Say($"found the hallway light over mDNS in {clock.ElapsedMilliseconds} ms at {light.EndPoints[0]}");
        SecureSession session = await node.ConnectAsync(light.PeerId, timeout.Token);
        await foreach (string command in Home.CommandsAsync(CancellationToken.None))
        {
            if (command == "motion")
            {
                long start = Stopwatch.GetTimestamp();
                await session.SendAsync<LightRequest>(new MotionDetected("hallway", DateTimeOffset.UtcNow));
                LightState state = (await session.ReceiveAsync())!.Value.Deserialize<LightState>();
                double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                Home.Say(string.Create(CultureInfo.InvariantCulture, $"motion -> light {(state.On ? "on" : "off")} in {ms:F2} ms"));
            }
        }

        await session.CloseAsync();
        return 0;
    }

    /// <summary>The air conditioner: does what the thermostat says.</summary>
    public static async Task<int> AirConditionerAsync()
    {
        using NetworkKey key = Home.Key();
        using PeerIdentity identity = PeerIdentity.Generate();
        await using PeerNode node = await Home.StartDeviceAsync(identity, key, "Living room AC", rendezvous: null);
        Home.Say($"ready {node.PeerId}");
        _ = Task.Run(async () =>
        {
            await foreach (SecureSession session in node.AcceptAllAsync())
            {
                try
                {
                    while (await session.ReceiveAsync() is { } message)
                    {
                        AcCommand command = message.Deserialize<AcCommand>();
                        Home.Say(string.Create(CultureInfo.InvariantCulture, $"air conditioner: {command.Mode}{(command.Mode == "off" ? "" : $" to {command.TargetCelsius:F1} °C")}"));
                        await session.SendAsync(new ClimateState(command.Mode, command.TargetCelsius, double.NaN));
                    }
                }
                catch (PeerLinkException)
                {
                }
            }
        });
        await foreach (string _ in Home.CommandsAsync(CancellationToken.None))
        {
        }

        return 0;
    }

    /// <summary>
    /// The thermostat: finds the air conditioner over mDNS and drives it from the temperature the scene feeds it
    /// ("temperature 27.5"); answers the phone's status queries through the rendezvous node.
    /// </summary>
    public static async Task<int> ThermostatAsync(string[] args)
    {
        const double Target = 22.0;
        using NetworkKey key = Home.Key();
        using PeerIdentity identity = PeerIdentity.Generate();
        await using PeerNode node = await Home.StartDeviceAsync(identity, key, "Thermostat", Home.RendezvousFromArgs(args));
        await AttachedAsync(node);
        Home.Say($"ready {node.PeerId}");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var ac = await Home.FindAsync(node, "Living room AC", timeout.Token);
        Home.Say($"found the air conditioner over mDNS at {ac.EndPoints[0]}");
        SecureSession toAc = await node.ConnectAsync(ac.PeerId, timeout.Token);
        var climate = new ClimateState("off", Target, double.NaN);
        _ = Task.Run(async () =>
        {
            await foreach (SecureSession phone in node.AcceptAllAsync())
            {
                try
                {
                    while (await phone.ReceiveAsync() is { } message)
                    {
                        _ = message.Deserialize<ClimateQuery>();
                        await phone.SendAsync(Volatile.Read(ref climate));
                    }
                }
                catch (PeerLinkException)
                {
                }
            }
        });

        await foreach (string command in Home.CommandsAsync(CancellationToken.None))
        {
            if (command.StartsWith("temperature ", StringComparison.Ordinal))
            {
                double measured = double.Parse(command["temperature ".Length..], CultureInfo.InvariantCulture);
                string mode = measured > Target + 0.5 ? "cool" : measured < Target - 0.5 ? "heat" : "off";
                await toAc.SendAsync(new AcCommand(mode, Target));
                ClimateState answer = (await toAc.ReceiveAsync())!.Value.Deserialize<ClimateState>();
                Volatile.Write(ref climate, answer with { MeasuredCelsius = measured });
                Home.Say(string.Create(CultureInfo.InvariantCulture, $"thermostat: {measured:F1} °C measured, air conditioner confirmed {answer.Mode}"));
            }
        }

        await toAc.CloseAsync();
        return 0;
    }

    /// <summary>
    /// The phone, away from home: no mDNS, only the rendezvous node. It reaches the light and the thermostat by PeerId,
    /// first relayed, then on a direct path when the NATs allow (here: loopback).
    /// </summary>
    public static async Task<int> PhoneAsync(string[] args)
    {
        using NetworkKey key = Home.Key();
        using PeerIdentity identity = PeerIdentity.Generate();
        await using PeerNode node = await Home.StartDeviceAsync(identity, key, instanceName: null, Home.RendezvousFromArgs(args), lan: false);
        await AttachedAsync(node);
        PeerId lightId = PeerId.Parse(args[2]);
        PeerId thermostatId = PeerId.Parse(args[3]);
        Home.Say($"ready {node.PeerId}");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var clock = Stopwatch.StartNew();
        SecureSession light = await node.ConnectAsync(lightId, timeout.Token);
        Home.Say($"phone: reached the light by PeerId in {clock.ElapsedMilliseconds} ms, {light.Path.Description}");
        light.PathChanged += (_, path) => Home.Say($"phone: light path now {path.Kind}");
        SecureSession thermostat = await node.ConnectAsync(thermostatId, timeout.Token);

        await foreach (string command in Home.CommandsAsync(CancellationToken.None))
        {
            switch (command)
            {
                case "status":
                    await light.SendAsync<LightRequest>(new LightCommand("status"));
                    LightState state = (await light.ReceiveAsync())!.Value.Deserialize<LightState>();
                    await thermostat.SendAsync(new ClimateQuery("status"));
                    ClimateState climate = (await thermostat.ReceiveAsync())!.Value.Deserialize<ClimateState>();
                    Home.Say(string.Create(CultureInfo.InvariantCulture, $"phone: light {(state.On ? $"on at {state.Brightness}%" : "off")}; {climate.MeasuredCelsius:F1} °C at home, air conditioner {climate.Mode}"));
                    break;
                case "light off":
                    await light.SendAsync<LightRequest>(new LightCommand("off"));
                    _ = (await light.ReceiveAsync())!.Value.Deserialize<LightState>();
                    break;
            }
        }

        await light.CloseAsync();
        await thermostat.CloseAsync();
        return 0;
    }

    private static async Task AttachedAsync(PeerNode node)
    {
        if (node.GetComponent<RendezvousClient>() is { } client)
        {
            await client.WaitForAttachmentAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
    }
}
