using System;

namespace PeerLink.Rendezvous.Nats;

/// <summary>Settings of a <see cref="NatsRendezvousBackplane"/>.</summary>
public sealed class NatsRendezvousBackplaneOptions
{
    /// <summary>
    /// The first tokens of every subject the tier uses: PREFIX.peer.PEERID (connect requests to the node holding a
    /// device) and PREFIX.attached.PEERID (attachments, for evictions). Defaults to "peerlink.rendezvous"; tiers that
    /// share NATS servers need different prefixes, and the NATS permissions of a node are given on these subjects.
    /// </summary>
    public string SubjectPrefix { get; set; } = "peerlink.rendezvous";

    /// <summary>How long a routed connect request waits for the holding node's answer. Defaults to 2 seconds.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(2);

    internal NatsRendezvousBackplaneOptions Validate(string paramName)
    {
        if (string.IsNullOrWhiteSpace(SubjectPrefix) || SubjectPrefix.Contains(' ', StringComparison.Ordinal) || SubjectPrefix.Contains('*', StringComparison.Ordinal) || SubjectPrefix.Contains('>', StringComparison.Ordinal) || SubjectPrefix.EndsWith('.'))
        {
            throw new ArgumentException("SubjectPrefix must be one or more NATS subject tokens without wildcards or spaces.", paramName);
        }

        if (RequestTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("RequestTimeout must be positive.", paramName);
        }

        return (NatsRendezvousBackplaneOptions)MemberwiseClone();
    }
}
