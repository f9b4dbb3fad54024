using System;
using System.Globalization;
using System.Threading.Tasks;
using Xunit;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// A UDP session through a real Linux NAT (a port-restricted cone) whose router drops a share of all forwarded packets
/// at random (nftables numgen, both directions): reliable-ordered delivery loses nothing, and the data arrives intact.
/// </summary>
public sealed class UdpLossyLinkTests
{
    [NatLabTheory]
    [InlineData(1, 2 * 1024 * 1024)]
    [InlineData(5, 1024 * 1024)]
    [InlineData(20, 128 * 1024)]
    public async Task AUdpSessionThroughALossyRouterDeliversEverythingIntact(int lossPercent, int bytes)
    {
        NatLabFixture lab = await NatLabFixture.UpAsync("port-restricted", "port-restricted");
        try
        {
            string peerId = (await lab.StartHelperAsync("server", "sink", "udp", "203.0.113.10:7500")).Split(' ')[1];
            (int exit, _, string error) = await lab.ExecAsync("nat-a", "nft", $"insert rule ip natlab forward numgen random mod 100 < {lossPercent} drop");
            Assert.True(exit == 0, error);

            (exit, string output, error) = await lab.RunHelperAsync("peer-a", "send", "udp", "203.0.113.10:7500", peerId, bytes.ToString(CultureInfo.InvariantCulture));

            Assert.True(exit == 0, error);
            string[] words = output.Trim().Split(' ');
            Assert.Equal(["sent", bytes.ToString(CultureInfo.InvariantCulture)], words[..2]);
            Assert.Equal("match", words[3]);
        }
        finally
        {
            await lab.DisposeAsync();
        }
    }
}
