using System;
using System.Net;

namespace PeerLink.Nat;

/// <summary>How a NAT chooses the public address and port for an internal endpoint (RFC 4787 §4.1, RFC 5780 §4.3).</summary>
public enum NatMappingBehavior
{
    /// <summary>Not determined: the server has no second address, or did not answer.</summary>
    Unknown = 0,

    /// <summary>No NAT: the address the server saw is this host's own.</summary>
    NoNat,

    /// <summary>One mapping for every destination: what hole punching needs.</summary>
    EndpointIndependent,

    /// <summary>A new mapping for every destination address.</summary>
    AddressDependent,

    /// <summary>A new mapping for every destination address and port ("symmetric NAT").</summary>
    AddressAndPortDependent,
}

/// <summary>Which inbound packets a NAT or firewall lets through to a mapping (RFC 4787 §5, RFC 5780 §4.4).</summary>
public enum NatFilteringBehavior
{
    /// <summary>Not determined: the server has no second address, or did not answer.</summary>
    Unknown = 0,

    /// <summary>Packets from anyone reach the mapping.</summary>
    EndpointIndependent,

    /// <summary>Only packets from addresses the host has sent to.</summary>
    AddressDependent,

    /// <summary>Only packets from addresses and ports the host has sent to.</summary>
    AddressAndPortDependent,
}

/// <summary>The result of <see cref="NatBehaviorDiscovery.DiscoverAsync"/>.</summary>
public sealed class NatBehavior
{
    internal NatBehavior(NatMappingBehavior mapping, NatFilteringBehavior filtering, IPEndPoint localEndPoint, IPEndPoint mappedAddress, NatMappingLifetime? mappingLifetime = null)
    {
        Mapping = mapping;
        Filtering = filtering;
        LocalEndPoint = localEndPoint;
        MappedAddress = mappedAddress;
        MappingLifetime = mappingLifetime;
    }

    /// <summary>
    /// How long an idle UDP mapping lives (RFC 5780 §4.6), or null when it was not measured
    /// (<see cref="NatBehaviorDiscoveryOptions.MeasureMappingLifetime"/>). Keepalives must come more often than
    /// <see cref="NatMappingLifetime.AtLeast"/>.
    /// </summary>
    public NatMappingLifetime? MappingLifetime { get; }

    /// <summary>
    /// A keepalive interval for UDP sessions through this NAT (<see cref="PeerLink.Transport.UdpTransportOptions.KeepAliveInterval"/>):
    /// four fifths of the measured lifetime's lower bound, between 1 and 120 seconds; 25 seconds when it was not measured.
    /// </summary>
    public TimeSpan RecommendedKeepAliveInterval => MappingLifetime is { } lifetime
        ? TimeSpan.FromMilliseconds(Math.Clamp(lifetime.AtLeast.TotalMilliseconds * 0.8, 1000, 120_000))
        : TimeSpan.FromSeconds(25);

    /// <summary>The mapping behaviour.</summary>
    public NatMappingBehavior Mapping { get; }

    /// <summary>The filtering behaviour.</summary>
    public NatFilteringBehavior Filtering { get; }

    /// <summary>The local endpoint the mapping tests were sent from.</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>The public address and port the server saw for <see cref="LocalEndPoint"/>.</summary>
    public IPEndPoint MappedAddress { get; }

    /// <summary>
    /// The classic name: "no NAT", "full cone", "restricted cone", "port-restricted cone" or "symmetric"; or a
    /// description of the combination when it has no classic name.
    /// </summary>
    public string Kind => (Mapping, Filtering) switch
    {
        (NatMappingBehavior.NoNat, _) => "no NAT",
        (NatMappingBehavior.EndpointIndependent, NatFilteringBehavior.EndpointIndependent) => "full cone",
        (NatMappingBehavior.EndpointIndependent, NatFilteringBehavior.AddressDependent) => "restricted cone",
        (NatMappingBehavior.EndpointIndependent, NatFilteringBehavior.AddressAndPortDependent) => "port-restricted cone",
        (NatMappingBehavior.AddressAndPortDependent or NatMappingBehavior.AddressDependent, _) => "symmetric",
        _ => "unknown",
    };

    /// <summary>A sentence for people: the kind, both behaviours, and what they mean for direct connections.</summary>
    public string Summary
    {
        get
        {
            string punch = Mapping switch
            {
                NatMappingBehavior.NoNat => "peers can reach this host directly if its firewall allows",
                NatMappingBehavior.EndpointIndependent => "UDP hole punching can work",
                NatMappingBehavior.AddressDependent or NatMappingBehavior.AddressAndPortDependent => "hole punching works only if the other side's NAT is lenient; otherwise a relay is needed",
                _ => "hole punching prospects are unknown",
            };
            string lifetime = MappingLifetime is { } l ? $"; idle mappings live {l}" : "";
            return $"{Kind}: {Describe(Mapping)} mapping, {Describe(Filtering)} filtering; public address {MappedAddress}{lifetime}; {punch}.";
        }
    }

    /// <summary>The <see cref="Summary"/>.</summary>
    public override string ToString() => Summary;

    private static string Describe(Enum value) => value.ToString() switch
    {
        "NoNat" => "no",
        "EndpointIndependent" => "endpoint-independent",
        "AddressDependent" => "address-dependent",
        "AddressAndPortDependent" => "address-and-port-dependent",
        _ => "unknown",
    };
}

/// <summary>
/// The measured lifetime of an idle UDP mapping: it was still there after <see cref="AtLeast"/> and gone after
/// <see cref="AtMost"/> (RFC 5780 §4.6).
/// </summary>
public sealed class NatMappingLifetime
{
    internal NatMappingLifetime(TimeSpan atLeast, TimeSpan? atMost)
    {
        AtLeast = atLeast;
        AtMost = atMost;
    }

    /// <summary>The longest idle time after which the mapping still delivered an answer; zero if none did.</summary>
    public TimeSpan AtLeast { get; }

    /// <summary>The shortest idle time after which the mapping was gone, or null when it outlived every test.</summary>
    public TimeSpan? AtMost { get; }

    /// <summary>"between 20 s and 25 s", or "at least 120 s" when no test outlived it.</summary>
    public override string ToString() => AtMost is { } most
        ? $"between {AtLeast.TotalSeconds:0.#} s and {most.TotalSeconds:0.#} s"
        : $"at least {AtLeast.TotalSeconds:0.#} s";
}
