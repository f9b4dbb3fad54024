// Moves a relayed session to a direct TCP path (docs/nat-traversal.md §4), in the manner of libp2p DCUtR: inside the
// session, the callee sends its candidates, the caller answers with its own, the callee takes the time of that round
// trip, sends SYNC and waits half of it; then both punch at once. Up to three attempts, then one a minute while the
// session stays relayed, and one at once after a network change or when a direct path dies.
using System;
using System.Collections.Generic;
using System.Diagnostics;
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
    private readonly Lock _pathGate = new();   // a path's death and the news of it in order (handlers of PathChanged run under it)
    private readonly List<PathAttempt> _attempts = [];
    private readonly SemaphoreSlim _attemptGate = new(1, 1);
    private TaskCompletionSource<(PathCandidates Candidates, long At)>? _awaitingCandidates;
    /// <summary>How long birthday probing may take: HyperDHT's 1,750 checks, 20 ms apart.</summary>
    private static readonly TimeSpan BirthdayBudget = TimeSpan.FromSeconds(35);

    private readonly UdpTransport? _udp;
    private readonly BirthdayGate _birthdays;
    private int _udpFailures;
    private (Prepared Preparation, PathCandidates Theirs)? _responderAttempt;
    private ITimer? _retry;
    private int _attemptNumber;
    private int _failedInARow;
    private bool _direct;

    public PathUpgrader(SecureSession session, MigratingConnection connection, PeerId self, RendezvousClientOptions options, Func<IPEndPoint?> stunServer, string rendezvous, UdpTransport? udp, BirthdayGate birthdays, ILoggerFactory loggerFactory, TimeProvider time)
    {
        _udp = udp;
        _birthdays = birthdays;
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
        lock (_pathGate)
        {
            if (kind is not ("direct-tcp" or "direct-udp") || !_direct)
            {
                return;
            }

            _direct = false;
            SetPath(SessionPathKind.Relayed, $"relayed through rendezvous node {_rendezvous}: the direct path failed; looking for another");
        }

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
                        try
                        {
                            await AnswerCandidatesAsync(candidates).ConfigureAwait(false);
                        }
                        catch (Exception e) when (e is not OperationCanceledException)
                        {
                            Record(candidates.Attempt, PathAttemptOutcome.NoConnection, $"this side could not prepare: {e.Message}");   // the peer tries again
                        }

                        break;
                    case PathSync sync when !_driver:
                        (Prepared Preparation, PathCandidates Theirs)? attempt;
                        lock (_gate)
                        {
                            attempt = _responderAttempt?.Theirs.Attempt == sync.Attempt ? _responderAttempt : null;
                            _responderAttempt = null;
                        }

                        if (attempt is { } go)
                        {
                            _ = Task.Run(() => PunchOrRecordAsync(go.Preparation, go.Theirs, sync.Attempt, sync.Birthday));
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

        Prepared preparation = await PrepareAsync().ConfigureAwait(false);
        if (preparation.Udp is { } udp && theirs.UdpSecret is { Length: UdpPunch.SecretLength } secret)
        {
            udp.SetPeer(theirs.UdpIndex, secret, controlling: _driver);   // checks that come before SYNC are answered
        }

        lock (_gate)
        {
            _responderAttempt?.Preparation.Dispose();
            _responderAttempt = (preparation, theirs);
        }

        Send(preparation.ToCandidates(theirs.Attempt));
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
                try
                {
                    await AttemptAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // A failure of this side (STUN unreachable, a socket error): a failed attempt, not the end of them.
                    _failedInARow++;
                    Record(Volatile.Read(ref _attemptNumber), PathAttemptOutcome.NoConnection, $"the attempt failed on this side: {e.Message}");
                }
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
        Prepared preparation = await PrepareAsync().ConfigureAwait(false);
        var answered = new TaskCompletionSource<(PathCandidates Candidates, long At)>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            _awaitingCandidates = answered;
        }

        long sentAt = _time.GetTimestamp();
        Send(preparation.ToCandidates(number));
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
        bool birthday = _udpFailures > 0 && preparation.Udp is { } udp && RandomSides(udp, answer.Candidates) is (true, false) or (false, true);
        Send(new PathSync(number, birthday));
        await PunchAndApplyAsync(preparation, answer.Candidates, number, delay: TimeSpan.FromTicks(Math.Min(rtt.Ticks / 2, TimeSpan.FromMilliseconds(500).Ticks)), birthday).ConfigureAwait(false);
    }

    /// <summary>The peer's side of an attempt, on its own task: a failure is recorded (the driver tries again).</summary>
    private async Task PunchOrRecordAsync(Prepared preparation, PathCandidates theirs, int number, bool birthday)
    {
        try
        {
            await PunchAndApplyAsync(preparation, theirs, number, delay: TimeSpan.Zero, birthday).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Record(number, PathAttemptOutcome.NoConnection, $"the attempt failed on this side: {e.Message}");
        }
        catch (OperationCanceledException)
        {
            // The session ended.
        }
    }

    /// <summary>TCP and UDP preparations run side by side; either may be off by option.</summary>
    private async Task<Prepared> PrepareAsync()
    {
        IReadOnlyList<IPAddress> hosts = _options.PunchAddresses
            ?? (_udp is { } bound && !bound.LocalEndPoint.Address.Equals(IPAddress.Any) ? [bound.LocalEndPoint.Address] : TcpPunch.HostAddresses());
        Task<PunchPreparation>? tcp = _options.PunchTcp ? TcpPunch.PrepareAsync(_stunServer(), _options.PunchAddresses, _loggerFactory, _stop.Token) : null;
        Task<UdpPunch>? udp = _udp is not null ? UdpPunch.PrepareAsync(_udp, _stunServer(), hosts, _time, _stop.Token) : null;
        PunchPreparation? tcpPrepared = null;
        UdpPunch? udpPrepared = null;
        Exception? failure = null;
        if (tcp is not null)
        {
            try
            {
                tcpPrepared = await tcp.ConfigureAwait(false);
            }
            catch (Exception e)
            {
                failure = e;
            }
        }

        if (udp is not null)
        {
            try
            {
                udpPrepared = await udp.ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                // The client is closing: its UDP socket is gone.
            }
            catch (Exception e)
            {
                failure ??= e;
            }
        }

        if (failure is not null)
        {
            tcpPrepared?.Dispose();
            udpPrepared?.Dispose();
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }

        return new Prepared(tcpPrepared, udpPrepared);
    }

    /// <summary>
    /// Whether each side's NAT looks like one that picks a new port for every destination: its reflexive port is not the
    /// port its socket bound. A hint (a NAT that maps consistently but to other ports looks the same), used only after
    /// an ordinary attempt failed.
    /// </summary>
    private static (bool Mine, bool Theirs) RandomSides(UdpPunch mine, PathCandidates theirs)
    {
        bool mineRandom = mine.Observed is { } observed && mine.Candidates.Any(c => c.Kind == UdpCandidateKind.Host && c.EndPoint.Port != observed.Port);
        UdpCandidate[] parsed = [.. (theirs.UdpCandidates ?? []).Select(t => UdpCandidate.TryParse(t, out UdpCandidate c) ? c : default).Where(c => c.EndPoint is not null)];
        bool theirsRandom = parsed.Any(c => c.Kind == UdpCandidateKind.ServerReflexive) && parsed.Any(c => c.Kind == UdpCandidateKind.Host)
            && parsed.First(c => c.Kind == UdpCandidateKind.ServerReflexive).EndPoint.Port != parsed.First(c => c.Kind == UdpCandidateKind.Host).EndPoint.Port;
        return (mineRandom, theirsRandom);
    }

    /// <summary>The UDP half of an attempt: ordinary checks, or birthday probing in the role this side's NAT gives it.</summary>
    private Task<UdpPunchResult>? PunchUdp(Prepared preparation, PathCandidates theirs, List<UdpCandidate> candidates, bool birthday, out IDisposable? birthdayTurn)
    {
        birthdayTurn = null;
        if (preparation.Udp is not { } punch || _udp is null || theirs.UdpSecret is not { Length: UdpPunch.SecretLength } secret || candidates.Count == 0)
        {
            return null;
        }

        if (birthday && IPEndPoint.TryParse(theirs.UdpObserved ?? "", out IPEndPoint? observed) && _birthdays.TryEnter(_time) is { } turn)
        {
            birthdayTurn = turn;
            UdpPunch.Keys keys = punch.SetPeer(theirs.UdpIndex, secret, _driver);
            return RandomSides(punch, theirs).Mine
                ? BirthdayPunch.RunAsync(_udp, punch, keys, observed, _driver, BirthdayPunch.DefaultSockets, BirthdayBudget, _time, _stop.Token)
                : punch.RunAsync(candidates, theirs.UdpIndex, secret, _driver, BirthdayBudget, _stop.Token, spray: observed.Address);
        }

        return punch.RunAsync(candidates, theirs.UdpIndex, secret, controlling: _driver, _options.PunchTimeout, _stop.Token);
    }

    private async Task PunchAndApplyAsync(Prepared preparation, PathCandidates theirs, int number, TimeSpan delay, bool birthday = false)
    {
        using (preparation)
        {
            if (theirs.Token is not { Length: RendezvousWire.TokenLength })
            {
                return;
            }

            if (_options.PunchFault?.Invoke(_driver, number) is { } fault)
            {
                throw fault;
            }

            using Activity? activity = Diagnostics.Telemetry.Source.StartActivity("peerlink.punch");
            activity?.SetTag(Diagnostics.Telemetry.PeerIdTag, _session.RemotePeerId.ToString());
            activity?.SetTag(NatTelemetry.Birthday, birthday);
            string peerNat = preparation.Udp is { } mineForHint && theirs.UdpSecret is not null
                ? (RandomSides(mineForHint, theirs).Theirs ? "port-changing" : "port-preserving")
                : "unknown";

            var candidates = new List<IPEndPoint>();
            foreach (string address in theirs.Addresses ?? [])
            {
                if (IPEndPoint.TryParse(address, out IPEndPoint? endPoint) && endPoint.Port != 0 && candidates.Count < 16)
                {
                    candidates.Add(endPoint);
                }
            }

            var udpCandidates = new List<UdpCandidate>();
            foreach (string text in theirs.UdpCandidates ?? [])
            {
                if (UdpCandidate.TryParse(text, out UdpCandidate candidate) && udpCandidates.Count < 16)
                {
                    udpCandidates.Add(candidate);
                }
            }

            if (delay > TimeSpan.Zero)
            {
                await Task.Delay(delay, _time, _stop.Token).ConfigureAwait(false);   // half a round trip: the SYNC's flight
            }

            using var tcpStop = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            Task<PunchResult>? tcp = preparation.Tcp is { } tcpPrepared && candidates.Count > 0
                ? TcpPunch.PunchAsync(tcpPrepared, candidates, theirs.Token, _speakFirst, _options.PunchTimeout, new TcpTransportOptions(), _logger, tcpStop.Token)
                : null;
            Task<UdpPunchResult>? udp = PunchUdp(preparation, theirs, udpCandidates, birthday, out IDisposable? birthdayTurn);

            // UDP first: when it works, it is the path, and a TCP connection that also formed is closed.
            UdpPunchResult? udpResult;
            using (birthdayTurn)
            {
                udpResult = udp is null ? null : await udp.ConfigureAwait(false);
            }

            if (udpResult is { Connection: null })
            {
                _udpFailures++;
            }

            if (udpResult?.Connection is { } datagrams)
            {
                await tcpStop.CancelAsync().ConfigureAwait(false);
                string alsoTcp = "";
                if (tcp is not null)
                {
                    try
                    {
                        PunchResult abandoned = await tcp.ConfigureAwait(false);
                        if (abandoned.Connection is { } unused)
                        {
                            unused.Abort();
                            await unused.DisposeAsync().ConfigureAwait(false);
                            alsoTcp = "; preferred to a TCP path that also formed";
                        }
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }

                _direct = true;
                _failedInARow = 0;
                Record(number, PathAttemptOutcome.Success, "udp " + udpResult.Value.Detail);
                CountPunch(activity, "udp", PathAttemptOutcome.Success, birthday, peerNat);
                _connection.AddPathAndMove(datagrams, "direct-udp");
                SetDirectPath(SessionPathKind.DirectUdp, $"direct-udp {udpResult.Value.Detail}{alsoTcp}");
                return;
            }

            PunchResult? tcpResult = null;
            if (tcp is not null)
            {
                try
                {
                    tcpResult = await tcp.ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!_stop.IsCancellationRequested)
                {
                }
            }

            (bool mineRandom, bool theirsRandom) = preparation.Udp is { } mine ? RandomSides(mine, theirs) : (false, false);
            string udpWhy = udpResult is { } failed ? failed.Detail + (mineRandom && theirsRandom ? " (both NATs pick new ports for every destination: no birthday probing)" : "")
                : !_options.PunchUdp || _udp is null ? "UDP punching is off here"
                : theirs.UdpSecret is null ? "the peer does not punch UDP"
                : "no UDP candidates";
            if (tcpResult?.Connection is { } connection)
            {
                _direct = true;
                _failedInARow = 0;
                Record(number, tcpResult.Value.Reversed ? PathAttemptOutcome.Reversed : PathAttemptOutcome.Success, tcpResult.Value.Detail);
                CountPunch(activity, "tcp", tcpResult.Value.Reversed ? PathAttemptOutcome.Reversed : PathAttemptOutcome.Success, birthday, peerNat);
                _connection.AddPathAndMove(connection, "direct-tcp");
                SetDirectPath(SessionPathKind.DirectTcp, $"direct-tcp {tcpResult.Value.Detail} ({udpWhy})");
                return;
            }

            string tcpWhy = tcpResult is { } tcpFailed ? tcpFailed.Detail : !_options.PunchTcp ? "TCP punching is off here" : "the peer offered no TCP candidates";
            _failedInARow++;
            Record(number, PathAttemptOutcome.NoConnection, $"{tcpWhy}; {udpWhy}");
            CountPunch(activity, "none", PathAttemptOutcome.NoConnection, birthday, peerNat);
            string nat = preparation.Tcp is { } tcpSide
                ? $"{Describe("the peer", theirs.Observed, candidates)}; {Describe("this device", tcpSide.Observed?.ToString(), tcpSide.Candidates)}"
                : $"{Describe("the peer", theirs.UdpObserved, [.. udpCandidates.Select(c => c.EndPoint)])}; {Describe("this device", preparation.Udp?.Observed?.ToString(), [.. preparation.Udp?.Candidates.Select(c => c.EndPoint) ?? []])}";
            SetPath(SessionPathKind.Relayed, $"relayed through rendezvous node {_rendezvous}: {_failedInARow} punch attempt(s) failed ({tcpWhy}; {udpWhy}; {nat}); "
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

    /// <summary>One punch attempt for "peerlink.punch.attempts" and its span.</summary>
    private static void CountPunch(Activity? activity, string path, PathAttemptOutcome outcome, bool birthday, string peerNat)
    {
        string result = outcome switch
        {
            PathAttemptOutcome.Success => "success",
            PathAttemptOutcome.Reversed => "reversed",
            PathAttemptOutcome.NoConnection => "no-connection",
            PathAttemptOutcome.Failed => "failed",
            _ => "cancelled",
        };
        if (activity is not null)
        {
            activity.SetTag(Diagnostics.Telemetry.PathTag, path);
            activity.SetTag(Diagnostics.Telemetry.Outcome, result);
            if (path == "none")
            {
                activity.SetStatus(ActivityStatusCode.Error, result);
            }
        }

        NatTelemetry.PunchAttempts.Add(1, new TagList
        {
            { Diagnostics.Telemetry.PathTag, path },
            { Diagnostics.Telemetry.Outcome, result },
            { NatTelemetry.Birthday, birthday },
            { NatTelemetry.PeerNat, peerNat },
        });
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

    /// <summary>
    /// The direct path, once added: unless it already died (then the fallback was said, and saying "direct" after it would
    /// leave the session described as direct while it is relayed).
    /// </summary>
    private void SetDirectPath(SessionPathKind kind, string description)
    {
        lock (_pathGate)
        {
            if (_direct)
            {
                SetPath(kind, description);
            }
        }
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

/// <summary>One side's preparation of an attempt: TCP (a port and its STUN connection) and UDP (an index, a secret, candidates).</summary>
internal sealed class Prepared(PunchPreparation? tcp, UdpPunch? udp) : IDisposable
{
    private readonly byte[] _token = tcp?.Token ?? System.Security.Cryptography.RandomNumberGenerator.GetBytes(RendezvousWire.TokenLength);

    public PunchPreparation? Tcp { get; } = tcp;

    public UdpPunch? Udp { get; } = udp;

    /// <summary>The candidates message of attempt <paramref name="attempt"/>.</summary>
    public PathCandidates ToCandidates(int attempt) => new(
        attempt,
        _token,
        Tcp is null ? [] : [.. Tcp.Candidates.Select(c => c.ToString())],
        Tcp?.Observed?.ToString(),
        Udp is null ? null : [.. Udp.Candidates.Select(c => c.ToString())],
        Udp?.Index ?? 0,
        Udp?.Secret,
        Udp?.Observed?.ToString());

    public void Dispose()
    {
        Tcp?.Dispose();
        Udp?.Dispose();
    }
}

/// <summary>HyperDHT's safety rails for birthday probing: one at a time per node, and at least 20 s between two.</summary>
internal sealed class BirthdayGate
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(20);

    private readonly Lock _gate = new();
    private bool _running;
    private long _lastEndedAt = long.MinValue;

    /// <summary>A turn to probe (dispose it when done), or null when another runs or the last ended under 20 s ago.</summary>
    public IDisposable? TryEnter(TimeProvider time)
    {
        lock (_gate)
        {
            if (_running || (_lastEndedAt != long.MinValue && time.GetElapsedTime(_lastEndedAt) < Interval))
            {
                return null;
            }

            _running = true;
            return new Turn(this, time);
        }
    }

    private sealed class Turn(BirthdayGate gate, TimeProvider time) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                lock (gate._gate)
                {
                    gate._running = false;
                    gate._lastEndedAt = time.GetTimestamp();
                }
            }
        }
    }
}

