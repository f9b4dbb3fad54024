using System;
using System.IO;
using System.Threading.Tasks;
using Xunit;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// Faults through real NATs (two port-restricted cones, the common home router): the rendezvous node restarts, the
/// direct path is cut in the middle of a transfer, and a device vanishes from the network.
/// </summary>
public sealed class RendezvousFaultTests
{
    private const string Node = "203.0.113.10:7400";

    [NatLabTheory]
    [InlineData("tcp", "DirectTcp")]
    [InlineData("udp", "DirectUdp")]
    public async Task WhenTheNodeRestartsDevicesAttachAgainAndADirectSessionCarriesOn(string punch, string kind)
    {
        NatLabFixture lab = await NatLabFixture.UpAsync("port-restricted", "port-restricted");
        lab.HelperEnvironment["PEERLINK_LAB_PUNCH"] = punch;
        string identity = Path.Combine(Path.GetTempPath(), $"peerlink-rdv-{Guid.NewGuid():N}.key");
        try
        {
            LabConversation node = await lab.StartConversationAsync("server", "rendezvous", Node, "3478", identity);
            string nodeId = node.Ready.Split(' ')[1];
            string callee = (await lab.StartHelperAsync("peer-b", "device-listen", Node, nodeId)).Split(' ')[1];
            LabConversation caller = await lab.StartConversationAsync("peer-a", "device-session", Node, nodeId, callee);
            Assert.StartsWith(kind, await caller.AskAsync("wait-direct"), StringComparison.Ordinal);
            Assert.Equal("watching", await caller.AskAsync("watch-detach"));

            node.Kill();   // the node crashes
            string during = await caller.AskAsync("send 1000");
            await lab.StartConversationAsync("server", "rendezvous", Node, "3478", identity);   // and comes back, same PeerId
            string reattached = await caller.AskAsync("wait-reattach");
            string after = await caller.AskAsync("send 1000");

            Assert.Equal($"echoed 1000 ok {kind}", during);
            Assert.StartsWith("attached ", reattached, StringComparison.Ordinal);
            Assert.Equal($"echoed 1000 ok {kind}", after);
        }
        finally
        {
            await lab.DisposeAsync();
            File.Delete(identity);
        }
    }

    /// <summary>A node on the server host, a callee behind router b, and a caller behind router a whose session went direct.</summary>
    private static async Task<(NatLabFixture Lab, LabConversation Caller)> DirectSessionAsync(string punch = "tcp")
    {
        NatLabFixture lab = await NatLabFixture.UpAsync("port-restricted", "port-restricted");
        lab.HelperEnvironment["PEERLINK_LAB_PUNCH"] = punch;
        try
        {
            string nodeId = (await lab.StartHelperAsync("server", "rendezvous", Node, "3478")).Split(' ')[1];
            string callee = (await lab.StartHelperAsync("peer-b", "device-listen", Node, nodeId)).Split(' ')[1];
            LabConversation caller = await lab.StartConversationAsync("peer-a", "device-session", Node, nodeId, callee);
            Assert.StartsWith(punch == "udp" ? "DirectUdp" : "DirectTcp", await caller.AskAsync("wait-direct"), StringComparison.Ordinal);
            return (lab, caller);
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    [NatLabTheory]
    [InlineData("tcp")]
    [InlineData("udp")]
    public async Task WhenTheDirectPathIsCutMidTransferTheDataFallsBackToTheRelayWithNothingLost(string punch)
    {
        (NatLabFixture lab, LabConversation caller) = await DirectSessionAsync(punch);
        try
        {
            Assert.Equal("half", await caller.AskAsync("send-pause 4000"));
            // Router a now drops everything between the two devices: a black hole, no reset; the node stays reachable.
            (int exit, _, string error) = await lab.ExecAsync("nat-a", "nft", "insert rule ip natlab forward ip daddr 203.0.113.102 drop ; insert rule ip natlab forward ip saddr 203.0.113.102 drop");
            Assert.True(exit == 0, error);
            await caller.SayAsync("go");
            string result = await caller.ReadLineAsync(TimeSpan.FromSeconds(90));

            Assert.Equal("echoed 4000 ok Relayed", result);
            Assert.StartsWith("Relayed", await caller.AskAsync("wait-relayed"), StringComparison.Ordinal);
        }
        finally
        {
            await lab.DisposeAsync();
        }
    }

    [NatLabTheory]
    [InlineData("tcp")]
    [InlineData("udp")]
    public async Task WhenADeviceVanishesThePeerGetsAClearErrorWithinThePathKeepAlive(string punch)
    {
        (NatLabFixture lab, LabConversation caller) = await DirectSessionAsync(punch);
        try
        {
            // Device b loses power: router b forwards nothing any more, and nothing says goodbye.
            (int exit, _, string error) = await lab.ExecAsync("nat-b", "nft", "insert rule ip natlab forward drop");
            Assert.True(exit == 0, error);
            string[] end = (await caller.AskAsync("wait-end", TimeSpan.FromSeconds(120))).Split(' ', 4);

            // The helper's path keepalive is 1 s: every path is dead after three silent seconds, so well under 10 s.
            Assert.Equal("ended", end[0]);
            Assert.Equal(nameof(PeerLinkError.PeerTimeout), end[1]);
            Assert.True(int.Parse(end[2], System.Globalization.CultureInfo.InvariantCulture) < 10_000, string.Join(' ', end));
            Assert.Contains("Nothing arrived", end[3], StringComparison.Ordinal);
        }
        finally
        {
            await lab.DisposeAsync();
        }
    }
    /// <summary>
    /// Both routers forget their UDP mappings, as they do when a session is idle beyond their timeout (conntrack deletes
    /// them on cue, where waiting out a timeout would make the test slow and its timing loose): the session carries on,
    /// directly again once both sides' next datagrams open new mappings, or through the relay until a new punch; nothing
    /// it accepted is lost.
    /// </summary>
    [NatLabFact]
    public async Task WhenTheUdpMappingsExpireTheSessionRecoversAndLosesNothing()
    {
        (NatLabFixture lab, LabConversation caller) = await DirectSessionAsync("udp");
        try
        {
            Assert.StartsWith("echoed 100 ok DirectUdp", await caller.AskAsync("send 100"), StringComparison.Ordinal);
            foreach (string router in new[] { "nat-a", "nat-b" })
            {
                (_, string stdout, string stderr) = await lab.ExecAsync(router, "conntrack", "-D", "-p", "udp");
                Assert.Matches("[1-9][0-9]* flow entries have been deleted", stdout + stderr);
            }

            string result = await caller.AskAsync("send 1000", TimeSpan.FromSeconds(90));

            Assert.Matches("^echoed 1000 ok (DirectUdp|Relayed)$", result);
            Assert.StartsWith("DirectUdp", await caller.AskAsync("wait-direct"), StringComparison.Ordinal);
            Assert.StartsWith("echoed 100 ok DirectUdp", await caller.AskAsync("send 100"), StringComparison.Ordinal);
        }
        finally
        {
            await lab.DisposeAsync();
        }
    }
}
