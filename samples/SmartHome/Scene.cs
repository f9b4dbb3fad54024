using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading.Channels;
using System.Threading.Tasks;

namespace PeerLink.Samples.SmartHome;

/// <summary>Starts every device as its own process, prompts them through the story, and prints what each one says.</summary>
internal static class Scene
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);
    private static readonly Stopwatch Clock = Stopwatch.StartNew();

    public static async Task<int> RunAsync()
    {
        string homeKey = Convert.ToBase64String(RandomNumberGenerator.GetBytes(NetworkKey.Size));
        var devices = new List<Device>();
        try
        {
            Narrate("the home's rendezvous node starts (it relays for the phone when the phone is away)");
            Device rendezvous = Device.Start("rendezvous", homeKey, devices);
            string[] node = (await rendezvous.ReadyAsync()).Split(' ');
            (string nodeEndPoint, string nodeId) = (node[1], node[2]);

            Narrate("the devices start, each with its own identity; nothing is configured but the home's network key");
            Device light = Device.Start("light", homeKey, devices, nodeEndPoint, nodeId);
            Device ac = Device.Start("ac", homeKey, devices);
            string lightId = (await light.ReadyAsync()).Split(' ')[1];
            await ac.ReadyAsync();
            Device thermostat = Device.Start("thermostat", homeKey, devices, nodeEndPoint, nodeId);
            Device sensor = Device.Start("sensor", homeKey, devices);
            string thermostatId = (await thermostat.ReadyAsync()).Split(' ')[1];
            await sensor.ReadyAsync();
            await sensor.WaitForAsync("found the hallway light");
            await thermostat.WaitForAsync("found the air conditioner");

            Narrate("someone walks down the hallway, five times");
            var times = new List<double>();
            for (int i = 0; i < 5; i++)
            {
                sensor.Say("motion");
                string line = await sensor.WaitForAsync("motion -> light on in ");
                times.Add(double.Parse(line.Split(' ')[5], CultureInfo.InvariantCulture));
            }

            Narrate("the afternoon warms up the living room");
            thermostat.Say("temperature 27.5");
            await thermostat.WaitForAsync("air conditioner confirmed cool");

            Narrate("the owner's phone, away from home, checks in through the rendezvous node");
            Device phone = Device.Start("phone", homeKey, devices, nodeEndPoint, nodeId, lightId, thermostatId);
            await phone.ReadyAsync();
            await phone.WaitForAsync("phone: reached the light");
            phone.Say("status");
            await phone.WaitForAsync("phone: light ");
            phone.Say("light off");
            await light.WaitForAsync("light is off (the phone");
            phone.Say("status");
            await phone.WaitForAsync("phone: light off");

            double first = times[0];
            times.Sort();
            Narrate(string.Create(CultureInfo.InvariantCulture,
                $"motion to light: median {times[times.Count / 2]:F2} ms over {times.Count} events (the first, with the processes still warming up, {first:F2} ms); sensor and light in separate processes, found over mDNS, on a Noise session; no server, no internet"));
            return 0;
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException)
        {
            Console.Error.WriteLine($"scene: {e.Message}");
            return 1;
        }
        finally
        {
            for (int i = devices.Count - 1; i >= 0; i--)
            {
                await devices[i].StopAsync();
            }

            Narrate("every device stopped");
        }
    }

    private static void Narrate(string text) => Console.WriteLine($"{Clock.Elapsed.TotalSeconds,6:F2} s  * {text}");

    /// <summary>One device process: its output printed with its name, its lines kept for the scene to wait on.</summary>
    private sealed class Device
    {
        private readonly Process _process;
        private readonly string _name;
        private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();

        private Device(Process process, string name)
        {
            _process = process;
            _name = name;
            _ = Task.Run(async () =>
            {
                while (await process.StandardOutput.ReadLineAsync() is { } line)
                {
                    if (!line.StartsWith("ready", StringComparison.Ordinal))
                    {
                        Console.WriteLine($"{Clock.Elapsed.TotalSeconds,6:F2} s  {_name,-10} {line}");
                    }

                    _lines.Writer.TryWrite(line);
                }

                _lines.Writer.TryComplete();
            });
            _ = Task.Run(async () =>
            {
                while (await process.StandardError.ReadLineAsync() is { } line)
                {
                    Console.Error.WriteLine($"{_name}: {line}");
                }
            });
        }

        public static Device Start(string role, string homeKey, List<Device> all, params string[] args)
        {
            // This program again, in another process: the apphost or NativeAOT binary directly, or through dotnet.
            string self = Environment.ProcessPath!;
            var info = Path.GetFileNameWithoutExtension(self) == "dotnet"
                ? new ProcessStartInfo(self) { ArgumentList = { Path.Combine(AppContext.BaseDirectory, "SmartHome.dll") } }
                : new ProcessStartInfo(self);
            info.ArgumentList.Add(role);
            foreach (string arg in args)
            {
                info.ArgumentList.Add(arg);
            }

            info.RedirectStandardInput = true;
            info.RedirectStandardOutput = true;
            info.RedirectStandardError = true;
            info.UseShellExecute = false;
            info.Environment["SMARTHOME_KEY"] = homeKey;
            var device = new Device(Process.Start(info)!, role);
            all.Add(device);
            return device;
        }

        public Task<string> ReadyAsync() => WaitForAsync("ready");

        public async Task<string> WaitForAsync(string start)
        {
            try
            {
                while (await _lines.Reader.ReadAsync().AsTask().WaitAsync(Limit) is { } line)
                {
                    if (line.StartsWith(start, StringComparison.Ordinal) || line.Contains(start, StringComparison.Ordinal))
                    {
                        return line;
                    }
                }
            }
            catch (ChannelClosedException)
            {
            }

            throw new InvalidOperationException($"the {_name} ended before saying \"{start}\"");
        }

        public void Say(string line)
        {
            _process.StandardInput.WriteLine(line);
            _process.StandardInput.Flush();
        }

        public async Task StopAsync()
        {
            try
            {
                _process.StandardInput.Close();   // the device's signal to stop
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15));
            }
            catch (Exception e) when (e is TimeoutException or IOException or InvalidOperationException)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
    }
}
