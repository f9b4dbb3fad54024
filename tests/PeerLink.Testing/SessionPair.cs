using System;
using System.Threading.Tasks;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.Testing;

/// <summary>Two peers with their own identities, and a session between them over an in-memory connection pair.</summary>
internal sealed class SessionPair : IAsyncDisposable
{
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    private SessionPair(SecureSession initiator, SecureSession responder)
    {
        Initiator = initiator;
        Responder = responder;
    }

    public SecureSession Initiator { get; }

    public SecureSession Responder { get; }

    public static SecureSessionOptions Options(PeerIdentity identity, Action<SecureSessionOptions>? configure = null)
    {
        var options = new SecureSessionOptions { Identity = identity };
        configure?.Invoke(options);
        return options;
    }

    public static async Task<SessionPair> OpenAsync(PeerIdentity initiator, PeerIdentity responder, bool ik, Action<SecureSessionOptions>? configureInitiator = null, Action<SecureSessionOptions>? configureResponder = null)
    {
        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        Task<SecureSession> accept = SecureSession.AcceptAsync(b, Options(responder, configureResponder));
        Task<SecureSession> connect = SecureSession.ConnectAsync(a, Options(initiator, configureInitiator), ik ? responder.PeerId : null);
        await Task.WhenAll(accept, connect).WaitAsync(Limit);
        return new SessionPair(await connect, await accept);
    }

    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(Initiator.DisposeAsync().AsTask(), Responder.DisposeAsync().AsTask()).WaitAsync(Limit);
    }
}
