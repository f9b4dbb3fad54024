using System;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Sessions;
using PeerLink.Transport;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.Sessions;

/// <summary>
/// A hand-driven initiator sends what a real peer never would. Each case must end that session with the right
/// <see cref="PeerLinkException"/> code, without a crash or a hang, and after delivering what came before intact.
/// </summary>
public sealed class SessionHostileInputTests : PeerIdentities
{
    private static readonly TimeSpan Limit = SessionPair.Limit;

    [Fact]
    public async Task AnAlteredMessageFailsAuthentication()
    {
        await using Harness h = await Harness.StartAsync(Mallory, Bob);
        await h.SendAlteredAsync(RawInitiator.Record(SessionWire.Data, 0, "hello"u8));

        PeerLinkException error = await h.FailureAsync();

        Assert.Equal(PeerLinkError.DecryptionFailed, error.Error);
    }

    [Fact]
    public async Task AReplayedMessageFailsAuthenticationAfterTheOriginalIsDelivered()
    {
        await using Harness h = await Harness.StartAsync(Mallory, Bob);
        byte[] sent = await h.Raw.SendPlaintextAsync(RawInitiator.Record(SessionWire.Data, 0, "once"u8));
        await h.Raw.Output.WriteAsync(sent);   // the same bytes again

        PeerMessage? first = await h.Session.ReceiveAsync().AsTask().WaitAsync(Limit);
        PeerLinkException error = await h.FailureAsync();

        Assert.Equal("once"u8.ToArray(), first!.Value.Payload.ToArray());
        Assert.Equal(PeerLinkError.DecryptionFailed, error.Error);
    }

    [Fact]
    public async Task ReorderedMessagesFailAuthentication()
    {
        await using Harness h = await Harness.StartAsync(Mallory, Bob);
        byte[] one = await h.Raw.EncryptAsync(RawInitiator.Record(SessionWire.Data, 0, "1"u8));
        byte[] two = await h.Raw.EncryptAsync(RawInitiator.Record(SessionWire.Data, 0, "2"u8));
        await h.Raw.Output.WriteAsync((byte[])[.. two, .. one]);   // one write: a second would race the session's failure

        Assert.Equal(PeerLinkError.DecryptionFailed, (await h.FailureAsync()).Error);
    }

    [Theory]
    [InlineData(new byte[] { 0x01, 0x00, 0x00 }, "truncated")]                       // a record header cut short
    [InlineData(new byte[] { 0x01, 0x00, 0x00, 0x09, 0x41 }, "claims 9 bytes")]       // a record longer than its message
    [InlineData(new byte[] { 0x42, 0x00, 0x00, 0x00 }, "Unknown record type 0x42")]
    [InlineData(new byte[] { 0x05, 0x00, 0x00, 0x00 }, "unexpected ACCEPT")]
    [InlineData(new byte[] { 0x06, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00 }, "REKEY must be the last")]
    [InlineData(new byte[] { 0x01, 0x02, 0x00, 0x02, 0x00, 0x01 }, "without its id")]
    public async Task MalformedRecordsAreProtocolViolations(byte[] plaintext, string reason)
    {
        await using Harness h = await Harness.StartAsync(Mallory, Bob);
        await h.Raw.SendPlaintextAsync(plaintext);

        PeerLinkException error = await h.FailureAsync();

        Assert.Equal(PeerLinkError.ProtocolViolation, error.Error);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IgnorableUnknownRecordsAreSkipped()
    {
        await using Harness h = await Harness.StartAsync(Mallory, Bob);
        await h.Raw.SendPlaintextAsync([.. RawInitiator.Record(0xC3, 0, "future"u8), .. RawInitiator.Record(SessionWire.Data, 0, "now"u8)]);

        PeerMessage? message = await h.Session.ReceiveAsync().AsTask().WaitAsync(Limit);

        Assert.Equal("now"u8.ToArray(), message!.Value.Payload.ToArray());
    }

    [Fact]
    public async Task AMessageOverTheLimitClosesTheSessionWithoutBufferingIt()
    {
        await using Harness h = await Harness.StartAsync(Mallory, Bob, o => o.MaxMessageSize = 100_000);
        byte[] chunk = new byte[60_000];
        await h.Raw.SendPlaintextAsync(RawInitiator.Record(SessionWire.Data, SessionWire.More, chunk));
        await h.Raw.SendPlaintextAsync(RawInitiator.Record(SessionWire.Data, SessionWire.More, chunk));

        PeerLinkException error = await h.FailureAsync();
        byte[] close = await h.Raw.ReceivePlaintextAsync();   // the session tells the peer why

        Assert.Equal(PeerLinkError.MessageTooLarge, error.Error);
        Assert.Equal(SessionWire.Close, close[0]);
        Assert.Equal((byte)SessionCloseCode.MessageTooLarge, close[4]);
    }

    [Fact]
    public async Task AMessageShorterThanItsTagIsAProtocolViolation()
    {
        await using Harness h = await Harness.StartAsync(Mallory, Bob);
        await h.Raw.WriteFrameAsync(new byte[5]);

        Assert.Equal(PeerLinkError.ProtocolViolation, (await h.FailureAsync()).Error);
    }

    [Fact]
    public async Task AConnectionCutMidMessageIsTruncation()
    {
        await using Harness h = await Harness.StartAsync(Mallory, Bob);
        byte[] framed = await h.Raw.EncryptAsync(RawInitiator.Record(SessionWire.Data, 0, new byte[500]));
        await h.Raw.Output.WriteAsync(framed.AsMemory(0, 200));
        await h.Raw.Output.CompleteAsync();

        PeerLinkException error = await h.FailureAsync();

        Assert.Equal(PeerLinkError.Truncated, error.Error);
    }

    [Fact]
    public async Task AnythingAfterCloseIsAProtocolViolation()
    {
        await using Harness h = await Harness.StartAsync(Mallory, Bob);
        await h.Raw.SendPlaintextAsync([.. RawInitiator.Record(SessionWire.Close, 0, [0]), .. RawInitiator.Record(SessionWire.Data, 0, "late"u8)]);

        PeerLinkException error = await h.FailureAsync();

        Assert.Equal(PeerLinkError.ProtocolViolation, error.Error);
        Assert.Contains("after its CLOSE", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASilentPeerIsDeclaredDeadAfterTheIdleTimeout()
    {
        var clock = new FakeTimeProvider();
        await using Harness h = await Harness.StartAsync(Mallory, Bob, o => o.TimeProvider = clock);   // keepalive 15 s, idle 45 s

        clock.Advance(TimeSpan.FromSeconds(15));
        byte[] ping = await h.Raw.ReceivePlaintextAsync().WaitAsync(Limit);   // the session probes the silent peer first
        Assert.Equal(SessionWire.Ping, ping[0]);
        Assert.False(h.Session.Completion.IsCompleted);

        clock.Advance(TimeSpan.FromSeconds(30));       // 45 s without a byte from the peer: not yet over the limit
        Assert.False(h.Session.Completion.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(7.5));      // the next keepalive tick finds it over
        PeerLinkException error = await h.FailureAsync();

        Assert.Equal(PeerLinkError.PeerTimeout, error.Error);
    }

    [Fact]
    public async Task APeerThatAnswersPingsStaysAlive()
    {
        var clock = new FakeTimeProvider();
        await using Harness h = await Harness.StartAsync(Mallory, Bob, o =>
        {
            o.TimeProvider = clock;
            o.RekeyInterval = TimeSpan.FromHours(1);    // the raw peer does not follow rekeys; they are tested elsewhere
        });

        // Ten keepalive intervals, 150 s, more than three idle timeouts: every PING is answered, and the session lives.
        for (int i = 0; i < 10; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(15));
            byte[] ping = await h.Raw.ReceivePlaintextAsync().WaitAsync(Limit);
            Assert.Equal(SessionWire.Ping, ping[0]);

            // The PONG and a message behind it: once the message is received, the session has seen the PONG too.
            await h.Raw.SendPlaintextAsync([.. RawInitiator.Record(SessionWire.Pong, 0, default), .. RawInitiator.Record(SessionWire.Data, 0, [(byte)i])]);
            PeerMessage message = (await h.Session.ReceiveAsync().AsTask().WaitAsync(Limit))!.Value;
            Assert.Equal(i, message.Payload.Span[0]);
        }

        Assert.False(h.Session.Completion.IsCompleted);
    }

    private sealed class Harness : IAsyncDisposable
    {
        private Harness(RawInitiator raw, SecureSession session)
        {
            Raw = raw;
            Session = session;
        }

        public RawInitiator Raw { get; }

        public SecureSession Session { get; }

        public static async Task<Harness> StartAsync(PeerIdentity initiator, PeerIdentity responder, Action<SecureSessionOptions>? configure = null)
        {
            (PeerConnection a, PeerConnection b) = PeerConnection.CreatePair();
            Task<SecureSession> accept = SecureSession.AcceptAsync(b, SessionPair.Options(responder, configure));
            var raw = new RawInitiator(a);
            await raw.HandshakeAsync(initiator).WaitAsync(Limit);
            await raw.SendPlaintextAsync(RawInitiator.Record(SessionWire.Accept, 0, default));
            return new Harness(raw, await accept.WaitAsync(Limit));
        }

        public async Task SendAlteredAsync(byte[] plaintext)
        {
            byte[] framed = await Raw.EncryptAsync(plaintext);
            framed[^1] ^= 0x01;
            await Raw.Output.WriteAsync(framed);
        }

        /// <summary>Waits for the session to fail and returns why; every receive then reports the same failure.</summary>
        public async Task<PeerLinkException> FailureAsync()
        {
            PeerLinkException error = await Assert.ThrowsAsync<PeerLinkException>(() => Session.Completion.WaitAsync(Limit));
            while (true)
            {
                try
                {
                    if (await Session.ReceiveAsync().AsTask().WaitAsync(Limit) is null)
                    {
                        throw new Xunit.Sdk.XunitException("A failed session ended its messages as if closed gracefully.");
                    }
                }
                catch (PeerLinkException)
                {
                    return error;
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Raw.Output.CompleteAsync();   // the raw peer never answers a CLOSE: end its side instead
            Raw.Dispose();
            await Session.DisposeAsync().AsTask().WaitAsync(Limit);
        }
    }
}
