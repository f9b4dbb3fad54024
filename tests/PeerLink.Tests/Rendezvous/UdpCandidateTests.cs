using System.Net;
using PeerLink.Nat.Rendezvous;
using Xunit;

namespace PeerLink.Tests.Rendezvous;

/// <summary>UDP candidates as they travel in the session, and their RFC 8445 priorities.</summary>
public sealed class UdpCandidateTests
{
    [Fact]
    public void PrioritiesFollowRfc8445TypePreferences()
    {
        // 2^24 × 126 + 2^8 × 65535 + 255: the familiar priority of a single-homed host candidate.
        Assert.Equal(2130706431u, UdpCandidate.PriorityOf(UdpCandidateKind.Host, 65535));
        Assert.Equal((110u << 24) | (65535u << 8) | 255u, UdpCandidate.PriorityOf(UdpCandidateKind.PeerReflexive, 65535));
        Assert.Equal((100u << 24) | (65535u << 8) | 255u, UdpCandidate.PriorityOf(UdpCandidateKind.ServerReflexive, 65535));
        Assert.True(UdpCandidate.PriorityOf(UdpCandidateKind.Host, 0) > UdpCandidate.PriorityOf(UdpCandidateKind.PeerReflexive, 65535));
        Assert.True(UdpCandidate.PriorityOf(UdpCandidateKind.Host, 65535) > UdpCandidate.PriorityOf(UdpCandidateKind.Host, 65534));
    }

    [Fact]
    public void APairsPriorityIsTheSameOnBothSides()
    {
        uint g = UdpCandidate.PriorityOf(UdpCandidateKind.Host, 65535);
        uint d = UdpCandidate.PriorityOf(UdpCandidateKind.ServerReflexive, 65535);

        // RFC 8445 §6.1.2.3: 2^32 × MIN(G,D) + 2 × MAX(G,D) + (G > D ? 1 : 0).
        Assert.Equal(((ulong)d << 32) + (2UL * g) + 1, UdpCandidate.PairPriority(g, d));
        Assert.Equal(((ulong)d << 32) + (2UL * g), UdpCandidate.PairPriority(d, g));
        Assert.True(UdpCandidate.PairPriority(g, g) > UdpCandidate.PairPriority(g, d));
    }

    [Theory]
    [InlineData("host 10.0.1.2:40000 2130706431", 0)]
    [InlineData("srflx 203.0.113.101:5000 1694498815", 1)]
    [InlineData("prflx [2001:db8::1]:7 1862270975", 2)]
    public void ACandidateSurvivesItsTextForm(string text, int kindNumber)
    {
        var kind = (UdpCandidateKind)kindNumber;
        Assert.True(UdpCandidate.TryParse(text, out UdpCandidate candidate));

        Assert.Equal(kind, candidate.Kind);
        Assert.Equal(text, candidate.ToString());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("host 10.0.1.2:40000")]
    [InlineData("host 10.0.1.2:0 1")]
    [InlineData("relay 10.0.1.2:1 1")]
    [InlineData("host 10.0.1.2:1 -1")]
    [InlineData("host 10.0.1.2:1 99999999999")]
    [InlineData("host nowhere:1 1")]
    [InlineData("host 10.0.1.2:1 1 extra")]
    public void MalformedCandidatesAreRefused(string? text)
    {
        Assert.False(UdpCandidate.TryParse(text, out _));
    }

    [Fact]
    public void CandidatesOfAnotherFamilyKeepTheirAddress()
    {
        Assert.True(UdpCandidate.TryParse("host [::1]:9 1", out UdpCandidate candidate));
        Assert.Equal(IPAddress.IPv6Loopback, candidate.EndPoint.Address);
    }
}
