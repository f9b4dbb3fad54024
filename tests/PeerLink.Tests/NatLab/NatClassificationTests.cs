using System;
using System.Text.Json;
using System.Threading.Tasks;
using Xunit;

namespace PeerLink.Tests.NatLab;

/// <summary>
/// RFC 5780 behaviour discovery through real Linux NATs: the PeerLink STUN server runs in the lab's server host (two
/// addresses, two ports), discovery runs in peer-a behind nat-a, and the classification must match how nat-a is built.
/// </summary>
public sealed class NatClassificationTests
{
    [NatLabTheory]
    [InlineData("none", "NoNat", "EndpointIndependent", "no NAT", "10.0.1.2")]
    [InlineData("full-cone", "EndpointIndependent", "EndpointIndependent", "full cone", "203.0.113.101")]
    [InlineData("restricted", "EndpointIndependent", "AddressDependent", "restricted cone", "203.0.113.101")]
    [InlineData("port-restricted", "EndpointIndependent", "AddressAndPortDependent", "port-restricted cone", "203.0.113.101")]
    [InlineData("symmetric", "AddressAndPortDependent", "AddressAndPortDependent", "symmetric", "203.0.113.101")]
    public async Task ClassificationMatchesTheRoutersBehaviour(string natType, string mapping, string filtering, string kind, string publicAddress)
    {
        NatLabFixture lab = await NatLabFixture.UpAsync(natType, "none");
        try
        {
            string ready = await lab.StartHelperAsync("server", "stun-server", "203.0.113.10:3478", "203.0.113.11:3479");
            Assert.Contains("203.0.113.11:3479", ready, StringComparison.Ordinal);

            (int exit, string output, string error) = await lab.RunHelperAsync("peer-a", "nat-discover", "203.0.113.10:3478");

            Assert.True(exit == 0, $"discovery failed: {error}");
            using JsonDocument result = JsonDocument.Parse(output);
            JsonElement root = result.RootElement;
            Assert.Equal(mapping, root.GetProperty("mapping").GetString());
            Assert.Equal(filtering, root.GetProperty("filtering").GetString());
            Assert.Equal(kind, root.GetProperty("kind").GetString());
            Assert.StartsWith(publicAddress + ":", root.GetProperty("mapped").GetString(), StringComparison.Ordinal);
            Assert.StartsWith("10.0.1.2:", root.GetProperty("local").GetString(), StringComparison.Ordinal);
        }
        finally
        {
            await lab.DisposeAsync();
        }

        Assert.Empty(lab.ExistingNamespaces());   // torn down completely
    }
}
