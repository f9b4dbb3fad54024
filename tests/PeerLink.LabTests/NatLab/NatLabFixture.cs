using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// One NAT laboratory (eng/natlab.sh): six network namespaces with real Linux NAT between them, under a prefix of its
/// own so that labs never collide. Disposing kills its processes and deletes its namespaces.
/// </summary>
internal sealed class NatLabFixture : IAsyncDisposable
{
    private static int s_counter;
    private readonly List<Process> _background = [];

    private NatLabFixture(string prefix) => Prefix = prefix;

    public string Prefix { get; }

    /// <summary>Why the laboratory cannot run here, or null when it can.</summary>
    public static string? UnavailableReason { get; } = FindUnavailableReason();

    /// <summary>Builds a lab; <paramref name="knobs"/> are natlab.sh's environment settings (NATLAB_UDP_TIMEOUT, …).</summary>
    public static async Task<NatLabFixture> UpAsync(string natA, string natB, IReadOnlyDictionary<string, string>? knobs = null)
    {
        var lab = new NatLabFixture($"pl{Environment.ProcessId % 100000}x{Interlocked.Increment(ref s_counter)}-");
        Dictionary<string, string> environment = lab.LabEnvironment;
        foreach ((string key, string value) in knobs ?? new Dictionary<string, string>())
        {
            environment[key] = value;
        }

        (int exit, _, string error) = await RunAsync("bash", [Script, "up", natA, natB], environment);
        if (exit != 0)
        {
            await lab.DisposeAsync();
            throw new InvalidOperationException($"natlab.sh up {natA} {natB} failed: {error}");
        }

        return lab;
    }

    /// <summary>Runs this test assembly's <see cref="LabHelper"/> in a host of the lab and returns its output.</summary>
    public Task<(int Exit, string Output, string Error)> RunHelperAsync(string host, params string[] args) =>
        RunAsync("ip", ["netns", "exec", Prefix + host, DotnetHost, HelperAssembly, .. args], LabEnvironment);

    /// <summary>Starts the helper in a host and waits for its first line ("ready …").</summary>
    public async Task<string> StartHelperAsync(string host, params string[] args)
    {
        var process = Process.Start(Start("ip", ["netns", "exec", Prefix + host, DotnetHost, HelperAssembly, .. args], LabEnvironment, redirectInput: true))!;
        _background.Add(process);
        string? line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
        if (line is null || !line.StartsWith("ready", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"The helper in {host} did not start: {line} {await process.StandardError.ReadToEndAsync()}");
        }

        return line;
    }

    /// <summary>Starts the helper in a host for a conversation over its standard input and output; waits for "ready".</summary>
    public async Task<LabConversation> StartConversationAsync(string host, params string[] args)
    {
        var process = Process.Start(Start("ip", ["netns", "exec", Prefix + host, DotnetHost, HelperAssembly, .. args], LabEnvironment, redirectInput: true))!;
        _background.Add(process);
        var conversation = new LabConversation(process);
        string line = await conversation.ReadLineAsync();
        if (!line.StartsWith("ready", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"The helper in {host} did not start: {line} {await process.StandardError.ReadToEndAsync()}");
        }

        conversation.Ready = line;
        return conversation;
    }

    /// <summary>Starts a .NET program (a sample) in a host for a conversation over its standard input and output.</summary>
    public LabConversation StartProgram(string host, string assembly, params string[] args)
    {
        if (!File.Exists(assembly))
        {
            throw new FileNotFoundException($"{assembly} is not built (dotnet build PeerLink.sln -c Release builds the samples).", assembly);
        }

        var process = Process.Start(Start("ip", ["netns", "exec", Prefix + host, DotnetHost, assembly, .. args], LabEnvironment, redirectInput: true))!;
        _background.Add(process);
        return new LabConversation(process);
    }

    /// <summary>Starts a program that is not .NET (nats-server, …) inside a host of the lab, its standard error merged into its standard output.</summary>
    public LabConversation StartCommand(string host, string commandLine)
    {
        var process = Process.Start(Start("ip", ["netns", "exec", Prefix + host, "sh", "-c", "exec " + commandLine + " 2>&1"], LabEnvironment, redirectInput: true))!;
        _background.Add(process);
        return new LabConversation(process);
    }

    /// <summary>A sample's built assembly in this checkout, in the configuration these tests were built in.</summary>
    public static string SampleAssembly(string name)
    {
        // tests/PeerLink.LabTests/bin/<configuration>/net10.0/ → samples/<name>/bin/<configuration>/net10.0/<name>.dll
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string framework = output.Name;
        string configuration = output.Parent!.Name;
        string root = output.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        return Path.Combine(root, "samples", name, "bin", configuration, framework, name + ".dll");
    }

    /// <summary>Runs a .NET program (the peerlink tool, a sample) in a host to its end.</summary>
    public Task<(int Exit, string Output, string Error)> RunProgramAsync(string host, string assembly, params string[] args) =>
        RunAsync("ip", ["netns", "exec", Prefix + host, DotnetHost, assembly, .. args], LabEnvironment);

    /// <summary>The peerlink tool of this checkout, in the configuration these tests were built in.</summary>
    public static string ToolAssembly
    {
        get
        {
            var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            string root = output.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
            return Path.Combine(root, "src", "PeerLink.Cli", "bin", output.Parent!.Name, output.Name, "PeerLink.Cli.dll");
        }
    }

    /// <summary>Runs a command inside a host of the lab (natlab.sh exec), for example an nft rule on a router.</summary>
    public Task<(int Exit, string Output, string Error)> ExecAsync(string host, params string[] command) =>
        RunAsync("bash", [Script, "exec", host, .. command], LabEnvironment);

    public async ValueTask DisposeAsync()
    {
        foreach (Process process in _background)
        {
            try
            {
                process.StandardInput.Close();   // the helper's signal to stop cleanly
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception e) when (e is TimeoutException or InvalidOperationException or IOException)
            {
                process.Kill(entireProcessTree: true);
            }

            process.Dispose();
        }

        await RunAsync("bash", [Script, "down"], LabEnvironment);
    }

    /// <summary>The lab's namespaces that exist now (empty after disposal).</summary>
    public string[] ExistingNamespaces() =>
        Directory.Exists("/run/netns")
            ? Directory.GetFiles("/run/netns").Select(f => Path.GetFileName(f)).Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)).ToArray()
            : [];

    private Dictionary<string, string> LabEnvironment => new(HelperEnvironment) { ["NATLAB_PREFIX"] = Prefix };

    /// <summary>Environment variables for the helpers this lab starts from now on (PEERLINK_LAB_PUNCH, …).</summary>
    public Dictionary<string, string> HelperEnvironment { get; } = [];

    private static string Script => Path.Combine(AppContext.BaseDirectory, "natlab.sh");

    private static string HelperAssembly => LabProcess.HelperAssembly;

    private static string DotnetHost => LabProcess.DotnetHost;

    private static Task<(int Exit, string Output, string Error)> RunAsync(string file, string[] args, Dictionary<string, string> environment) => LabProcess.RunAsync(file, args, environment);

    private static ProcessStartInfo Start(string file, string[] args, Dictionary<string, string> environment, bool redirectInput) => LabProcess.Start(file, args, environment, redirectInput);

    private static string? FindUnavailableReason()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "The NAT laboratory needs Linux network namespaces.";
        }

        if (Environment.UserName != "root" && Geteuid() != 0)
        {
            return "The NAT laboratory needs root (network namespaces and nftables need CAP_NET_ADMIN); CI runs as root.";
        }

        foreach (string tool in new[] { "ip", "nft" })
        {
            if (!new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" }.Any(d => File.Exists(Path.Combine(d, tool))))
            {
                return $"The NAT laboratory needs '{tool}'; eng/install-test-prerequisites.sh installs it (run as root).";
            }
        }

        return null;
    }

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint Geteuid();
}

/// <summary>A helper process spoken to line by line.</summary>
internal sealed class LabConversation(Process process)
{
    public string Ready { get; set; } = "";

    public async Task<string> ReadLineAsync(TimeSpan? timeout = null) =>
        await process.StandardOutput.ReadLineAsync().WaitAsync(timeout ?? TimeSpan.FromSeconds(60)) ?? throw new InvalidOperationException("The helper ended: " + await process.StandardError.ReadToEndAsync());

    public async Task<string> AskAsync(string command, TimeSpan? timeout = null)
    {
        await process.StandardInput.WriteLineAsync(command);
        await process.StandardInput.FlushAsync();
        return await ReadLineAsync(timeout);
    }

    public Task SayAsync(string line) => process.StandardInput.WriteLineAsync(line).ContinueWith(_ => process.StandardInput.FlushAsync(), TaskScheduler.Default).Unwrap();

    /// <summary>Ends the process at once, as a crash or a power cut would (its sockets are closed by the kernel).</summary>
    public void Kill() => process.Kill(entireProcessTree: true);

    /// <summary>Stops the helper cleanly (end of its input) and waits for it.</summary>
    public async Task StopAsync()
    {
        process.StandardInput.Close();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20));
    }
}

/// <summary>Runs processes for the laboratories: this assembly's <see cref="LabHelper"/> and the lab scripts.</summary>
internal static class LabProcess
{
    public static string HelperAssembly => typeof(LabHelper).Assembly.Location;

    public static string DotnetHost
    {
        get
        {
            string candidate = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", "dotnet"));
            return File.Exists(candidate) ? candidate : "dotnet";
        }
    }

    public static async Task<(int Exit, string Output, string Error)> RunAsync(string file, string[] args, Dictionary<string, string> environment)
    {
        using var process = Process.Start(Start(file, args, environment, redirectInput: false))!;
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output, await error);
    }

    public static ProcessStartInfo Start(string file, string[] args, Dictionary<string, string> environment, bool redirectInput)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = redirectInput, UseShellExecute = false };
        foreach (string arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach ((string key, string value) in environment)
        {
            info.Environment[key] = value;
        }

        return info;
    }
}

/// <summary>A theory that needs the NAT laboratory: skipped, with the reason, where it cannot run.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class NatLabFactAttribute : FactAttribute
{
    public NatLabFactAttribute()
    {
        if (NatLabFixture.UnavailableReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A laboratory theory: skipped with the reason where the NAT laboratory cannot run.</summary>
public sealed class NatLabTheoryAttribute : TheoryAttribute
{
    public NatLabTheoryAttribute()
    {
        if (NatLabFixture.UnavailableReason is { } reason)
        {
            Skip = reason;
        }
    }
}
