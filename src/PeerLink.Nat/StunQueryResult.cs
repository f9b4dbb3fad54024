using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;

namespace PeerLink.Nat;

/// <summary>The answers of several STUN servers to Binding requests sent from one socket, compared.</summary>
public sealed class StunQueryResult
{
    internal StunQueryResult(IReadOnlyList<StunBindingResult> answers, IReadOnlyList<(IPEndPoint Server, PeerLinkException Error)> failures)
    {
        Answers = answers;
        Failures = failures;
        DistinctMappedAddresses = answers.Select(a => a.MappedAddress).Distinct().ToArray();
    }

    /// <summary>The servers that answered, in the order they were given.</summary>
    public IReadOnlyList<StunBindingResult> Answers { get; }

    /// <summary>The servers that did not answer, or answered with an error, and why.</summary>
    public IReadOnlyList<(IPEndPoint Server, PeerLinkException Error)> Failures { get; }

    /// <summary>The different mapped addresses the servers reported.</summary>
    public IReadOnlyList<IPEndPoint> DistinctMappedAddresses { get; }

    /// <summary>
    /// True when every server that answered saw the same public address and port. False means the NAT maps per
    /// destination (symmetric): the address one server reports is not the one another peer will see.
    /// </summary>
    public bool MappedAddressesAgree => DistinctMappedAddresses.Count <= 1;

    /// <summary>The mapped address all answers agree on; null when none answered or they disagree.</summary>
    public IPEndPoint? MappedAddress => DistinctMappedAddresses.Count == 1 ? DistinctMappedAddresses[0] : null;
}
