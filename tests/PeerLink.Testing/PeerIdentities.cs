using System;

namespace PeerLink.Testing;

/// <summary>Three fresh identities per test (xunit makes a new instance per test): two honest peers and an intruder.</summary>
public abstract class PeerIdentities : IDisposable
{
    protected PeerIdentity Alice { get; } = PeerIdentity.Generate();

    protected PeerIdentity Bob { get; } = PeerIdentity.Generate();

    protected PeerIdentity Mallory { get; } = PeerIdentity.Generate();

    public void Dispose()
    {
        Alice.Dispose();
        Bob.Dispose();
        Mallory.Dispose();
        GC.SuppressFinalize(this);
    }
}
