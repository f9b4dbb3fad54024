using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.LabTests.Stun;

/// <summary>
/// Interoperability with coturn on loopback: our client against coturn's server (anonymous, and long-term credentials
/// with its 401 challenge), and coturn's client (turnutils_stunclient, in its RFC 5780 mode) against our server.
/// </summary>
public sealed partial class StunInteropTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    [CoturnFact]
    public async Task OurClientGetsItsAddressFromCoturn()
    {
        await using var coturn = await Coturn.StartAsync();
        using Socket socket = BoundUdp();

        StunBindingResult result = await StunClient.BindingAsync(socket, coturn.EndPoint).WaitAsync(Limit);

        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
        Assert.Contains("Coturn", result.ServerSoftware, StringComparison.OrdinalIgnoreCase);
    }

    [CoturnFact]
    public async Task OurClientGetsItsAddressFromCoturnOverTcp()
    {
        await using var coturn = await Coturn.StartAsync();
        using Socket socket = await TestSockets.ConnectTcpAsync(coturn.EndPoint, Limit);

        StunBindingResult result = await StunClient.BindingAsync(socket, coturn.EndPoint).WaitAsync(Limit);

        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
    }

    [CoturnFact]
    public async Task OurClientAnswersCoturnsLongTermChallenge()
    {
        await using var coturn = await Coturn.StartAsync("--secure-stun", "--lt-cred-mech", "--user", "device:s3cret", "--realm", "peerlink.test");
        using Socket socket = BoundUdp();

        var anonymous = await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(socket, coturn.EndPoint).WaitAsync(Limit));
        var wrong = await Assert.ThrowsAsync<PeerLinkException>(() =>
            StunClient.BindingAsync(socket, coturn.EndPoint, new StunClientOptions { Username = "device", Password = "guess", UseLongTermCredentials = true }).WaitAsync(Limit));
        StunBindingResult result = await StunClient.BindingAsync(socket, coturn.EndPoint, new StunClientOptions { Username = "device", Password = "s3cret", UseLongTermCredentials = true }).WaitAsync(Limit);

        Assert.Contains("401", anonymous.Message, StringComparison.Ordinal);
        Assert.Equal(PeerLinkError.StunError, wrong.Error);
        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
    }

    [CoturnFact]
    public async Task TurnutilsStunclientGetsCorrectRfc5780AnswersFromOurServer()
    {
        await using StunServer server = await StunServer.StartAsync(new StunServerOptions
        {
            PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            AlternateAddress = IPAddress.Parse("127.0.0.2"),
            AlternatePort = 0,
        });
        IReadOnlyList<IPEndPoint> endpoints = server.LocalEndPoints;

        (int exit, string output) = await RunAsync("turnutils_stunclient", "-f", "-p", endpoints[0].Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "127.0.0.1");

        Assert.Equal(0, exit);
        string[] blocks = output.Split("RFC 5780 response", StringSplitOptions.RemoveEmptyEntries).Skip(1).ToArray();
        Assert.Equal(3, blocks.Length);
        Assert.Contains($"Response origin: : {endpoints[0]}", blocks[0], StringComparison.Ordinal);
        Assert.Contains($"Other addr: : {endpoints[3]}", blocks[0], StringComparison.Ordinal);
        Assert.Contains($"Response origin: : {endpoints[3]}", blocks[1], StringComparison.Ordinal);   // CHANGE-REQUEST honoured
        foreach (string block in blocks)
        {
            Match reflexive = ReflexiveAddress().Match(block);
            Assert.True(reflexive.Success, block);
            Assert.Equal("127.0.0.1", reflexive.Groups[1].Value);
        }
    }

    [GeneratedRegex(@"UDP reflexive addr: ([0-9.]+):(\d+)")]
    private static partial Regex ReflexiveAddress();

    private static Socket BoundUdp()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return socket;
    }

    private static async Task<(int Exit, string Output)> RunAsync(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(info)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(Limit);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish: {await output}");
        }

        return (process.ExitCode, await output + await error);
    }

    /// <summary>A coturn STUN server on a free loopback port, stopped on dispose.</summary>
    private sealed class Coturn : IAsyncDisposable
    {
        private readonly Process _process;

        private Coturn(Process process, IPEndPoint endPoint)
        {
            _process = process;
            EndPoint = endPoint;
        }

        public IPEndPoint EndPoint { get; }

        public static async Task<Coturn> StartAsync(params string[] extra)
        {
            int port = FreePortPair();
            var info = new ProcessStartInfo("turnserver") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string arg in new[] { "-v", "-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls", "--listening-ip", "127.0.0.1", "--listening-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--log-file", "stdout", "--simple-log" }.Concat(extra))
            {
                info.ArgumentList.Add(arg);
            }

            Process process = Process.Start(info)!;
            _ = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(Limit);
            try
            {
                while (await process.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
                {
                    if (line.Contains("UDP listener opened on", StringComparison.Ordinal))
                    {
                        _ = process.StandardOutput.ReadToEndAsync();   // keep draining its log
                        return new Coturn(process, new IPEndPoint(IPAddress.Loopback, port));
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }

            process.Kill(entireProcessTree: true);
            process.Dispose();
            throw new InvalidOperationException("turnserver did not open its UDP listener.");
        }

        public async ValueTask DisposeAsync()
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(Limit);
            _process.Dispose();
        }

        /// <summary>A loopback port free for UDP and TCP, with the next one free too (coturn also binds port + 1).</summary>
        private static int FreePortPair()
        {
            for (int attempt = 0; attempt < 50; attempt++)
            {
                using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                int port = ((IPEndPoint)probe.LocalEndPoint!).Port;
                if (port < 65535 && IsFree(port, SocketType.Stream) && IsFree(port + 1, SocketType.Dgram) && IsFree(port + 1, SocketType.Stream))
                {
                    return port;
                }
            }

            throw new InvalidOperationException("No free loopback port pair found.");
        }

        private static bool IsFree(int port, SocketType type)
        {
            try
            {
                using var socket = new Socket(AddressFamily.InterNetwork, type, type == SocketType.Dgram ? ProtocolType.Udp : ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }
    }
}

/// <summary>A test that needs coturn's binaries: skipped, with the reason, where they are not installed.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class CoturnFactAttribute : FactAttribute
{
    public CoturnFactAttribute()
    {
        string[] paths = (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':');
        foreach (string tool in new[] { "turnserver", "turnutils_stunclient" })
        {
            if (!paths.Any(p => File.Exists(Path.Combine(p, tool))))
            {
                Skip = $"'{tool}' (Debian package coturn) is not installed; eng/install-test-prerequisites.sh installs it when run as root.";
                return;
            }
        }
    }
}
