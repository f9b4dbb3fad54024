using System;
using System.Text.Json;
using System.Threading.Tasks;
using Xunit;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// <c>peerlink netcheck</c> behind each kind of real Linux NAT, against <c>peerlink stun-server</c> on the lab's public
/// server (two addresses, two ports): the report must describe the router as it is built.
/// </summary>
public sealed class NetcheckLabTests
{
    [NatLabTheory]
    [InlineData("none", "NoNat", "EndpointIndependent", "no NAT", "10.0.1.2", false)]
    [InlineData("full-cone", "EndpointIndependent", "EndpointIndependent", "full cone", "203.0.113.101", false)]
    [InlineData("restricted", "EndpointIndependent", "AddressDependent", "restricted cone", "203.0.113.101", false)]
    [InlineData("port-restricted", "EndpointIndependent", "AddressAndPortDependent", "port-restricted cone", "203.0.113.101", false)]
    [InlineData("symmetric", "AddressAndPortDependent", "AddressAndPortDependent", "symmetric", "203.0.113.101", true)]
    public async Task NetcheckReportsTheRoutersBehaviour(string natType, string mapping, string filtering, string kind, string publicAddress, bool varies)
    {
        NatLabFixture lab = await NatLabFixture.UpAsync(natType, "none");
        try
        {
            LabConversation server = lab.StartProgram("server", NatLabFixture.ToolAssembly, "stun-server", "--listen", "203.0.113.10:3478", "--alternate", "203.0.113.11:3479");
            string ready = await server.ReadLineAsync();
            Assert.StartsWith("stun-server: 203.0.113.10:3478", ready, StringComparison.Ordinal);

            (int exit, string output, string error) = await lab.RunProgramAsync("peer-a", NatLabFixture.ToolAssembly,
                "netcheck", "--stun", "203.0.113.10:3478", "--stun", "203.0.113.11:3478", "--json");

            Assert.True(exit == 0, $"netcheck failed: {error}");
            using JsonDocument report = JsonDocument.Parse(output);
            JsonElement root = report.RootElement;
            JsonElement nat = root.GetProperty("nat");
            Assert.Equal(mapping, nat.GetProperty("mapping").GetString());
            Assert.Equal(filtering, nat.GetProperty("filtering").GetString());
            Assert.Equal(kind, nat.GetProperty("kind").GetString());
            Assert.True(root.GetProperty("ipv4").GetBoolean());
            Assert.Equal(varies, root.GetProperty("mappingVariesByServer").GetBoolean());
            foreach (JsonElement udp in root.GetProperty("udp").EnumerateArray())
            {
                Assert.StartsWith(publicAddress + ":", udp.GetProperty("mapped").GetString(), StringComparison.Ordinal);
            }

            Assert.StartsWith(publicAddress + ":", root.GetProperty("tcp").GetProperty("mapped").GetString(), StringComparison.Ordinal);
        }
        finally
        {
            await lab.DisposeAsync();
        }
    }
}
