using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.LabTests.NatLab;
using Xunit;

namespace PeerLink.LabTests.MdnsLab;

/// <summary>
/// One mDNS laboratory (eng/mdnslab.sh): hosts h1..hN in network namespaces on one bridge, under a prefix of its own.
/// Disposing stops its processes (closing their input first, so that they say goodbye) and deletes the namespaces.
/// </summary>
internal sealed class MdnsLabFixture : IAsyncDisposable
{
    private static int s_counter;
    private readonly List<Process> _background = [];
    private readonly Dictionary<int, string> _buses = [];

    private MdnsLabFixture(string prefix) => Prefix = prefix;

    public string Prefix { get; }

    /// <summary>Why the lab cannot run here, or null.</summary>
    public static string? UnavailableReason { get; } = FindUnavailableReason(avahi: false);

    /// <summary>Why the Avahi interop tests cannot run here, or null.</summary>
    public static string? AvahiUnavailableReason { get; } = FindUnavailableReason(avahi: true);

    public static async Task<MdnsLabFixture> UpAsync(int hosts)
    {
        var lab = new MdnsLabFixture($"pm{Environment.ProcessId % 100000}x{Interlocked.Increment(ref s_counter)}-");
        (int exit, _, string error) = await LabProcess.RunAsync("bash", [Script, "up", hosts.ToString(System.Globalization.CultureInfo.InvariantCulture)], lab.LabEnvironment);
        if (exit != 0)
        {
            await lab.DisposeAsync();
            throw new InvalidOperationException($"mdnslab.sh up failed: {error}");
        }

        return lab;
    }

    /// <summary>Starts avahi-daemon (host name avahi-I) with its own D-Bus in host <paramref name="host"/>.</summary>
    public async Task StartAvahiAsync(int host)
    {
        (int exit, string output, string error) = await LabProcess.RunAsync("bash", [Script, "avahi", host.ToString(System.Globalization.CultureInfo.InvariantCulture)], LabEnvironment);
        Assert.True(exit == 0, $"avahi did not start: {error}");
        _buses[host] = output.Trim();
    }

    /// <summary>Runs an Avahi client (avahi-browse, avahi-publish…) in host <paramref name="host"/> against that host's daemon.</summary>
    public Task<(int Exit, string Output, string Error)> RunAvahiToolAsync(int host, params string[] args) =>
        LabProcess.RunAsync("ip", ["netns", "exec", Host(host), "env", "DBUS_SYSTEM_BUS_ADDRESS=" + _buses[host], .. args], LabEnvironment);

    /// <summary>Starts a long-running Avahi client and waits for a line of its output that contains <paramref name="readyText"/>.</summary>
    public async Task StartAvahiToolAsync(int host, string readyText, params string[] args)
    {
        ProcessStartInfo info = LabProcess.Start("ip", ["netns", "exec", Host(host), "env", "DBUS_SYSTEM_BUS_ADDRESS=" + _buses[host], .. args], LabEnvironment, redirectInput: true);
        info.RedirectStandardError = true;
        var process = Process.Start(info)!;
        _background.Add(process);
        Task<string?> errorLine = process.StandardError.ReadLineAsync();
        string? line = await errorLine.WaitAsync(TimeSpan.FromSeconds(20));   // avahi-publish reports on standard error
        Assert.True(line?.Contains(readyText, StringComparison.Ordinal) == true, $"{args[0]} said: {line}");
    }

    /// <summary>Runs this assembly's helper in a host until it exits.</summary>
    public Task<(int Exit, string Output, string Error)> RunHelperAsync(int host, params string[] args) =>
        LabProcess.RunAsync("ip", ["netns", "exec", Host(host), LabProcess.DotnetHost, LabProcess.HelperAssembly, .. args], LabEnvironment);

    /// <summary>Starts the helper in a host, waits for its "ready" line and returns the process with that line.</summary>
    public async Task<(Process Process, string Ready)> StartHelperAsync(int host, params string[] args)
    {
        var process = Process.Start(LabProcess.Start("ip", ["netns", "exec", Host(host), LabProcess.DotnetHost, LabProcess.HelperAssembly, .. args], LabEnvironment, redirectInput: true))!;
        _background.Add(process);
        string? line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
        if (line is null || !line.StartsWith("ready", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"The helper in h{host} did not start: {line} {await process.StandardError.ReadToEndAsync()}");
        }

        return (process, line);
    }

    /// <summary>Closes a helper's input (it says goodbye and exits) and waits for it.</summary>
    public static async Task StopAsync(Process process)
    {
        process.StandardInput.Close();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15));
    }

    public string Host(int i) => $"{Prefix}h{i}";

    public async ValueTask DisposeAsync()
    {
        foreach (Process process in _background)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.StandardInput.Close();
                    await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(5));
                }
            }
            catch (Exception e) when (e is TimeoutException or InvalidOperationException or IOException)
            {
                process.Kill(entireProcessTree: true);
            }

            process.Dispose();
        }

        await LabProcess.RunAsync("bash", [Script, "down"], LabEnvironment);
    }

    private Dictionary<string, string> LabEnvironment => new() { ["MDNSLAB_PREFIX"] = Prefix };

    private static string Script => Path.Combine(AppContext.BaseDirectory, "mdnslab.sh");

    private static string? FindUnavailableReason(bool avahi)
    {
        if (NatLabFixture.UnavailableReason is { } reason)
        {
            return reason.Replace("NAT laboratory", "mDNS laboratory", StringComparison.Ordinal);
        }

        if (avahi)
        {
            foreach (string tool in new[] { "avahi-daemon", "avahi-browse", "avahi-publish", "dbus-daemon" })
            {
                if (!new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" }.Any(d => File.Exists(Path.Combine(d, tool))))
                {
                    return $"The Avahi interop tests need '{tool}'; eng/install-test-prerequisites.sh installs it (run as root).";
                }
            }
        }

        return null;
    }
}

/// <summary>A fact that needs the mDNS laboratory (and Avahi, when <see cref="Avahi"/> is set); skipped with the reason elsewhere.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class MdnsLabFactAttribute : FactAttribute
{
    public MdnsLabFactAttribute(bool avahi = false)
    {
        if ((avahi ? MdnsLabFixture.AvahiUnavailableReason : MdnsLabFixture.UnavailableReason) is { } reason)
        {
            Skip = reason;
        }
    }
}
