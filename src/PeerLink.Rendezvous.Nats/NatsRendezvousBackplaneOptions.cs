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

    /// <summary>
    /// How long a connect request that found no responders waits before it asks once more, and only then reports the
    /// peer offline. In a NATS cluster a node's new subscription reaches the other servers a moment after it is made,
    /// so a request right after a device attached elsewhere can find nobody. Defaults to 100 milliseconds; zero asks
    /// once (right for a single NATS server).
    /// </summary>
    public TimeSpan OfflineConfirmDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// A JetStream key-value bucket that keeps each device's last-seen time (written when it attaches and when it
    /// detaches), so that a connect to an offline peer says when it was last attached. Null (the default) keeps no
    /// presence. The bucket is created when missing, with <see cref="PresenceMaxAge"/>; the NATS servers need JetStream.
    /// </summary>
    public string? PresenceBucket { get; set; }

    /// <summary>
    /// How long the presence bucket keeps a device's last-seen time (the bucket's maximum age: NATS 2.9 has no per-key
    /// TTL). Defaults to 30 days.
    /// </summary>
    public TimeSpan PresenceMaxAge { get; set; } = TimeSpan.FromDays(30);

    internal NatsRendezvousBackplaneOptions Validate(string paramName)
    {
        if (string.IsNullOrWhiteSpace(SubjectPrefix) || SubjectPrefix.Contains(' ', StringComparison.Ordinal) || SubjectPrefix.Contains('*', StringComparison.Ordinal) || SubjectPrefix.Contains('>', StringComparison.Ordinal) || SubjectPrefix.EndsWith('.'))
        {
            throw new ArgumentException("SubjectPrefix must be one or more NATS subject tokens without wildcards or spaces.", paramName);
        }

        if (RequestTimeout <= TimeSpan.Zero || OfflineConfirmDelay < TimeSpan.Zero)
        {
            throw new ArgumentException("RequestTimeout must be positive and OfflineConfirmDelay not negative.", paramName);
        }

        if (PresenceBucket is not null && (PresenceBucket.Length == 0 || !System.Text.RegularExpressions.Regex.IsMatch(PresenceBucket, "^[a-zA-Z0-9_-]+$") || PresenceMaxAge <= TimeSpan.Zero))
        {
            throw new ArgumentException("PresenceBucket must be a JetStream bucket name (letters, digits, - and _) and PresenceMaxAge positive.", paramName);
        }

        return (NatsRendezvousBackplaneOptions)MemberwiseClone();
    }
}
