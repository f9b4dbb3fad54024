using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using PeerLink.FunctionalTests.Cli;
using Xunit;

namespace PeerLink.FunctionalTests.Diagnostics;

/// <summary>
/// dotnet-counters (a local tool: dotnet-tools.json, restored by eng/test.sh) attached to a running node shows
/// the "PeerLink" meter: the sessions and messages of <c>peerlink send</c> to a <c>peerlink listen</c>.
/// </summary>
public sealed class DotnetCountersTests : IDisposable
{
    private readonly DirectoryInfo _work = Directory.CreateTempSubdirectory("peerlink-counters-");

    [Fact]
    public async Task DotnetCountersShowsTheMeterOfARunningNode()
    {
        string root = Root();
        await using PeerLinkTool listener = PeerLinkTool.Start("listen", "--listen", "127.0.0.1:0", "-i", Path.Combine(_work.FullName, "light.key"));
        string[] listening = (await listener.WaitForLineAsync(l => l.StartsWith("listening: ", StringComparison.Ordinal))).Split(' ');

        string csv = Path.Combine(_work.FullName, "counters.csv");
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = root, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };   // its input stays open: "Q" would stop it
        foreach (string arg in new[] { "tool", "run", "dotnet-counters", "collect", "-p", listener.ProcessId.ToString(CultureInfo.InvariantCulture), "--counters", "PeerLink", "--refresh-interval", "1", "--format", "csv", "-o", csv, "--duration", "00:00:10" })
        {
            info.ArgumentList.Add(arg);
        }

        using Process counters = Process.Start(info)!;
        Task<string> errors = counters.StandardError.ReadToEndAsync();
        Task<string> output = counters.StandardOutput.ReadToEndAsync();   // it says when it starts only as it ends

        // The counter session attaches over the diagnostics port at some point after the process starts; measurements
        // made before it has are not seen. So a sensor keeps sending, one session and message at a time, until the
        // collection ends.
        int sent = 0;
        var took = new System.Collections.Generic.List<long>();
        while (!counters.HasExited)
        {
            var clock = Stopwatch.StartNew();
            Assert.True(sent < 1000, "dotnet-counters did not end");
            (int exit, _, string error) = await PeerLinkTool.RunAsync("send", listening[3], $"reading {sent}", "--peer", listening[1], "-i", Path.Combine(_work.FullName, "sensor.key"));
            Assert.True(exit == 0, error);
            took.Add(clock.ElapsedMilliseconds);
            sent++;
        }

        string[] rows = File.ReadAllLines(csv);
        string diagnosis = $"{sent} sent ({string.Join(", ", took)} ms); dotnet-counters exit {counters.ExitCode}: {await output} {await errors}; CSV: {string.Join(" | ", rows.Take(5))}";
        Assert.True(rows.Length > 1, diagnosis);
        double received = Sum(rows, "peerlink.messages.received");
        Assert.InRange(received, 1, sent);
        Assert.InRange(Sum(rows, "peerlink.session.opened"), 1, sent);
        Assert.InRange(Sum(rows, "peerlink.bytes.received"), received * "reading 0".Length, sent * $"reading {sent}".Length);
        Assert.Contains(rows, r => r.Contains("peerlink.handshake.duration", StringComparison.Ordinal) && r.Contains("peerlink.outcome=success", StringComparison.Ordinal));
        Assert.Equal(0, await listener.TerminateAsync());
    }

    public void Dispose() => _work.Delete(recursive: true);

    /// <summary>The increments of a counter over the whole collection (the CSV's last column, per interval).</summary>
    private static double Sum(string[] rows, string counter) => rows
        .Where(r => r.Split(',') is { Length: 5 } f && f[2].StartsWith(counter + " ", StringComparison.Ordinal))
        .Sum(r => double.Parse(r.Split(',')[4], CultureInfo.InvariantCulture));

    private static string Root()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "PeerLink.sln")))
        {
            directory = directory.Parent;
        }

        return directory!.FullName;
    }
}
