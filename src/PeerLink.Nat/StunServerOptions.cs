using System;
using System.Net;

namespace PeerLink.Nat;

/// <summary>Settings of a <see cref="StunServer"/>. Validated and copied when the server starts.</summary>
public sealed class StunServerOptions
{
    /// <summary>The address and port the server answers on.</summary>
    /// <remarks>Defaults to 0.0.0.0:3478 (all IPv4 addresses, the standard STUN port). Port 0 picks a free port;
    /// read the real one from <see cref="StunServer.LocalEndPoints"/>.</remarks>
    public IPEndPoint PrimaryEndPoint { get; set; } = new(IPAddress.Any, 3478);

    /// <summary>
    /// A second address of this host. When set, the server also listens on a second port of both addresses and supports
    /// RFC 5780 behaviour discovery: OTHER-ADDRESS in responses, and CHANGE-REQUEST answered from the other address or port.
    /// </summary>
    /// <remarks>Defaults to null (no behaviour discovery; CHANGE-REQUEST is answered with error 420). Must be a specific
    /// address of the same family as <see cref="PrimaryEndPoint"/>, which must then be specific too.</remarks>
    public IPAddress? AlternateAddress { get; set; }

    /// <summary>The second port, used with <see cref="AlternateAddress"/>.</summary>
    /// <remarks>Defaults to 3479. 0 picks a free port.</remarks>
    public int AlternatePort { get; set; } = 3479;

    /// <summary>The SOFTWARE attribute of responses, or null to leave it out.</summary>
    /// <remarks>Defaults to "PeerLink".</remarks>
    public string? Software { get; set; } = "PeerLink";

    /// <summary>Whether the server also answers over TCP on <see cref="PrimaryEndPoint"/> (RFC 8489 §6.2.2).</summary>
    /// <remarks>Defaults to true.</remarks>
    public bool EnableTcp { get; set; } = true;

    /// <summary>How many TCP connections the server keeps at once; more are closed as they arrive.</summary>
    /// <remarks>Defaults to 1000.</remarks>
    public int MaxTcpConnections { get; set; } = 1000;

    /// <summary>How long an idle TCP connection is kept open.</summary>
    /// <remarks>Defaults to 30 seconds (RFC 8489 §6.2.2 asks for at least 10).</remarks>
    public TimeSpan TcpIdleTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// With <see cref="Password"/>, credentials that every request must carry: short-term ones (RFC 8489 §9.1), or
    /// long-term ones (§9.2) when <see cref="Realm"/> is set.
    /// </summary>
    /// <remarks>Defaults to null: requests need no credentials, as usual for a public STUN server.</remarks>
    public string? Username { get; set; }

    /// <summary>The password that goes with <see cref="Username"/>.</summary>
    /// <remarks>Defaults to null.</remarks>
    public string? Password { get; set; }

    /// <summary>
    /// The realm of long-term credentials (RFC 8489 §9.2). When set, a request without credentials is challenged with
    /// 401, REALM, a NONCE and PASSWORD-ALGORITHMS (SHA-256, MD5); an expired nonce gets 438. USERNAME or USERHASH,
    /// MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 are accepted.
    /// </summary>
    /// <remarks>Defaults to null (short-term credentials when <see cref="Username"/> is set). Needs <see cref="Username"/>
    /// and <see cref="Password"/>; at most 127 characters.</remarks>
    public string? Realm { get; set; }

    /// <summary>How long a NONCE of the long-term mechanism stays valid before a request using it gets 438 (Stale Nonce).</summary>
    /// <remarks>Defaults to 10 minutes. Nonces are stateless (an expiry and a MAC bound to the client's address), so
    /// the server keeps nothing per client.</remarks>
    public TimeSpan NonceLifetime { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>The clock for nonce expiry.</summary>
    /// <remarks>Defaults to <see cref="TimeProvider.System"/>.</remarks>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    internal void Validate(string paramName)
    {
        if (PrimaryEndPoint is null)
        {
            throw new ArgumentException("PrimaryEndPoint is required.", paramName);
        }

        if ((Username is null) != (Password is null))
        {
            throw new ArgumentException("Username and Password go together: set both or neither.", paramName);
        }

        if (Realm is not null && (Username is null || Realm.Length is 0 or > 127))
        {
            throw new ArgumentException("Realm needs Username and Password, and must have 1 to 127 characters.", paramName);
        }

        if (NonceLifetime <= TimeSpan.Zero || TimeProvider is null)
        {
            throw new ArgumentException("NonceLifetime must be positive and TimeProvider set.", paramName);
        }

        if (MaxTcpConnections < 1 || TcpIdleTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("MaxTcpConnections must be at least 1 and TcpIdleTimeout positive.", paramName);
        }

        if (AlternateAddress is not null)
        {
            if (AlternateAddress.AddressFamily != PrimaryEndPoint.AddressFamily)
            {
                throw new ArgumentException("AlternateAddress must be of the same address family as PrimaryEndPoint.", paramName);
            }

            if (IsWildcard(AlternateAddress) || IsWildcard(PrimaryEndPoint.Address))
            {
                throw new ArgumentException("Behaviour discovery needs specific addresses: neither PrimaryEndPoint nor AlternateAddress may be a wildcard.", paramName);
            }

            if (AlternateAddress.Equals(PrimaryEndPoint.Address))
            {
                throw new ArgumentException("AlternateAddress must differ from the primary address.", paramName);
            }

            if (AlternatePort is < 0 or > 65535 || (AlternatePort != 0 && AlternatePort == PrimaryEndPoint.Port))
            {
                throw new ArgumentException("AlternatePort must be a port from 0 to 65535 that differs from the primary port.", paramName);
            }
        }
    }

    private static bool IsWildcard(IPAddress address) => address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);
}
