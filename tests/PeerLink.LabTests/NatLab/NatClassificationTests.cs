using System;
using System.Collections.Generic;
using System.Text.Json;
using System.Threading.Tasks;
using Xunit;

namespace PeerLink.LabTests.NatLab;

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

    /// <summary>
    /// RFC 5780 §4.6 through real NATs whose idle UDP mappings are set to live 3 s: conntrack's timeout for the
    /// masquerading router, the nftables map's for the full cone. The measured interval must contain 3 s.
    /// </summary>
    [NatLabTheory]
    [InlineData("port-restricted")]
    [InlineData("full-cone")]
    public async Task MappingLifetimeMatchesTheRoutersTimeout(string natType)
    {
        NatLabFixture lab = await NatLabFixture.UpAsync(natType, "none", new Dictionary<string, string>
        {
            ["NATLAB_UDP_TIMEOUT"] = "3",
            ["NATLAB_MAP_TIMEOUT"] = "3",
        });
        try
        {
            await lab.StartHelperAsync("server", "stun-server", "203.0.113.10:3478", "203.0.113.11:3479");

            (int exit, string output, string error) = await lab.RunHelperAsync("peer-a", "nat-discover", "203.0.113.10:3478", "--lifetime", "8000", "1000");

            Assert.True(exit == 0, $"discovery failed: {error}");
            using JsonDocument result = JsonDocument.Parse(output);
            double atLeast = result.RootElement.GetProperty("lifetimeAtLeastMs").GetDouble();
            double atMost = result.RootElement.GetProperty("lifetimeAtMostMs").GetDouble();
            Assert.InRange(atLeast, 1000, 3000);   // the mapping outlived at least the 1 s and 2 s tests
            Assert.InRange(atMost, 3000, 4000);    // and was gone by 4 s
            Assert.True(atMost - atLeast <= 1001, $"interval {atLeast}..{atMost} ms is wider than the resolution");
            Assert.Contains("idle mappings live between", result.RootElement.GetProperty("summary").GetString(), StringComparison.Ordinal);
        }
        finally
        {
            await lab.DisposeAsync();
        }

        Assert.Empty(lab.ExistingNamespaces());
    }
}
