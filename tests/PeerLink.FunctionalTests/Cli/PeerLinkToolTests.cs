using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.FunctionalTests.Cli;

/// <summary>The peerlink tool as a process, on loopback: help, exit codes, one-line errors, and each command doing its job.</summary>
public sealed class PeerLinkToolTests : IDisposable
{
    private readonly DirectoryInfo _keys = Directory.CreateTempSubdirectory("peerlink-tool-");

    [Theory]
    [InlineData("")]
    [InlineData("id")]
    [InlineData("id new")]
    [InlineData("id show")]
    [InlineData("listen")]
    [InlineData("connect")]
    [InlineData("send")]
    [InlineData("bench")]
    [InlineData("discover")]
    [InlineData("stun")]
    [InlineData("netcheck")]
    [InlineData("rendezvous")]
    [InlineData("stun-server")]
    public async Task EveryCommandHasHelp(string command)
    {
        (int exit, string output, _) = await PeerLinkTool.RunAsync([.. command.Split(' ', StringSplitOptions.RemoveEmptyEntries), "--help"]);
        Assert.Equal(0, exit);
        Assert.Contains("Usage:", output, StringComparison.Ordinal);
        Assert.Contains("peerlink " + command, output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IdNewCreatesAnOwnerOnlyKeyThatIdShowReadsBackAndRefusesToOverwrite()
    {
        string file = Key("device.key");
        (int exit, string created, _) = await PeerLinkTool.RunAsync("id", "new", "--file", file);
        Assert.Equal(0, exit);
        string peerId = Field(created, "peer id:");
        Assert.True(PeerId.TryParse(peerId, out _), created);
        Assert.Contains("0600 (owner only)", created, StringComparison.Ordinal);

        (exit, string shown, _) = await PeerLinkTool.RunAsync("id", "show", "--file", file);
        Assert.Equal(0, exit);
        Assert.Equal(peerId, Field(shown, "peer id:"));

        (exit, _, string error) = await PeerLinkTool.RunAsync("id", "new", "--file", file);
        Assert.Equal(2, exit);
        Assert.Equal($"peerlink: {file} exists; --force replaces it.", error.Trim());
        (exit, string replaced, _) = await PeerLinkTool.RunAsync("id", "new", "--file", file, "--force");
        Assert.Equal(0, exit);
        Assert.NotEqual(peerId, Field(replaced, "peer id:"));
    }

    [Fact]
    public async Task FailuresAreOneLineWithAnExitCodeThatSaysWhich()
    {
        // Nothing listens on port 1: a network failure, exit code 1, the error's code in the line.
        (int exit, string output, string error) = await PeerLinkTool.RunAsync("send", "127.0.0.1:1", "hello", "-i", Key("a.key"));
        Assert.Equal(1, exit);
        Assert.Equal("", output);
        Assert.StartsWith("peerlink: ConnectionRefused: ", error, StringComparison.Ordinal);
        Assert.Single(error.Trim().Split('\n'));

        // A bad argument: exit code 2.
        (exit, _, error) = await PeerLinkTool.RunAsync("send", "not-an-endpoint", "hello", "-i", Key("a.key"));
        Assert.Equal(2, exit);
        Assert.Equal("peerlink: target: 'not-an-endpoint' is not ADDRESS:PORT with a port.", error.Trim());

        // A missing argument: the parser's error, non-zero.
        (exit, _, _) = await PeerLinkTool.RunAsync("send");
        Assert.NotEqual(0, exit);
    }

    [Fact]
    public async Task ListenPrintsWhatSendSendsEchoesRequestsAndCountsABenchmark()
    {
        await using PeerLinkTool listener = PeerLinkTool.Start("listen", "--listen", "127.0.0.1:0", "-i", Key("light.key"));
        string listening = await listener.WaitForLineAsync(l => l.StartsWith("listening: ", StringComparison.Ordinal));
        string[] words = listening.Split(' ');
        (string peerId, string endPoint) = (words[1], words[3]);

        (int exit, _, string error) = await PeerLinkTool.RunAsync("send", endPoint, "switch on", "--peer", peerId, "-i", Key("switch.key"));
        Assert.True(exit == 0, error);
        await listener.WaitForLineAsync(l => l.EndsWith(": switch on", StringComparison.Ordinal));

        (exit, string echoed, error) = await PeerLinkTool.RunAsync("send", endPoint, "ping 42", "--request", "--peer", peerId, "-i", Key("switch.key"));
        Assert.True(exit == 0, error);
        Assert.Equal("ping 42", echoed.Trim());

        // The wrong PeerId for that endpoint: IK fails, and says so.
        using (PeerIdentity other = PeerIdentity.Generate())
        {
            (exit, _, error) = await PeerLinkTool.RunAsync("send", endPoint, "x", "--peer", other.PeerId.ToString(), "-i", Key("switch.key"));
            Assert.Equal(1, exit);
            Assert.StartsWith("peerlink: ", error, StringComparison.Ordinal);
        }

        (exit, string bench, error) = await PeerLinkTool.RunAsync("bench", endPoint, "--peer", peerId, "--duration", "0.5", "--round-trips", "50", "-i", Key("switch.key"));
        Assert.True(exit == 0, error);
        Assert.Contains("MB/s", bench, StringComparison.Ordinal);
        Assert.Contains("round trip (64 B), median", bench, StringComparison.Ordinal);
        await listener.WaitForLineAsync(l => l.Contains("(bench: ", StringComparison.Ordinal));

        Assert.Equal(0, await listener.TerminateAsync());
        Assert.EndsWith("stopped", listener.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StunAndNetcheckReportWhatTheStunServerCommandAnswers()
    {
        await using PeerLinkTool server = PeerLinkTool.Start("stun-server", "--listen", "127.0.0.1:0", "--alternate", "127.0.0.2:0");
        string ready = await server.WaitForLineAsync(l => l.StartsWith("stun-server: ", StringComparison.Ordinal));
        string primary = ready.Split(' ')[1].TrimEnd(',');

        (int exit, string stun, string error) = await PeerLinkTool.RunAsync("stun", primary, "--tcp");
        Assert.True(exit == 0, error);
        Assert.Matches($@"^udp {primary.Replace(".", "\\.")}: 127\.0\.0\.1:\d+ \(", stun.Split('\n')[0]);
        Assert.StartsWith($"tcp {primary}: 127.0.0.1:", stun.Split('\n')[1], StringComparison.Ordinal);

        (exit, string report, error) = await PeerLinkTool.RunAsync("netcheck", "--stun", primary, "--json");
        Assert.True(exit == 0, error);
        using JsonDocument json = JsonDocument.Parse(report);
        JsonElement root = json.RootElement;
        Assert.True(root.GetProperty("ipv4").GetBoolean());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("ipv6").ValueKind);
        Assert.False(root.GetProperty("mappingVariesByServer").GetBoolean());
        Assert.Equal("NoNat", root.GetProperty("nat").GetProperty("mapping").GetString());
        Assert.Equal("EndpointIndependent", root.GetProperty("nat").GetProperty("filtering").GetString());
        Assert.StartsWith("127.0.0.1:", root.GetProperty("tcp").GetProperty("mapped").GetString(), StringComparison.Ordinal);

        // A server that is not there: a report that says so, and exit code 1.
        (exit, report, _) = await PeerLinkTool.RunAsync("netcheck", "--stun", "127.0.0.1:9", "--json");
        Assert.Equal(1, exit);
        Assert.False(JsonDocument.Parse(report).RootElement.GetProperty("ipv4").GetBoolean());

        Assert.Equal(0, await server.TerminateAsync());
    }

    [Fact]
    public async Task SendReachesAListenerByPeerIdThroughTheRendezvousCommand()
    {
        await using PeerLinkTool node = PeerLinkTool.Start("rendezvous", "--listen", "127.0.0.1:0", "--stun-port", "-1", "-i", Key("node.key"));
        string[] ready = (await node.WaitForLineAsync(l => l.StartsWith("rendezvous: ", StringComparison.Ordinal))).Split(' ');
        (string nodeId, string nodeEndPoint) = (ready[1], ready[3]);

        await using PeerLinkTool listener = PeerLinkTool.Start("listen", "--rendezvous", nodeEndPoint, "--rendezvous-peer", nodeId, "-i", Key("sensor.key"));
        string peerId = (await listener.WaitForLineAsync(l => l.StartsWith("listening: ", StringComparison.Ordinal))).Split(' ')[1];
        await listener.WaitForLineAsync(l => l.StartsWith("attached: rendezvous node", StringComparison.Ordinal));

        (int exit, _, string error) = await PeerLinkTool.RunAsync("send", peerId, "motion", "--rendezvous", nodeEndPoint, "--rendezvous-peer", nodeId, "-i", Key("gateway.key"));
        Assert.True(exit == 0, error);
        await listener.WaitForLineAsync(l => l.EndsWith(": motion", StringComparison.Ordinal));
        Assert.Contains("relayed through rendezvous node", listener.Output, StringComparison.Ordinal);

        Assert.Equal(0, await listener.TerminateAsync());
        Assert.Equal(0, await node.TerminateAsync());
    }

    [Fact]
    public async Task DiscoverListsAPeerThatListensOnTheLanOfTheLoopbackInterface()
    {
        string loopback = System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
            .First(n => n.NetworkInterfaceType == System.Net.NetworkInformation.NetworkInterfaceType.Loopback).Name;
        await using PeerLinkTool listener = PeerLinkTool.Start("listen", "--listen", "127.0.0.1:0", "--lan", "--interface", loopback, "--name", "Tool test light", "-i", Key("lamp.key"));
        string peerId = (await listener.WaitForLineAsync(l => l.StartsWith("listening: ", StringComparison.Ordinal))).Split(' ')[1];

        await using PeerLinkTool browser = PeerLinkTool.Start("discover", "--interface", loopback, "--duration", "30");
        string found = await browser.WaitForLineAsync(l => l.Contains(peerId, StringComparison.Ordinal));
        Assert.StartsWith("+ _peerlink._tcp.local \"Tool test light\" 127.0.0.1:", found, StringComparison.Ordinal);

        Assert.Equal(0, await listener.TerminateAsync());
        Assert.Equal(0, await browser.TerminateAsync());
    }

    public void Dispose() => _keys.Delete(recursive: true);

    private string Key(string name) => Path.Combine(_keys.FullName, name);

    private static string Field(string output, string label) =>
        output.Split('\n').First(l => l.StartsWith(label, StringComparison.Ordinal))[label.Length..].Trim();
}
