using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading.Tasks;
using PeerLink.Discovery;
using PeerLink.Sessions;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.Tests.Diagnostics;

/// <summary>Tests that read the process-wide "PeerLink" meter and activity source: they run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TelemetryCollection
{
    public const string Name = "Telemetry (alone)";
}

/// <summary>The metrics and spans of sessions and handshakes (docs/observability.md), on in-memory connections.</summary>
[Collection(TelemetryCollection.Name)]
public sealed class TelemetryTests : PeerIdentities
{
    [Fact]
    public async Task AnIkSessionCountsItsHandshakesSessionsMessagesAndBytes()
    {
        using var recorder = new TelemetryRecorder();
        await using (SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true))
        {
            Assert.Equal(1, recorder.Sum("peerlink.session.active", ("peerlink.direction", "outbound")));
            Assert.Equal(1, recorder.Sum("peerlink.session.active", ("peerlink.direction", "inbound")));
            for (int i = 0; i < 10; i++)
            {
                await pair.Initiator.SendAsync(new byte[100 + i]);
            }

            for (int i = 0; i < 10; i++)
            {
                Assert.Equal(100 + i, (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(SessionPair.Limit))!.Value.Length);
            }

            await pair.Initiator.CloseAsync().WaitAsync(SessionPair.Limit);
            Assert.Null(await pair.Responder.ReceiveAsync().AsTask().WaitAsync(SessionPair.Limit));
            await pair.Responder.Completion.WaitAsync(SessionPair.Limit);
            await pair.Initiator.Completion.WaitAsync(SessionPair.Limit);
        }

        Assert.Equal(1, recorder.Sum("peerlink.handshakes", ("peerlink.noise.pattern", "IK"), ("peerlink.direction", "outbound"), ("peerlink.outcome", "success")));
        Assert.Equal(1, recorder.Sum("peerlink.handshakes", ("peerlink.noise.pattern", "IK"), ("peerlink.direction", "inbound"), ("peerlink.outcome", "success")));
        Assert.Equal(2, recorder.Count("peerlink.handshake.duration", ("peerlink.outcome", "success")));
        Assert.All(recorder.Measurements.Where(m => m.Instrument == "peerlink.handshake.duration"), m => Assert.InRange(m.Value, 1e-6, SessionPair.Limit.TotalSeconds));
        Assert.Equal(2, recorder.Sum("peerlink.session.opened", ("peerlink.noise.pattern", "IK")));
        Assert.Equal(10, recorder.Sum("peerlink.messages.sent"));
        Assert.Equal(10, recorder.Sum("peerlink.messages.received"));
        Assert.Equal(10 * 100 + 45, recorder.Sum("peerlink.bytes.sent"));
        Assert.Equal(10 * 100 + 45, recorder.Sum("peerlink.bytes.received"));

        // Both ends closed gracefully; the count of open sessions is back where it started.
        await WaitUntilAsync(() => recorder.Sum("peerlink.session.closed") == 2);
        Assert.Equal(2, recorder.Sum("peerlink.session.closed", ("peerlink.close.reason", "closed")));
        Assert.Equal(0, recorder.Sum("peerlink.session.active"));
    }

    [Fact]
    public async Task ARefusedPeerIsCountedWithItsCodeOnBothSides()
    {
        using var recorder = new TelemetryRecorder();
        PeerLinkException refused = await Assert.ThrowsAsync<PeerLinkException>(() => SessionPair.OpenAsync(Alice, Bob, ik: false,
            configureResponder: o => o.AllowedPeers = new HashSet<PeerId> { Mallory.PeerId }));
        Assert.Equal(PeerLinkError.PeerRefused, refused.Error);

        Assert.Equal(1, recorder.Sum("peerlink.handshakes", ("peerlink.noise.pattern", "XX"), ("peerlink.direction", "inbound"), ("peerlink.outcome", "PeerRefused")));
        Assert.Equal(1, recorder.Sum("peerlink.handshakes", ("peerlink.direction", "outbound"), ("peerlink.outcome", "PeerRefused")));
        Assert.Equal(0, recorder.Sum("peerlink.handshakes", ("peerlink.outcome", "success")));
        Assert.Equal(0, recorder.Sum("peerlink.session.opened"));
    }

    [Fact]
    public async Task TheHandshakeSpanNamesThePeerByPeerIdAndCarriesNoKey()
    {
        using var recorder = new TelemetryRecorder();
        await using (SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true))
        {
        }

        Activity[] spans = recorder.SpansNamed("peerlink.handshake").ToArray();
        Assert.Equal(2, spans.Length);
        Activity client = Assert.Single(spans, s => s.Kind == ActivityKind.Client);
        Activity server = Assert.Single(spans, s => s.Kind == ActivityKind.Server);
        Assert.Equal(Bob.PeerId.ToString(), client.GetTagItem("peerlink.peer.id"));
        Assert.Equal(Alice.PeerId.ToString(), server.GetTagItem("peerlink.peer.id"));
        Assert.Equal("IK", client.GetTagItem("peerlink.noise.pattern"));
        Assert.Equal("success", client.GetTagItem("peerlink.outcome"));

        // No tag holds a private key, in any common text form.
        string[] secrets = [.. new[] { Alice, Bob }.SelectMany(Secrets)];
        foreach (Activity span in spans)
        {
            foreach (KeyValuePair<string, object?> tag in span.TagObjects)
            {
                string text = tag.Value?.ToString() ?? "";
                Assert.DoesNotContain(secrets, secret => text.Contains(secret, StringComparison.OrdinalIgnoreCase));
            }
        }
    }

    [Fact]
    public async Task MdnsMessagesAreCountedByDirectionAndKind()
    {
        using var recorder = new TelemetryRecorder();
        var net = new MdnsTestNetwork();
        await using ServiceDiscovery a = net.Node("10.0.0.1", "host-a");
        await using ServiceDiscovery b = net.Node("10.0.0.2", "host-b");
        net.Clock.Advance(TimeSpan.FromSeconds(3));   // both host names are probed and announced

        var packets = net.Messages().ToList();
        int queries = packets.Count(p => !p.Message.IsResponse);
        int responses = packets.Count(p => p.Message.IsResponse);
        Assert.True(queries > 0 && responses > 0);
        Assert.Equal(queries, recorder.Sum("peerlink.mdns.messages", ("peerlink.direction", "sent"), ("peerlink.mdns.kind", "query")));
        Assert.Equal(responses, recorder.Sum("peerlink.mdns.messages", ("peerlink.direction", "sent"), ("peerlink.mdns.kind", "response")));
        Assert.True(recorder.Sum("peerlink.mdns.messages", ("peerlink.direction", "received"), ("peerlink.mdns.kind", "query")) >= queries, "each node hears the other's probes");
    }

    private static IEnumerable<string> Secrets(PeerIdentity identity)
    {
        byte[] key = new byte[32];
        identity.ExportPrivateKey(key);
        yield return Convert.ToHexString(key);
        yield return Convert.ToBase64String(key);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        // The close is counted by a continuation of the session's completion: wait for it, not for a time.
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < SessionPair.Limit, "the condition did not become true");
            await Task.Yield();
        }
    }
}
