using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.FunctionalTests.Cli;

/// <summary>The peerlink tool of this checkout, run as a process the way a user or a script runs it.</summary>
internal sealed class PeerLinkTool : IAsyncDisposable
{
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly BlockingCollection<string> _lines = [];
    private readonly List<string> _all = [];
    private readonly Task _reading;

    private PeerLinkTool(Process process)
    {
        _process = process;
        _reading = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                lock (_all)
                {
                    _all.Add(line);
                }

                _lines.Add(line);
            }

            _lines.CompleteAdding();
        });
    }

    /// <summary>tests/PeerLink.FunctionalTests/bin/C/F/ → src/PeerLink.Cli/bin/C/F/PeerLink.Cli.dll</summary>
    public static string Assembly
    {
        get
        {
            var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            string root = output.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
            return Path.Combine(root, "src", "PeerLink.Cli", "bin", output.Parent!.Name, output.Name, "PeerLink.Cli.dll");
        }
    }

    public string Output
    {
        get
        {
            lock (_all)
            {
                return string.Join('\n', _all);
            }
        }
    }

    public string Error { get; private set; } = "";

    public int ProcessId => _process.Id;

    /// <summary>Runs a command to its end.</summary>
    public static async Task<(int Exit, string Output, string Error)> RunAsync(params string[] args)
    {
        using Process process = Process.Start(StartInfo(args))!;
        process.StandardInput.Close();
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(Limit);
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"peerlink {string.Join(' ', args)} did not end within {Limit.TotalSeconds} s: {await output} {await error}");
        }

        return (process.ExitCode, await output, await error);
    }

    /// <summary>Starts a long-running command (listen, a server); read its lines with <see cref="WaitForLineAsync"/>.</summary>
    public static PeerLinkTool Start(params string[] args) => new(Process.Start(StartInfo(args))!);

    /// <summary>The next line of output that matches, skipping the others.</summary>
    public Task<string> WaitForLineAsync(Func<string, bool> match) => Task.Run(() =>
    {
        foreach (string line in _lines.GetConsumingEnumerable())
        {
            if (match(line))
            {
                return line;
            }
        }

        throw new InvalidOperationException($"peerlink ended without the line awaited. Output: {Output} Error: {_process.StandardError.ReadToEnd()}");
    }).WaitAsync(Limit);

    /// <summary>SIGTERM, as a service manager stops it; returns the exit code.</summary>
    public async Task<int> TerminateAsync()
    {
        using (Process kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!)
        {
            await kill.WaitForExitAsync().WaitAsync(Limit);
        }

        await _process.WaitForExitAsync().WaitAsync(Limit);
        await _reading.WaitAsync(Limit);
        Error = await _process.StandardError.ReadToEndAsync();
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private static ProcessStartInfo StartInfo(string[] args)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Assembly);
        foreach (string arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        return info;
    }
}
