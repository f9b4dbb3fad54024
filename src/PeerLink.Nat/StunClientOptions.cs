using System;

namespace PeerLink.Nat;

/// <summary>How a <see cref="StunClient"/> retransmits and authenticates. Validated when a request starts.</summary>
public sealed class StunClientOptions
{
    /// <summary>The clock for retransmissions, timeouts and round-trip times.</summary>
    /// <remarks>Defaults to <see cref="TimeProvider.System"/>.</remarks>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>The initial retransmission timeout, RTO (RFC 8489 §6.2.1); it doubles after every transmission.</summary>
    /// <remarks>Defaults to 500 ms, the RFC's recommendation. At least 1 ms.</remarks>
    public TimeSpan InitialRto { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>How many times a request is sent at most, Rc.</summary>
    /// <remarks>Defaults to 7. From 1 to 20.</remarks>
    public int MaxTransmissions { get; set; } = 7;

    /// <summary>After the last transmission the client waits this many RTOs for an answer, Rm.</summary>
    /// <remarks>Defaults to 16, so that with the other defaults a dead server is given up after 39.5 s.</remarks>
    public int FinalWaitMultiplier { get; set; } = 16;

    /// <summary>Over TCP, how long a request waits for its answer, Ti (RFC 8489 §6.2.2; TCP needs no retransmission).</summary>
    /// <remarks>Defaults to 39.5 seconds.</remarks>
    public TimeSpan TcpTransactionTimeout { get; set; } = TimeSpan.FromSeconds(39.5);

    /// <summary>The user name of the credentials, or null for none.</summary>
    /// <remarks>Defaults to null.</remarks>
    public string? Username { get; set; }

    /// <summary>The password of the credentials.</summary>
    /// <remarks>Defaults to null.</remarks>
    public string? Password { get; set; }

    /// <summary>
    /// False for short-term credentials, sent with every request; true for long-term ones (RFC 8489 §9.2), sent after the
    /// server's 401 challenge with its REALM and NONCE, and again with a fresh NONCE after a 438 (stale nonce).
    /// </summary>
    /// <remarks>Defaults to false.</remarks>
    public bool UseLongTermCredentials { get; set; }

    /// <summary>The SOFTWARE attribute of requests, or null to leave it out.</summary>
    /// <remarks>Defaults to null.</remarks>
    public string? Software { get; set; }

    internal void Validate(string paramName)
    {
        if (TimeProvider is null)
        {
            throw new ArgumentException("TimeProvider must be set.", paramName);
        }

        if (InitialRto < TimeSpan.FromMilliseconds(1) || InitialRto > TimeSpan.FromMinutes(1))
        {
            throw new ArgumentOutOfRangeException(paramName, InitialRto, "InitialRto must be between 1 ms and 1 minute.");
        }

        if (MaxTransmissions is < 1 or > 20)
        {
            throw new ArgumentOutOfRangeException(paramName, MaxTransmissions, "MaxTransmissions must be between 1 and 20.");
        }

        if (FinalWaitMultiplier is < 1 or > 64)
        {
            throw new ArgumentOutOfRangeException(paramName, FinalWaitMultiplier, "FinalWaitMultiplier must be between 1 and 64.");
        }

        if (TcpTransactionTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(paramName, TcpTransactionTimeout, "TcpTransactionTimeout must be positive.");
        }

        if ((Username is null) != (Password is null))
        {
            throw new ArgumentException("Username and Password go together: set both or neither.", paramName);
        }
    }
}
