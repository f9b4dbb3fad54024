using System;
using System.Collections.Generic;
using System.Security.Cryptography;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Sessions;
using PeerLink.Transport;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Sessions;

/// <summary>Handshakes that must fail, and how each side learns why.</summary>
public sealed class SessionHandshakeTests : PeerIdentities
{
    private static readonly TimeSpan Limit = SessionPair.Limit;

    [Fact]
    public async Task IkToAPeerWhoseKeyChangedFailsWithAClearError()
    {
        // Alice expects Bob's old key; the device at the other end now has Mallory's.
        (PeerLinkException initiator, PeerLinkException responder) = await FailBothAsync(
            connection => SecureSession.ConnectAsync(connection, SessionPair.Options(Alice), Bob.PeerId),
            connection => SecureSession.AcceptAsync(connection, SessionPair.Options(Mallory)));

        Assert.Equal(PeerLinkError.RemoteKeyMismatch, initiator.Error);
        Assert.Contains(Bob.PeerId.ToFingerprint(), initiator.Message, StringComparison.Ordinal);
        Assert.Equal(PeerLinkError.RemoteKeyMismatch, responder.Error);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ARefusedPeerLearnsOnlyThatItWasRefused(bool ik)
    {
        (PeerLinkException initiator, PeerLinkException responder) = await FailBothAsync(
            connection => SecureSession.ConnectAsync(connection, SessionPair.Options(Mallory), ik ? Bob.PeerId : null),
            connection => SecureSession.AcceptAsync(connection, SessionPair.Options(Bob, o => o.AllowedPeers = new HashSet<PeerId> { Alice.PeerId })));

        Assert.Equal(PeerLinkError.PeerRefused, initiator.Error);
        Assert.Equal("The peer refused the session.", initiator.Message);
        Assert.Equal(SessionCloseCode.Refused, initiator.RemoteCloseCode);
        Assert.Equal(PeerLinkError.PeerRefused, responder.Error);
        Assert.Null(responder.RemoteCloseCode);      // the responder refused; nothing came from its peer
    }

    [Fact]
    public async Task TheAuthorizationCallbackDecidesAndAThrowingOneRefuses()
    {
        var asked = new List<PeerId>();
        SecureSessionOptions Responder(bool allow) => SessionPair.Options(Bob, o => o.Authorize = (peer, _) =>
        {
            asked.Add(peer);
            return allow ? ValueTask.FromResult(true) : throw new InvalidOperationException("the callback failed");
        });

        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        Task<SecureSession> accept = SecureSession.AcceptAsync(b, Responder(allow: true));
        await using SecureSession session = await SecureSession.ConnectAsync(a, SessionPair.Options(Alice), Bob.PeerId).WaitAsync(Limit);
        await using SecureSession accepted = await accept.WaitAsync(Limit);
        (PeerLinkException refused, _) = await FailBothAsync(
            connection => SecureSession.ConnectAsync(connection, SessionPair.Options(Alice), Bob.PeerId),
            connection => SecureSession.AcceptAsync(connection, Responder(allow: false)));

        Assert.Equal([Alice.PeerId, Alice.PeerId], asked);
        Assert.Equal(PeerLinkError.PeerRefused, refused.Error);
    }

    [Fact]
    public async Task TheInitiatorAuthorizesAnXxResponderToo()
    {
        (PeerLinkException initiator, PeerLinkException responder) = await FailBothAsync(
            connection => SecureSession.ConnectAsync(connection, SessionPair.Options(Alice, o => o.AllowedPeers = new HashSet<PeerId> { Bob.PeerId })),
            connection => SecureSession.AcceptAsync(connection, SessionPair.Options(Mallory)));

        Assert.Equal(PeerLinkError.PeerRefused, initiator.Error);
        Assert.Contains(Mallory.PeerId.ToFingerprint(), initiator.Message, StringComparison.Ordinal);
        Assert.Equal(PeerLinkError.ConnectionReset, responder.Error);   // the initiator hangs up before its last message
    }

    [Theory]
    [InlineData(true, false, PeerLinkError.ConnectionReset, PeerLinkError.PeerRefused)]
    [InlineData(false, true, PeerLinkError.ConnectionReset, PeerLinkError.PeerRefused)]
    [InlineData(true, true, PeerLinkError.HandshakeFailed, PeerLinkError.ConnectionReset)]   // IKpsk2 mixes the key into message 2
    public async Task WithoutTheSameNetworkKeyThereIsNoSession(bool initiatorHasKey, bool responderHasKey, PeerLinkError initiatorError, PeerLinkError responderError)
    {
        using NetworkKey key = NetworkKey.Generate();
        using NetworkKey otherKey = NetworkKey.Generate();
        (PeerLinkException initiator, PeerLinkException responder) = await FailBothAsync(
            connection => SecureSession.ConnectAsync(connection, SessionPair.Options(Alice, o => o.NetworkKey = initiatorHasKey ? key : null), Bob.PeerId),
            connection => SecureSession.AcceptAsync(connection, SessionPair.Options(Bob, o => o.NetworkKey = responderHasKey ? (initiatorHasKey ? otherKey : key) : null)));

        Assert.Equal(initiatorError, initiator.Error);
        Assert.Equal(responderError, responder.Error);
    }

    [Fact]
    public async Task DifferentApplicationsRefuseEachOther()
    {
        (PeerLinkException initiator, PeerLinkException responder) = await FailBothAsync(
            connection => SecureSession.ConnectAsync(connection, SessionPair.Options(Alice, o => o.ApplicationId = "thermostat"), Bob.PeerId),
            connection => SecureSession.AcceptAsync(connection, SessionPair.Options(Bob, o => o.ApplicationId = "doorbell")));

        Assert.Equal(PeerLinkError.PeerRefused, initiator.Error);
        Assert.Equal(PeerLinkError.PeerRefused, responder.Error);
    }

    [Fact]
    public async Task AGarbagePreambleIsAProtocolViolation()
    {
        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        Task<SecureSession> accept = SecureSession.AcceptAsync(b, SessionPair.Options(Bob));
        await a.Transport.Output.WriteAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray());

        var error = await Assert.ThrowsAsync<PeerLinkException>(() => accept.WaitAsync(Limit));

        Assert.Equal(PeerLinkError.ProtocolViolation, error.Error);
        Assert.Contains("preamble", error.Message, StringComparison.Ordinal);
        await a.DisposeAsync();
    }

    [Fact]
    public async Task ASilentPeerHitsTheHandshakeTimeout()
    {
        var clock = new FakeTimeProvider();
        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        Task<SecureSession> accept = SecureSession.AcceptAsync(b, SessionPair.Options(Bob, o => o.TimeProvider = clock));   // HandshakeTimeout 10 s
        await a.Transport.Output.WriteAsync(new byte[] { (byte)'P', (byte)'L', (byte)'N', (byte)'K', 1, 1, 0xFF, 0xFF });   // then a 65535-byte message that never comes

        clock.Advance(TimeSpan.FromSeconds(10) - TimeSpan.FromTicks(1));
        Assert.False(accept.IsCompleted);
        clock.Advance(TimeSpan.FromTicks(1));
        var error = await Assert.ThrowsAsync<PeerLinkException>(() => accept.WaitAsync(Limit));

        Assert.Equal(PeerLinkError.HandshakeTimeout, error.Error);
        await a.DisposeAsync();
    }

    [Fact]
    public async Task AnUnknownVersionOrPatternIsRefused()
    {
        foreach (byte[] preamble in new[] { new byte[] { 80, 76, 78, 75, 2, 1 }, new byte[] { 80, 76, 78, 75, 1, 9 } })
        {
            (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
            Task<SecureSession> accept = SecureSession.AcceptAsync(b, SessionPair.Options(Bob));
            await a.Transport.Output.WriteAsync(preamble);

            var error = await Assert.ThrowsAsync<PeerLinkException>(() => accept.WaitAsync(Limit));

            Assert.Equal(PeerLinkError.ProtocolViolation, error.Error);
            await a.DisposeAsync();
        }
    }

    [Fact]
    public async Task BadOptionsAreNamed()
    {
        (PeerConnection a, _) = PeerConnection.CreatePair();
        await Assert.ThrowsAsync<ArgumentException>("options", () => SecureSession.ConnectAsync(a, new SecureSessionOptions()));
        Assert.Throws<ArgumentException>("key", () => new NetworkKey(new byte[16]));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>("options", () => SecureSession.ConnectAsync(a, SessionPair.Options(Alice, o => o.IdleTimeout = o.KeepAliveInterval)));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>("options", () => SecureSession.ConnectAsync(a, SessionPair.Options(Alice, o => o.MaxMessageSize = 0)));
        await Assert.ThrowsAsync<ArgumentNullException>("connection", () => SecureSession.AcceptAsync(null!, SessionPair.Options(Alice)));
    }

    private static async Task<(PeerLinkException Initiator, PeerLinkException Responder)> FailBothAsync(
        Func<PeerConnection, Task<SecureSession>> connect, Func<PeerConnection, Task<SecureSession>> accept)
    {
        (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
        Task<SecureSession> accepting = accept(b);
        Task<SecureSession> connecting = connect(a);
        var initiator = await Assert.ThrowsAsync<PeerLinkException>(() => connecting.WaitAsync(Limit));
        var responder = await Assert.ThrowsAsync<PeerLinkException>(() => accepting.WaitAsync(Limit));
        return (initiator, responder);
    }
}
