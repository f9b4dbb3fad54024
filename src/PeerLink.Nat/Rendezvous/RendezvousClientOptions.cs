using System;

namespace PeerLink.Nat.Rendezvous;

/// <summary>How a device attaches to its rendezvous node (see <see cref="RendezvousBuilderExtensions.UseRendezvous"/>).</summary>
public sealed class RendezvousClientOptions
{
    /// <summary>
    /// The network key of the rendezvous node, when it requires one. Null (the default) uses the node's own
    /// <see cref="PeerLink.Sessions.SecureSessionOptions.NetworkKey"/>, the usual case of one key per installation.
    /// </summary>
    public NetworkKey? NetworkKey { get; set; }

    /// <summary>The first delay before attaching again after a loss; it doubles after every failure. Defaults to 1 second.</summary>
    public TimeSpan MinReattachDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest delay between attach attempts. Defaults to 60 seconds.</summary>
    /// <remarks>
    /// Each delay is drawn at random between half and all of its nominal value (jitter), so that devices that lost the node
    /// together do not come back in one wave.
    /// </remarks>
    public TimeSpan MaxReattachDelay { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a connect by PeerId waits for the attachment when the node is still attaching. Defaults to 10 seconds.</summary>
    public TimeSpan AttachWait { get; set; } = TimeSpan.FromSeconds(10);

    internal RendezvousClientOptions Validate(string paramName)
    {
        if (MinReattachDelay <= TimeSpan.Zero || MaxReattachDelay < MinReattachDelay || AttachWait < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(paramName, "MinReattachDelay must be positive, MaxReattachDelay at least as long, and AttachWait not negative.");
        }

        _ = NetworkKey?.Bytes;
        return (RendezvousClientOptions)MemberwiseClone();
    }
}
