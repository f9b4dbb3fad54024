using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace PeerLink.Testing;

/// <summary>
/// A nats-server (Debian's package; eng/install-test-prerequisites.sh installs it) on random loopback ports, alone or
/// as a member of a cluster, for the rendezvous tier tests and benchmarks. Killed at dispose.
/// </summary>
public sealed class NatsTestServer : IAsyncDisposable
{
    private const string ClientMarker = "Listening for client connections on 127.0.0.1:";
    private const string RouteMarker = "Listening for route connections on 127.0.0.1:";

    private readonly Process _process;
    private readonly Lock _gate = new();
    private readonly List<(int Count, TaskCompletionSource Reached)> _routeWaiters = [];
    private int _routes;
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _log = new();

    private readonly string? _store;

    private NatsTestServer(Process process, string? store)
    {
        _process = process;
        _store = store;
    }

    /// <summary>The client URL.</summary>
    public string Url { get; private set; } = "";

    /// <summary>The URL other members of a cluster route to, when this one is in a cluster.</summary>
    public string? RouteUrl { get; private set; }

    /// <summary>The nats-server executable, or null when it is not installed.</summary>
    public static string? Executable { get; } = Find();

    /// <summary>
    /// Starts one server; with <paramref name="clusterName"/>, one that takes routes, soliciting <paramref name="routes"/>;
    /// with <paramref name="jetStream"/>, with JetStream on a store in a temporary directory (deleted at dispose).
    /// </summary>
    public static async Task<NatsTestServer> StartAsync(string? clusterName = null, string? routes = null, bool jetStream = false)
    {
        string executable = Executable ?? throw new InvalidOperationException("nats-server is not installed; eng/install-test-prerequisites.sh installs it (as root).");
        // Port -1: a random free port, which the server logs.
        var arguments = new List<string> { "-a", "127.0.0.1", "-p", "-1" };
        if (clusterName is not null)
        {
            arguments.AddRange(["--cluster_name", clusterName, "--cluster", "nats://127.0.0.1:-1"]);
            if (routes is not null)
            {
                arguments.AddRange(["--routes", routes]);
            }
        }

        string? store = jetStream ? Directory.CreateTempSubdirectory("peerlink-nats-").FullName : null;
        if (store is not null)
        {
            arguments.AddRange(["-js", "-sd", store]);
        }

        var start = new ProcessStartInfo(executable, arguments) { RedirectStandardError = true, RedirectStandardOutput = true };
        var server = new NatsTestServer(Process.Start(start)!, store);
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int started = 0;   // the log lines that say so, read on one thread
        server._process.ErrorDataReceived += (_, e) =>
        {
            string line = e.Data ?? "";
            server._log.Enqueue(line);
            if (Port(line, ClientMarker) is { } client)
            {
                server.Url = $"nats://127.0.0.1:{client}";
            }
            else if (Port(line, RouteMarker) is { } route)
            {
                server.RouteUrl = $"nats://127.0.0.1:{route}";
                started++;
            }
            else if (line.Contains("Server is ready", StringComparison.Ordinal))
            {
                started++;
            }
            else if (line.Contains("Route connection created", StringComparison.Ordinal))
            {
                server.OnRoute();
            }

            // Ready for clients, and for routes when clustered (2.9 logs the route port after "Server is ready").
            if (started == (clusterName is null ? 1 : 2))
            {
                ready.TrySetResult();
            }
        };
        server._process.OutputDataReceived += (_, _) => { };
        server._process.BeginErrorReadLine();
        server._process.BeginOutputReadLine();
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return server;
    }

    /// <summary>Three servers in one cluster, each routed to the other two.</summary>
    public static async Task<NatsTestServer[]> StartClusterAsync(int size = 3)
    {
        string name = "peerlink-test-" + Guid.NewGuid().ToString("N")[..8];
        var servers = new List<NatsTestServer>();
        try
        {
            servers.Add(await StartAsync(name));
            for (int i = 1; i < size; i++)
            {
                servers.Add(await StartAsync(name, servers[0].RouteUrl));
            }

            try
            {
                await Task.WhenAll(servers.Select(s => s.WaitForRoutesAsync(size - 1))).WaitAsync(TimeSpan.FromSeconds(30));
            }
            catch (TimeoutException)
            {
                throw new TimeoutException("The NATS cluster did not form: " + string.Join("; ", servers.Select(s => $"{s.Url} routes {s._routes}: {string.Join(" | ", s._log)}")));
            }
            return [.. servers];
        }
        catch
        {
            foreach (NatsTestServer server in servers)
            {
                await server.DisposeAsync();
            }

            throw;
        }
    }

    /// <summary>Completes once the server has made <paramref name="count"/> route connections.</summary>
    public Task WaitForRoutesAsync(int count)
    {
        lock (_gate)
        {
            if (_routes >= count)
            {
                return Task.CompletedTask;
            }

            var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _routeWaiters.Add((count, reached));
            return reached.Task;
        }
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
        if (_store is not null)
        {
            Directory.Delete(_store, recursive: true);
        }
    }

    private void OnRoute()
    {
        lock (_gate)
        {
            _routes++;
            foreach ((int count, TaskCompletionSource reached) in _routeWaiters.Where(w => w.Count <= _routes).ToList())
            {
                reached.TrySetResult();
                _routeWaiters.Remove((count, reached));
            }
        }
    }

    private static int? Port(string line, string marker)
    {
        int at = line.IndexOf(marker, StringComparison.Ordinal);
        return at >= 0 ? int.Parse(line[(at + marker.Length)..].Trim(), CultureInfo.InvariantCulture) : null;
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
