// Moves a relayed session to a direct TCP path (docs/nat-traversal.md §4), in the manner of libp2p DCUtR: inside the
// session, the callee sends its candidates, the caller answers with its own, the callee takes the time of that round
// trip, sends SYNC and waits half of it; then both punch at once. Up to three attempts, then one a minute while the
// session stays relayed, and one at once after a network change or when a direct path dies.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.NetworkInformation;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Sessions;
using PeerLink.Transport;

namespace PeerLink.Nat.Rendezvous;

internal sealed class PathUpgrader
{
    private const int MaxAttemptsKept = 16;
    private const int QuickAttempts = 3;

    private readonly SecureSession _session;
    private readonly MigratingConnection _connection;
    private readonly RendezvousClientOptions _options;
    private readonly Func<IPEndPoint?> _stunServer;
    private readonly string _rendezvous;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly bool _driver;
    private readonly bool _speakFirst;
    private readonly Channel<PathMessage> _inbox = Channel.CreateBounded<PathMessage>(new BoundedChannelOptions(16) { FullMode = BoundedChannelFullMode.DropOldest });
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly List<PathAttempt> _attempts = [];
    private readonly SemaphoreSlim _attemptGate = new(1, 1);
    private TaskCompletionSource<(PathCandidates Candidates, long At)>? _awaitingCandidates;
    private (PunchPreparation Preparation, PathCandidates Theirs)? _responderAttempt;
    private ITimer? _retry;
    private int _attemptNumber;
    private int _failedInARow;
    private bool _direct;

    public PathUpgrader(SecureSession session, MigratingConnection connection, PeerId self, RendezvousClientOptions options, Func<IPEndPoint?> stunServer, string rendezvous, ILoggerFactory loggerFactory, TimeProvider time)
    {
        _session = session;
        _connection = connection;
        _options = options;
        _stunServer = stunServer;
        _rendezvous = rendezvous;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<PathUpgrader>();
        _time = time;
        _driver = !session.IsInitiator;                 // the callee drives, as in DCUtR
        _speakFirst = self.CompareTo(session.RemotePeerId) < 0;   // roles on the punched connection come from PeerId order
    }

    public void Start()
    {
        SetPath(SessionPathKind.Relayed, $"relayed through rendezvous node {_rendezvous}: looking for a direct path");
        _session.SetPathSignalHandler(OnSignal);
        _connection.PathDied += OnPathDied;
        NetworkChange.NetworkAddressChanged += OnNetworkChanged;
        _ = _session.Completion.ContinueWith(static (_, state) => ((PathUpgrader)state!).Stop(), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        _ = Task.Run(ReceiveLoopAsync);
        if (_driver)
        {
            _ = Task.Run(() => AttemptsAsync(QuickAttempts));
        }
    }

    private void Stop()
    {
        NetworkChange.NetworkAddressChanged -= OnNetworkChanged;
        _connection.PathDied -= OnPathDied;
        _inbox.Writer.TryComplete();
        lock (_gate)
        {
            _retry?.Dispose();
            _retry = null;
            _awaitingCandidates?.TrySetCanceled();
            _responderAttempt?.Preparation.Dispose();
            _responderAttempt = null;
        }

        _stop.Cancel();
    }

    private void OnSignal(byte[] body)
    {
        try
        {
            _inbox.Writer.TryWrite(PathMessage.Deserialize(body));
        }
        catch (PeerLinkException)
        {
            // A message of a newer version, or garbage from a peer we authenticated: either way not ours to act on.
        }
    }

    private void OnNetworkChanged(object? sender, EventArgs e)
    {
        if (_driver && !_direct)
        {
            _ = Task.Run(() => AttemptsAsync(1));
        }
    }

    /// <summary>
    /// The direct path died (whether or not this side's data had moved onto it yet): the data is back on the relay; say
    /// so and try again.
    /// </summary>
    private void OnPathDied(string kind)
    {
        if (kind != "direct-tcp" || !_direct)
        {
            return;
        }

        _direct = false;
        SetPath(SessionPathKind.Relayed, $"relayed through rendezvous node {_rendezvous}: the direct path failed; looking for another");
        if (_driver)
        {
            _ = Task.Run(() => AttemptsAsync(QuickAttempts));
        }
    }

    private async Task ReceiveLoopAsync()
    {
        try
        {
            await foreach (PathMessage message in _inbox.Reader.ReadAllAsync(_stop.Token).ConfigureAwait(false))
            {
                switch (message)
                {
                    case PathCandidates candidates when _driver:
                        lock (_gate)
                        {
                            _awaitingCandidates?.TrySetResult((candidates, _time.GetTimestamp()));
                        }

                        break;
                    case PathCandidates candidates:
                        await AnswerCandidatesAsync(candidates).ConfigureAwait(false);
                        break;
                    case PathSync sync when !_driver:
                        (PunchPreparation Preparation, PathCandidates Theirs)? attempt;
                        lock (_gate)
                        {
                            attempt = _responderAttempt?.Theirs.Attempt == sync.Attempt ? _responderAttempt : null;
                            _responderAttempt = null;
                        }

                        if (attempt is { } go)
                        {
                            _ = Task.Run(() => PunchAndApplyAsync(go.Preparation, go.Theirs, sync.Attempt, delay: TimeSpan.Zero));
                        }

                        break;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>The caller's side: prepare, answer with our candidates, and wait for SYNC.</summary>
    private async Task AnswerCandidatesAsync(PathCandidates theirs)
    {
        if (theirs.Token is not { Length: RendezvousWire.TokenLength })
        {
            return;
        }

        PunchPreparation preparation = await TcpPunch.PrepareAsync(_stunServer(), _options.PunchAddresses, _loggerFactory, _stop.Token).ConfigureAwait(false);
        lock (_gate)
        {
            _responderAttempt?.Preparation.Dispose();
            _responderAttempt = (preparation, theirs);
        }

        Send(new PathCandidates(theirs.Attempt, preparation.Token, [.. preparation.Candidates.Select(c => c.ToString())], preparation.Observed?.ToString()));
    }

    /// <summary>The callee's side: up to <paramref name="count"/> attempts, one at a time; then one a minute while relayed.</summary>
    private async Task AttemptsAsync(int count)
    {
        if (!await _attemptGate.WaitAsync(0).ConfigureAwait(false))
        {
            return;   // an attempt is under way
        }

        try
        {
            for (int i = 0; i < count && !_direct && !_stop.IsCancellationRequested; i++)
            {
                await AttemptAsync().ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            return;
        }
        finally
        {
            _attemptGate.Release();
        }

        if (!_direct && !_stop.IsCancellationRequested)
        {
            lock (_gate)
            {
                _retry?.Dispose();
                _retry = _time.CreateTimer(static s => _ = Task.Run(() => ((PathUpgrader)s!).AttemptsAsync(1)), this, _options.DirectRetryInterval, Timeout.InfiniteTimeSpan);
            }
        }
    }

    private async Task AttemptAsync()
    {
        int number = Interlocked.Increment(ref _attemptNumber);
        PunchPreparation preparation = await TcpPunch.PrepareAsync(_stunServer(), _options.PunchAddresses, _loggerFactory, _stop.Token).ConfigureAwait(false);
        var answered = new TaskCompletionSource<(PathCandidates Candidates, long At)>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            _awaitingCandidates = answered;
        }

        long sentAt = _time.GetTimestamp();
        Send(new PathCandidates(number, preparation.Token, [.. preparation.Candidates.Select(c => c.ToString())], preparation.Observed?.ToString()));
        (PathCandidates Candidates, long At) answer;
        try
        {
            do
            {
                answer = await answered.Task.WaitAsync(_options.PunchTimeout, _time, _stop.Token).ConfigureAwait(false);
                if (answer.Candidates.Attempt != number)
                {
                    answered = new TaskCompletionSource<(PathCandidates, long)>(TaskCreationOptions.RunContinuationsAsynchronously);
                    lock (_gate)
                    {
                        _awaitingCandidates = answered;
                    }
                }
            }
            while (answer.Candidates.Attempt != number);
        }
        catch (TimeoutException)
        {
            preparation.Dispose();
            Record(number, PathAttemptOutcome.Cancelled, "the peer did not answer with its candidates");
            return;
        }

        TimeSpan rtt = _time.GetElapsedTime(sentAt, answer.At);
        Send(new PathSync(number));
        await PunchAndApplyAsync(preparation, answer.Candidates, number, delay: TimeSpan.FromTicks(Math.Min(rtt.Ticks / 2, TimeSpan.FromMilliseconds(500).Ticks))).ConfigureAwait(false);
    }

    private async Task PunchAndApplyAsync(PunchPreparation preparation, PathCandidates theirs, int number, TimeSpan delay)
    {
        using (preparation)
        {
            if (theirs.Token is not { Length: RendezvousWire.TokenLength })
            {
                return;
            }

            var candidates = new List<IPEndPoint>();
            foreach (string address in theirs.Addresses ?? [])
            {
                if (IPEndPoint.TryParse(address, out IPEndPoint? endPoint) && endPoint.Port != 0 && candidates.Count < 16)
                {
                    candidates.Add(endPoint);
                }
            }

            if (delay > TimeSpan.Zero)
            {
                await Task.Delay(delay, _time, _stop.Token).ConfigureAwait(false);   // half a round trip: the SYNC's flight
            }

            PunchResult result = await TcpPunch.PunchAsync(preparation, candidates, theirs.Token, _speakFirst, _options.PunchTimeout, new TcpTransportOptions(), _logger, _stop.Token).ConfigureAwait(false);
            if (result.Connection is { } connection)
            {
                _direct = true;
                _failedInARow = 0;
                Record(number, result.Reversed ? PathAttemptOutcome.Reversed : PathAttemptOutcome.Success, result.Detail);
                _connection.AddPathAndMove(connection, "direct-tcp");
                SetPath(SessionPathKind.DirectTcp, $"direct-tcp {result.Detail}");
                return;
            }

            _failedInARow++;
            Record(number, PathAttemptOutcome.NoConnection, result.Detail);
            string nat = $"{Describe("the peer", theirs.Observed, candidates)}; {Describe("this device", preparation.Observed?.ToString(), preparation.Candidates)}";
            SetPath(SessionPathKind.Relayed, $"relayed through rendezvous node {_rendezvous}: {_failedInARow} punch attempt(s) failed ({result.Detail}; {nat}); "
                + (_failedInARow >= QuickAttempts ? $"next try in {_options.DirectRetryInterval.TotalSeconds} s" : "trying again"));
        }
    }

    /// <summary>
    /// What a side's candidates say about its NAT, in words a user can act on: a public port other than the one the
    /// device bound means the NAT chose a new port, as a symmetric NAT does for every destination (port-preserving NATs
    /// keep it). A hint, not a classification: RFC 5780 discovery over UDP gives that.
    /// </summary>
    private static string Describe(string who, string? observed, IReadOnlyList<IPEndPoint> candidates)
    {
        if (observed is null || !IPEndPoint.TryParse(observed, out IPEndPoint? reflexive))
        {
            return $"{who} learned no public address";
        }

        int local = candidates.FirstOrDefault(c => !c.Equals(reflexive))?.Port ?? reflexive.Port;
        return reflexive.Port == local || candidates.All(c => c.Equals(reflexive))
            ? $"{who} is seen at {reflexive}"
            : $"{who} is seen at {reflexive}, not at its own port {local}: its NAT picks new ports, perhaps for every destination (symmetric)";
    }

    private void Send(PathMessage message)
    {
        try
        {
            _session.SendPathSignal(PathMessage.Serialize(message));
        }
        catch (Exception e) when (e is PeerLinkException or ArgumentException)
        {
            // The session is ending; its own error says why.
        }
    }

    private void Record(int number, PathAttemptOutcome outcome, string detail)
    {
        lock (_gate)
        {
            _attempts.Add(new PathAttempt(_time.GetUtcNow(), number, outcome, detail));
            if (_attempts.Count > MaxAttemptsKept)
            {
                _attempts.RemoveAt(0);
            }
        }

        RendezvousLog.PunchAttempt(_logger, _session.RemotePeerId.ToFingerprint(), number, outcome, detail);
    }

    private void SetPath(SessionPathKind kind, string description)
    {
        PathAttempt[] attempts;
        lock (_gate)
        {
            attempts = [.. _attempts];
        }

        _connection.PathInfo = new SessionPath(kind, description, attempts);
        RendezvousLog.PathChanged(_logger, _session.RemotePeerId.ToFingerprint(), description);
    }
}
