using System;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;

namespace PeerLink.Benchmarks;

/// <summary>
/// 16 KiB messages one way on loopback, in one run: a direct session (the baseline), the same pair relayed end to
/// end through a rendezvous node (the node splices the two TCP connections; the devices run the path layer), and a
/// session that moved from the relay to a direct TCP path (the path layer on a direct connection), and the direct
/// session led through <see cref="BareForwarder"/> (copying, then splicing): the floor for any relay on these cores.
/// All are ChaCha20-Poly1305 sessions between the same two identities; the node runs in this process.
/// </summary>
public class RelayThroughputBenchmarks
{
    private const int Messages = 1000;
    private readonly SemaphoreSlim _directDone = new(0);
    private readonly SemaphoreSlim _relayedDone = new(0);
    private readonly SemaphoreSlim _upgradedDone = new(0);
    private readonly SemaphoreSlim _forwardedDone = new(0);
    private readonly SemaphoreSlim _splicedDone = new(0);
    private BareForwarder _forwarder = null!;
    private BareForwarder _splicer = null!;
    private SecureSession _forwarded = null!;
    private SecureSession _spliced = null!;
    private PeerIdentity _alice = null!;
    private PeerIdentity _bob = null!;
    private PeerIdentity _node = null!;
    private RendezvousServer _server = null!;
    private PeerNode _aliceNode = null!;
    private PeerNode _bobNode = null!;
    private PeerNode _aliceUpgrading = null!;
    private PeerNode _bobUpgrading = null!;
    private SecureSession _direct = null!;
    private SecureSession _relayed = null!;
    private SecureSession _upgraded = null!;
    private byte[] _payload = null!;

    [Params(16 * 1024)]
    public int MessageSize { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _payload = new byte[MessageSize];
        _alice = PeerIdentity.Generate();
        _bob = PeerIdentity.Generate();
        _node = PeerIdentity.Generate();
        _server = await RendezvousServer.StartAsync(_node, new RendezvousServerOptions
        {
            ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            StunPort = 0,
            MaxRelayBytes = long.MaxValue,
            MaxRelayDuration = TimeSpan.FromDays(1),
        });

        // Relayed only (and direct, by address, on the same nodes).
        _aliceNode = await Device(_alice, upgrade: false).StartAsync();
        _bobNode = await Device(_bob, upgrade: false).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
        await _aliceNode.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync();
        await _bobNode.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync();
        _direct = await _aliceNode.ConnectAsync(_bobNode.LocalEndPoints[0], _bob.PeerId);
        _ = CountAsync((await _bobNode.AcceptAsync())!, _directDone);
        _relayed = await _aliceNode.ConnectAsync(_bob.PeerId);
        _ = CountAsync((await _bobNode.AcceptAsync())!, _relayedDone);

        // The direct session's TCP through the least a TCP-terminating relay can do (copy loop, then kernel splice).
        _forwarder = new BareForwarder(_bobNode.LocalEndPoints[0], splice: false);
        _forwarded = await _aliceNode.ConnectAsync(_forwarder.EndPoint, _bob.PeerId);
        _ = CountAsync((await _bobNode.AcceptAsync())!, _forwardedDone);
        _splicer = new BareForwarder(_bobNode.LocalEndPoints[0], splice: true);
        _spliced = await _aliceNode.ConnectAsync(_splicer.EndPoint, _bob.PeerId);
        _ = CountAsync((await _bobNode.AcceptAsync())!, _splicedDone);

        // Relayed, then moved to a punched direct path (loopback candidates only).
        _aliceUpgrading = await Device(_alice, upgrade: true).StartAsync();
        _bobUpgrading = await Device(_bob, upgrade: true).StartAsync();
        await _aliceUpgrading.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync();
        await _bobUpgrading.GetComponent<RendezvousClient>()!.WaitForAttachmentAsync();
        var direct = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _upgraded = await _aliceUpgrading.ConnectAsync(_bob.PeerId);
        _upgraded.PathChanged += (_, path) =>
        {
            if (path.Kind == SessionPathKind.DirectTcp)
            {
                direct.TrySetResult();
            }
        };
        _ = CountAsync((await _bobUpgrading.AcceptAsync())!, _upgradedDone);
        if (_upgraded.Path.Kind != SessionPathKind.DirectTcp)
        {
            await direct.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        await _aliceNode.DisposeAsync();
        await _bobNode.DisposeAsync();
        await _aliceUpgrading.DisposeAsync();
        await _bobUpgrading.DisposeAsync();
        await _server.DisposeAsync();
        _forwarder.Dispose();
        _splicer.Dispose();
        _alice.Dispose();
        _bob.Dispose();
        _node.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Messages)]
    public Task DirectSession() => SendAsync(_direct, _directDone);

    [Benchmark(OperationsPerInvoke = Messages)]
    public Task RelayedSession() => SendAsync(_relayed, _relayedDone);

    [Benchmark(OperationsPerInvoke = Messages)]
    public Task UpgradedSession() => SendAsync(_upgraded, _upgradedDone);

    /// <summary>The direct session through <see cref="BareForwarder"/> copying in user space: a floor for any relay.</summary>
    [Benchmark(OperationsPerInvoke = Messages)]
    public Task ForwardedSession() => SendAsync(_forwarded, _forwardedDone);

    /// <summary>The direct session through <see cref="BareForwarder"/> with kernel splice: the floor without copies.</summary>
    [Benchmark(OperationsPerInvoke = Messages)]
    public Task SplicedSession() => SendAsync(_spliced, _splicedDone);

    /// <summary>One session's benchmark body in a loop for <paramref name="seconds"/>, with counts per message.</summary>
    public static async Task LoopAsync(string which, int seconds)
    {
        var b = new RelayThroughputBenchmarks { MessageSize = 16 * 1024 };
        await b.SetupAsync();
        Func<Task> body = which switch
        {
            "direct" => b.DirectSession,
            "relayed" => b.RelayedSession,
            "upgraded" => b.UpgradedSession,
            "forwarded" => b.ForwardedSession,
            "spliced" => b.SplicedSession,
            _ => throw new ArgumentException("direct, relayed, upgraded, forwarded or spliced", nameof(which)),
        };
        LoopResult r = await LoopResult.RunAsync(body, Messages, seconds);
        Console.WriteLine($"{which}: {r.Messages} messages, {r.PerMessage(r.Elapsed):F2} us per message, " +
            $"{r.WorkItems / (double)r.Messages:F3} thread-pool work items per message, pid {Environment.ProcessId}");
        await b.CleanupAsync();
    }

    private PeerNodeBuilder Device(PeerIdentity identity, bool upgrade) =>
        new PeerNodeBuilder(identity).UseRendezvous(_server.EndPoint, _server.PeerId, o =>
        {
            o.UpgradeToDirect = upgrade;
            o.PunchUdp = false;   // TCP paths only: the upgraded session is the path layer on a direct TCP socket
            o.PunchAddresses = [IPAddress.Loopback];
        });

    private async Task SendAsync(SecureSession session, SemaphoreSlim done)
    {
        for (int i = 0; i < Messages; i++)
        {
            await session.SendAsync(_payload);
        }

        await done.WaitAsync();
    }

    private static Task CountAsync(SecureSession accepted, SemaphoreSlim done) => SessionThroughputBenchmarks.CountAsync(accepted, done, Messages);
}
