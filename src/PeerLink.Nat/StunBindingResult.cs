using System;
using System.Net;

namespace PeerLink.Nat;

/// <summary>What a STUN server said about a socket: its reflexive address and the server's own addresses.</summary>
public sealed class StunBindingResult
{
    internal StunBindingResult(IPEndPoint mappedAddress, IPEndPoint server, IPEndPoint respondedFrom, IPEndPoint? responseOrigin, IPEndPoint? otherAddress, string? software, TimeSpan roundTripTime)
    {
        MappedAddress = mappedAddress;
        Server = server;
        RespondedFrom = respondedFrom;
        ResponseOrigin = responseOrigin;
        OtherAddress = otherAddress;
        ServerSoftware = software;
        RoundTripTime = roundTripTime;
    }

    /// <summary>The address and port the server saw the request come from: behind a NAT, the public (reflexive) one.</summary>
    public IPEndPoint MappedAddress { get; }

    /// <summary>Where the request was sent.</summary>
    public IPEndPoint Server { get; }

    /// <summary>Where the response came from (differs from <see cref="Server"/> after a CHANGE-REQUEST).</summary>
    public IPEndPoint RespondedFrom { get; }

    /// <summary>The server's RESPONSE-ORIGIN (RFC 5780), if it sent one.</summary>
    public IPEndPoint? ResponseOrigin { get; }

    /// <summary>The server's OTHER-ADDRESS (RFC 5780): its second address and port, if it has them.</summary>
    public IPEndPoint? OtherAddress { get; }

    /// <summary>The server's SOFTWARE, if it sent one.</summary>
    public string? ServerSoftware { get; }

    /// <summary>From the last transmission to the response.</summary>
    public TimeSpan RoundTripTime { get; }

    /// <summary>The mapped address and the server.</summary>
    public override string ToString() => $"{MappedAddress} (from {Server})";
}
