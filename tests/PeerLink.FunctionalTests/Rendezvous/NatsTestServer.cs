using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading.Tasks;

namespace PeerLink.FunctionalTests.Rendezvous;

/// <summary>
/// A nats-server (Debian's package; eng/install-test-prerequisites.sh installs it) on a free loopback port, for the
/// rendezvous tier tests. Killed at dispose.
/// </summary>
internal sealed class NatsTestServer : IAsyncDisposable
{
    private readonly Process _process;

    private NatsTestServer(Process process, int port)
    {
        _process = process;
        Url = $"nats://127.0.0.1:{port}";
    }

    /// <summary>The client URL.</summary>
    public string Url { get; }

    /// <summary>The nats-server executable, or null when it is not installed.</summary>
    public static string? Executable { get; } = Find();

    public static async Task<NatsTestServer> StartAsync()
    {
        string executable = Executable ?? throw new InvalidOperationException("nats-server is not installed; eng/install-test-prerequisites.sh installs it (as root).");
        // -p -1: a random free port, which the server logs ("Listening for client connections on 127.0.0.1:PORT").
        var start = new ProcessStartInfo(executable, ["-a", "127.0.0.1", "-p", "-1"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        Process process = Process.Start(start)!;
        var port = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        int listening = 0;
        process.ErrorDataReceived += (_, e) =>
        {
            const string Marker = "Listening for client connections on 127.0.0.1:";
            int at = e.Data?.IndexOf(Marker, StringComparison.Ordinal) ?? -1;
            if (at >= 0)
            {
                listening = int.Parse(e.Data![(at + Marker.Length)..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
            else if (e.Data?.Contains("Server is ready", StringComparison.Ordinal) == true)
            {
                port.TrySetResult(listening);
            }
        };
        process.OutputDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        return new NatsTestServer(process, await port.Task.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }

    private static string? Find()
    {
        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Append("/usr/sbin"))
        {
            string candidate = Path.Combine(directory, "nats-server");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
