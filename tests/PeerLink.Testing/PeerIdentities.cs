using System;

namespace PeerLink.Testing;

/// <summary>Three fresh identities per test (xunit makes a new instance per test): two honest peers and an intruder.</summary>
public abstract class PeerIdentities : IDisposable
{
    protected PeerIdentity Alice { get; } = PeerIdentity.Generate();

    protected PeerIdentity Bob { get; } = PeerIdentity.Generate();

    protected PeerIdentity Mallory { get; } = PeerIdentity.Generate();

    /// <summary>A rendezvous node's identity.</summary>
    protected PeerIdentity Relay { get; } = PeerIdentity.Generate();

    public void Dispose()
    {
        Alice.Dispose();
        Bob.Dispose();
        Mallory.Dispose();
        Relay.Dispose();
        GC.SuppressFinalize(this);
    }
}
