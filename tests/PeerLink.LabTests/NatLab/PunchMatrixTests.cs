using System;
using System.Text.Json;
using System.Threading.Tasks;
using Xunit;
using Xunit.Abstractions;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// Two devices behind real Linux NATs (eng/natlab.sh) reach each other by PeerId through a rendezvous node on the
/// lab's server host, for every pair of NAT types. The session starts relayed, exchanges messages both ways with none
/// lost, and ends on a direct TCP path wherever the reference matrix (shared NATLAB.md §6, "TCP connect + listen")
/// shows TCP punching possible: every pair but port-restricted with symmetric and symmetric with symmetric, which stay
/// relayed and say why.
/// </summary>
public sealed class PunchMatrixTests(ITestOutputHelper output)
{
    private const int Messages = 2000;

    /// <summary>The 15 pairs of NAT types (router a, router b), as in the reference matrix.</summary>
    public static TheoryData<string, string> Pairs { get; } = new()
    {
        { "none", "none" }, { "none", "full-cone" }, { "none", "restricted" }, { "none", "port-restricted" }, { "none", "symmetric" },
        { "full-cone", "full-cone" }, { "full-cone", "restricted" }, { "full-cone", "port-restricted" }, { "full-cone", "symmetric" },
        { "restricted", "restricted" }, { "restricted", "port-restricted" }, { "restricted", "symmetric" },
        { "port-restricted", "port-restricted" }, { "port-restricted", "symmetric" }, { "symmetric", "symmetric" },
    };

    [NatLabTheory]
    [MemberData(nameof(Pairs))]
    public async Task TwoDevicesBehindNatsConnectByPeerIdAndGoDirectWherePossible(string natA, string natB)
    {
        bool direct = !(natB == "symmetric" && natA is "port-restricted" or "symmetric");
        JsonElement root = await ConnectAsync(natA, natB, "tcp");
        string description = root.GetProperty("description").GetString()!;
        if (direct)
        {
            Assert.True(root.GetProperty("kind").GetString() == "DirectTcp", description);
            Assert.StartsWith("direct-tcp ", description, StringComparison.Ordinal);
        }
        else
        {
            Assert.True(root.GetProperty("kind").GetString() == "Relayed", description);
            Assert.Contains("3 punch attempt(s) failed", description, StringComparison.Ordinal);
            Assert.Contains("no TCP connection formed", description, StringComparison.Ordinal);
            Assert.Contains("the peer is seen at 203.0.113.102:", description, StringComparison.Ordinal);   // peer b is symmetric in both pairs
            Assert.Contains("(symmetric)", description, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// The UDP column (shared NATLAB.md §6, "UDP +learning"): with only UDP punching on, the session ends on a direct UDP
    /// path in every pair but symmetric with symmetric, which stays relayed and says why. Where one side is symmetric,
    /// the path is the peer-reflexive port its checks came from; port-restricted with symmetric needs birthday probing
    /// (the second attempt, after an ordinary one failed).
    /// </summary>
    [NatLabTheory]
    [MemberData(nameof(Pairs))]
    public async Task OverUdpTwoDevicesBehindNatsGoDirectWherePossible(string natA, string natB)
    {
        bool direct = !(natA == "symmetric" && natB == "symmetric");
        JsonElement root = await ConnectAsync(natA, natB, "udp", natA == "port-restricted" && natB == "symmetric" ? 60_000 : 20_000);
        string description = root.GetProperty("description").GetString()!;
        if (direct)
        {
            Assert.True(root.GetProperty("kind").GetString() == "DirectUdp", description);
            Assert.StartsWith("direct-udp ", description, StringComparison.Ordinal);
            if (natA == "port-restricted" && natB == "symmetric")
            {
                Assert.Contains("birthday probing", description, StringComparison.Ordinal);
            }
            else if (natB == "symmetric")
            {
                Assert.Contains("peer-reflexive", description, StringComparison.Ordinal);
            }
        }
        else
        {
            Assert.True(root.GetProperty("kind").GetString() == "Relayed", description);
            Assert.Contains("3 punch attempt(s) failed", description, StringComparison.Ordinal);
            Assert.Contains("no UDP path", description, StringComparison.Ordinal);
            Assert.Contains("TCP punching is off here", description, StringComparison.Ordinal);
            Assert.Contains("no birthday probing", description, StringComparison.Ordinal);
        }
    }

    /// <summary>With both on, UDP wins where both work.</summary>
    [NatLabTheory]
    [InlineData("port-restricted", "port-restricted")]
    [InlineData("full-cone", "symmetric")]
    public async Task WhereUdpAndTcpBothWorkTheSessionEndsOnUdp(string natA, string natB)
    {
        JsonElement root = await ConnectAsync(natA, natB, "both");
        string description = root.GetProperty("description").GetString()!;

        Assert.True(root.GetProperty("kind").GetString() == "DirectUdp", description);
        Assert.StartsWith("direct-udp ", description, StringComparison.Ordinal);
    }

    private async Task<JsonElement> ConnectAsync(string natA, string natB, string punch, int waitMs = 20_000)
    {
        NatLabFixture lab = await NatLabFixture.UpAsync(natA, natB);
        lab.HelperEnvironment["PEERLINK_LAB_PUNCH"] = punch;
        try
        {
            string[] node = (await lab.StartHelperAsync("server", "rendezvous", "203.0.113.10:7400", "3478")).Split(' ');
            string[] callee = (await lab.StartHelperAsync("peer-b", "device-listen", "203.0.113.10:7400", node[1])).Split(' ');

            (int exit, string stdout, string stderr) = await lab.RunHelperAsync("peer-a", "device-connect", "203.0.113.10:7400", node[1], callee[1], Messages.ToString(System.Globalization.CultureInfo.InvariantCulture), waitMs.ToString(System.Globalization.CultureInfo.InvariantCulture));

            Assert.True(exit == 0, $"device-connect failed: {stderr}");
            output.WriteLine($"{natA} / {natB} ({punch}): {stdout}");
            using JsonDocument result = JsonDocument.Parse(stdout);
            JsonElement root = result.RootElement.Clone();
            Assert.Equal(Messages, root.GetProperty("echoed").GetInt32());
            return root;
        }
        finally
        {
            await lab.DisposeAsync();
        }
    }
}
