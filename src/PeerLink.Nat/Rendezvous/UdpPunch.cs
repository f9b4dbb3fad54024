// UDP hole punching (docs/nat-traversal.md §4, docs/protocol.md §11.9): connectivity checks in the manner of ICE
// (RFC 8445) on the one UDP socket that also asked STUN for this device's reflexive address. Each side offers host and
// server-reflexive candidates inside the end-to-end session; both then send checks to the peer's candidates in priority
// order, one every 20 ms, answer every check they receive, and learn a peer-reflexive candidate from a check that comes
// from an address the peer did not offer (a symmetric NAT's new port), checking it at once (a triggered check). The
// controlling side nominates the first pair that worked both ways; both open a datagram connection on it. Checks are
// authenticated with keys derived from secrets exchanged in the session, so no stranger can answer for the peer.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using PeerLink.Transport;
using PeerLink.Transport.Datagrams;

namespace PeerLink.Nat.Rendezvous;

/// <summary>What a UDP candidate is (RFC 8445 §5.1.1).</summary>
internal enum UdpCandidateKind
{
    /// <summary>An address of one of the device's own interfaces.</summary>
    Host,

    /// <summary>The device's address as a STUN server saw it (its NAT's mapping).</summary>
    ServerReflexive,

    /// <summary>An address learned from a check that arrived from it.</summary>
    PeerReflexive,
}

/// <summary>One UDP candidate: its kind, where, and its RFC 8445 priority.</summary>
internal readonly record struct UdpCandidate(UdpCandidateKind Kind, IPEndPoint EndPoint, uint Priority)
{
    /// <summary>RFC 8445 §5.1.2.2's recommended type preferences.</summary>
    public static int TypePreference(UdpCandidateKind kind) => kind switch
    {
        UdpCandidateKind.Host => 126,
        UdpCandidateKind.PeerReflexive => 110,
        _ => 100,
    };

    /// <summary>RFC 8445 §5.1.2.1: 2^24 × type preference + 2^8 × local preference + (256 − component), component 1.</summary>
    public static uint PriorityOf(UdpCandidateKind kind, int localPreference) =>
        ((uint)TypePreference(kind) << 24) | ((uint)Math.Clamp(localPreference, 0, 65535) << 8) | 255u;

    /// <summary>RFC 8445 §6.1.2.3: the priority of a pair from the controlling side's (G) and the controlled side's (D) candidates.</summary>
    public static ulong PairPriority(uint controlling, uint controlled) =>
        (((ulong)Math.Min(controlling, controlled)) << 32) + (2UL * Math.Max(controlling, controlled)) + (controlling > controlled ? 1UL : 0UL);

    public string KindName => Kind switch
    {
        UdpCandidateKind.Host => "host",
        UdpCandidateKind.PeerReflexive => "prflx",
        _ => "srflx",
    };

    /// <summary>"host 10.0.1.2:40000 2130706431", as the candidates travel in the session.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{KindName} {EndPoint} {Priority}");

    public static bool TryParse(string? text, out UdpCandidate candidate)
    {
        candidate = default;
        string[] words = (text ?? "").Split(' ');
        if (words.Length != 3 || !IPEndPoint.TryParse(words[1], out IPEndPoint? endPoint) || endPoint.Port == 0
            || !uint.TryParse(words[2], NumberStyles.None, CultureInfo.InvariantCulture, out uint priority))
        {
            return false;
        }

        UdpCandidateKind? kind = words[0] switch
        {
            "host" => UdpCandidateKind.Host,
            "srflx" => UdpCandidateKind.ServerReflexive,
            "prflx" => UdpCandidateKind.PeerReflexive,
            _ => null,
        };
        if (kind is null)
        {
            return false;
        }

        candidate = new UdpCandidate(kind.Value, endPoint, priority);
        return true;
    }
}

/// <summary>The outcome of a UDP punch: a connection on the proved path, or why not.</summary>
internal readonly record struct UdpPunchResult(PeerConnection? Connection, string Detail);

/// <summary>
/// One side of one UDP punch attempt: a receiver index reserved on the transport, a fresh secret, and this side's
/// candidates. Disposing gives the index back unless a connection was opened on it.
/// </summary>
internal sealed class UdpPunch : IDisposable
{
    /// <summary>Checks go out at most one per 20 ms (RFC 8445 §14.2's Ta for one stream).</summary>
    public static readonly TimeSpan Pacing = TimeSpan.FromMilliseconds(20);

    public const int SecretLength = 32;
    private const int MaxPairs = 24;
    private static readonly byte[] Salt = "PeerLink UDP punch v1"u8.ToArray();

    private readonly UdpTransport _transport;
    private readonly TimeProvider _time;
    private readonly Channel<ProbeEvent> _events = Channel.CreateBounded<ProbeEvent>(new BoundedChannelOptions(256) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
    private Keys? _keys;
    private bool _opened;
    private int _disposed;
    private long _rejected;

    private UdpPunch(UdpTransport transport, TimeProvider time, IReadOnlyList<UdpCandidate> candidates, IPEndPoint? observed)
    {
        _transport = transport;
        _time = time;
        Candidates = candidates;
        Observed = observed;
        Secret = RandomNumberGenerator.GetBytes(SecretLength);
        Index = transport.ReservePunchIndex(OnProbe);
    }

    /// <summary>The receiver index the peer puts in its probes and, later, its datagrams.</summary>
    public uint Index { get; }

    /// <summary>This side's half of the key material (sent to the peer inside the session).</summary>
    public byte[] Secret { get; }

    /// <summary>This side's candidates, highest priority first.</summary>
    public IReadOnlyList<UdpCandidate> Candidates { get; }

    /// <summary>The server-reflexive address, when STUN answered.</summary>
    public IPEndPoint? Observed { get; }

    /// <summary>Picks the port of each birthday-probing check: a random one of 1,024-65,535 (tests choose theirs).</summary>
    internal Func<int> SprayPort { get; set; } = static () => Random.Shared.Next(1024, 65536);

    /// <summary>Probes that did not verify (for tests and diagnostics).</summary>
    public long RejectedProbes => Interlocked.Read(ref _rejected);

    /// <summary>
    /// Reserves an index and gathers candidates: one host candidate per address (in the order given, each less
    /// preferred than the one before), and the server-reflexive one from a STUN Binding sent from the transport's own socket.
    /// </summary>
    public static async Task<UdpPunch> PrepareAsync(UdpTransport transport, IPEndPoint? stunServer, IReadOnlyList<IPAddress> hostAddresses, TimeProvider time, CancellationToken cancellationToken)
    {
        int port = transport.LocalEndPoint.Port;
        var candidates = new List<UdpCandidate>();
        int preference = 65535;
        foreach (IPAddress address in hostAddresses)
        {
            if (address.AddressFamily == transport.LocalEndPoint.AddressFamily && candidates.Count < 8)
            {
                candidates.Add(new UdpCandidate(UdpCandidateKind.Host, new IPEndPoint(address, port), UdpCandidate.PriorityOf(UdpCandidateKind.Host, preference--)));
            }
        }

        IPEndPoint? observed = null;
        if (stunServer is not null)
        {
            try
            {
                var options = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(250), MaxTransmissions = 4, TimeProvider = time };
                StunBindingResult result = await StunClient.BindingAsync(transport, stunServer, options, null, cancellationToken).ConfigureAwait(false);
                observed = result.MappedAddress;
                if (!candidates.Any(c => c.EndPoint.Equals(observed)))
                {
                    candidates.Add(new UdpCandidate(UdpCandidateKind.ServerReflexive, observed, UdpCandidate.PriorityOf(UdpCandidateKind.ServerReflexive, 65535)));
                }
            }
            catch (Exception e) when (e is PeerLinkException or ObjectDisposedException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                // No reflexive candidate this time: host candidates, and whatever the checks learn, may still do.
            }
        }

        return new UdpPunch(transport, time, candidates, observed);
    }

    /// <summary>
    /// Runs the checks against the peer's candidates until a path is nominated or <paramref name="budget"/> runs out.
    /// Both sides must call it with the same pair of secrets and opposite <paramref name="controlling"/>.
    /// </summary>
    /// <param name="theirs">The peer's candidates (as offered; at most 16 are used).</param>
    /// <param name="theirIndex">The peer's punch index.</param>
    /// <param name="theirSecret">The peer's secret.</param>
    /// <param name="controlling">True on the side that nominates.</param>
    /// <param name="budget">How long to try.</param>
    /// <param name="cancellationToken">Stops the attempt.</param>
    /// <param name="spray">
    /// Birthday probing: the address of a peer whose NAT picks a new port for every destination. Every check that is not
    /// a triggered one then goes to a random port of it (1,024-65,535), hoping for one of the mappings the peer's many
    /// sockets opened (its announced candidates failed already).
    /// </param>
    public async Task<UdpPunchResult> RunAsync(IReadOnlyList<UdpCandidate> theirs, uint theirIndex, byte[] theirSecret, bool controlling, TimeSpan budget, CancellationToken cancellationToken, IPAddress? spray = null)
    {
        Keys keys = SetPeer(theirIndex, theirSecret, controlling);
        uint localPriority = Candidates.Count > 0 ? Candidates.Max(c => c.Priority) : UdpCandidate.PriorityOf(UdpCandidateKind.Host, 65535);
        var pairs = new List<Pair>();
        foreach (UdpCandidate candidate in theirs.Take(16))
        {
            if (candidate.EndPoint.AddressFamily == _transport.LocalEndPoint.AddressFamily && !pairs.Any(p => p.Remote.Equals(candidate.EndPoint)))
            {
                pairs.Add(new Pair(candidate, controlling ? UdpCandidate.PairPriority(localPriority, candidate.Priority) : UdpCandidate.PairPriority(candidate.Priority, localPriority)));
            }
        }

        pairs.Sort(static (a, b) => b.Priority.CompareTo(a.Priority));
        var triggered = new Queue<Pair>();
        var transactions = new Dictionary<ulong, (Pair Pair, bool Nominate)>();
        Pair? nominated = null;
        int sent = 0;
        int sprayed = 0;
        int next = 0;
        long started = _time.GetTimestamp();
        long nextSendAt = started;
        IPEndPoint? mapped = null;

        while (true)
        {
            while (_events.Reader.TryRead(out ProbeEvent e))
            {
                Pair? pair = pairs.FirstOrDefault(p => p.Remote.Equals(e.From));
                if (!e.IsResponse)
                {
                    if (pair is null && pairs.Count < MaxPairs)
                    {
                        // A check from an address the peer did not offer: its NAT's port for us. Check it back at once.
                        // If it is a port we sprayed to, that is how it got through our NAT (its check can come before
                        // any answer to ours, when ours reached its NAT before the mapping did): say so.
                        pair = spray is null ? null : SprayedTo(transactions, e.From);
                        if (pair is null)
                        {
                            uint priority = UdpCandidate.PriorityOf(UdpCandidateKind.PeerReflexive, 65535);
                            pair = new Pair(new UdpCandidate(UdpCandidateKind.PeerReflexive, e.From, priority), UdpCandidate.PairPriority(priority, localPriority));
                        }

                        pairs.Add(pair);
                    }

                    if (pair is { Succeeded: false } && !triggered.Contains(pair))
                    {
                        triggered.Enqueue(pair);
                    }

                    if (e.Nominate && !controlling && pair is not null)
                    {
                        return Open(keys, pair, $"nominated by the peer after {sent} checks in {Elapsed(started)} ms");
                    }

                    continue;
                }

                if (!transactions.TryGetValue(e.Transaction, out (Pair Pair, bool Nominate) sentTo) || !sentTo.Pair.Remote.Equals(e.From))
                {
                    continue;   // not ours, or an answer from elsewhere than asked (RFC 8445 §7.2.5.2.1: not symmetric)
                }

                if (!pairs.Contains(sentTo.Pair))
                {
                    if (pairs.FirstOrDefault(p => p.Remote.Equals(e.From)) is { } known)
                    {
                        sentTo = (known, sentTo.Nominate);
                    }
                    else
                    {
                        pairs.Add(sentTo.Pair);   // a sprayed port that answered
                    }
                }

                sentTo.Pair.Succeeded = true;
                mapped ??= e.Mapped;
                if (sentTo.Nominate && controlling)
                {
                    return Open(keys, sentTo.Pair, $"after {sent} checks in {Elapsed(started)} ms");
                }
            }

            long now = _time.GetTimestamp();
            if (_time.GetElapsedTime(started, now) >= budget)
            {
                string learned = pairs.Any(p => p.Candidate.Kind == UdpCandidateKind.PeerReflexive) ? "; learned " + string.Join(", ", pairs.Where(p => p.Candidate.Kind == UdpCandidateKind.PeerReflexive).Select(p => p.Remote)) : "";
                string birthday = spray is null ? "" : $" ({sprayed} of them to random ports of {spray}: birthday probing found no mapping)";
                string detail = pairs.Any(p => p.Succeeded)
                    ? $"no UDP path: checks answered, but no nomination within {budget.TotalSeconds} s"
                    : $"no UDP path: {sent} checks to {pairs.Count} candidate(s), none answered{birthday}{learned}";
                return new UdpPunchResult(null, detail);
            }

            if (controlling && nominated is null)
            {
                nominated = pairs.Where(p => p.Succeeded).MaxBy(p => p.Priority);
            }

            if (now >= nextSendAt && (pairs.Count > 0 || spray is not null))
            {
                Pair target;
                bool nominate = false;
                if (nominated is not null)
                {
                    target = nominated;
                    nominate = true;
                }
                else if (!triggered.TryDequeue(out target!))
                {
                    if (spray is not null)
                    {
                        var guess = new IPEndPoint(spray, SprayPort());
                        uint priority = UdpCandidate.PriorityOf(UdpCandidateKind.PeerReflexive, 0);
                        target = new Pair(new UdpCandidate(UdpCandidateKind.PeerReflexive, guess, priority), UdpCandidate.PairPriority(priority, localPriority)) { Sprayed = true };
                        sprayed++;
                    }
                    else
                    {
                        target = pairs[next++ % pairs.Count];
                    }
                }

                ulong transaction = (ulong)Random.Shared.NextInt64();
                transactions[transaction] = (target, nominate);
                Send(keys, target.Remote, transaction, nominate, response: false, mapped: null);
                sent++;
                nextSendAt = now + (long)(Pacing.TotalSeconds * _time.TimestampFrequency);
            }

            TimeSpan wait = TimeSpan.FromSeconds(Math.Max(0, nextSendAt - _time.GetTimestamp()) / (double)_time.TimestampFrequency);
            if (pairs.Count == 0 && spray is null)
            {
                wait = budget - _time.GetElapsedTime(started);
            }

            if (wait > TimeSpan.Zero)
            {
                using var timer = new CancellationTokenSource(wait, _time);
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
                try
                {
                    await _events.Reader.WaitToReadAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                }
            }

            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    private static Pair? SprayedTo(Dictionary<ulong, (Pair Pair, bool Nominate)> transactions, IPEndPoint from)
    {
        foreach ((Pair pair, bool _) in transactions.Values)
        {
            if (pair.Sprayed && pair.Remote.Equals(from))
            {
                return pair;
            }
        }

        return null;
    }

    private long Elapsed(long started) => (long)_time.GetElapsedTime(started).TotalMilliseconds;

    private UdpPunchResult Open(Keys keys, Pair pair, string how)
    {
        PeerConnection connection = _transport.OpenPunched(Index, keys.TheirIndex, pair.Remote, keys.SendData, keys.ReceiveData);
        _opened = true;
        string kind = pair.Sprayed ? "a port of the peer's NAT found by birthday probing" : pair.Candidate.Kind switch
        {
            UdpCandidateKind.Host => "the peer's host address",
            UdpCandidateKind.PeerReflexive => "a peer-reflexive address, learned from its check",
            _ => "the peer's server-reflexive address",
        };
        return new UdpPunchResult(connection, $"{_transport.LocalEndPoint.Port} -> {pair.Remote} ({kind}) {how}");
    }

    /// <summary>
    /// Takes the peer's index and secret as soon as they are known, so that checks arriving before <see cref="RunAsync"/>
    /// starts are answered (and kept for it).
    /// </summary>
    public Keys SetPeer(uint theirIndex, byte[] theirSecret, bool controlling)
    {
        if (theirSecret is not { Length: SecretLength })
        {
            throw new ArgumentException("The peer's secret has the wrong length.", nameof(theirSecret));
        }

        byte[] ikm = controlling ? [.. Secret, .. theirSecret] : [.. theirSecret, .. Secret];
        byte[] prk = HKDF.Extract(HashAlgorithmName.SHA256, ikm, Salt);
        byte[] Derive(string label) => HKDF.Expand(HashAlgorithmName.SHA256, prk, 32, System.Text.Encoding.ASCII.GetBytes(label));
        byte[] probeControlling = Derive("probe controlling");
        byte[] probeControlled = Derive("probe controlled");
        byte[] dataControlling = Derive("data controlling");
        byte[] dataControlled = Derive("data controlled");
        var keys = controlling
            ? new Keys(theirIndex, probeControlling, probeControlled, dataControlling, dataControlled)
            : new Keys(theirIndex, probeControlled, probeControlling, dataControlled, dataControlling);
        CryptographicOperations.ZeroMemory(prk);
        Volatile.Write(ref _keys, keys);
        return keys;
    }

    /// <summary>On the transport's receive loop: verify, answer a check at once, and hand the event to the checker.</summary>
    private void OnProbe(byte[] datagram, IPEndPoint from)
    {
        Keys? keys = Volatile.Read(ref _keys);
        if (keys is null || !Verify(keys.ReceiveProbe, datagram))
        {
            Interlocked.Increment(ref _rejected);
            return;
        }

        byte flags = datagram[1];
        ulong transaction = BinaryPrimitives.ReadUInt64BigEndian(datagram.AsSpan(8));
        bool nominate = (flags & DatagramWire.ProbeNominateBit) != 0;
        if ((flags & DatagramWire.ProbeResponseBit) == 0)
        {
            Send(keys, from, transaction, nominate, response: true, mapped: from);
            _events.Writer.TryWrite(new ProbeEvent(false, transaction, from, nominate, null));
            return;
        }

        _events.Writer.TryWrite(new ProbeEvent(true, transaction, from, nominate, ReadAddress(datagram.AsSpan(DatagramWire.ProbeHeaderSize, datagram.Length - DatagramWire.ProbeHeaderSize - DatagramWire.TagSize))));
    }

    private void Send(Keys keys, IPEndPoint to, ulong transaction, bool nominate, bool response, IPEndPoint? mapped)
    {
        Span<byte> datagram = stackalloc byte[MaxProbeSize];
        int length = WriteProbe(datagram, keys, transaction, nominate, response, mapped);
        try
        {
            _transport.SendRaw(datagram[..length], to);
        }
        catch (Exception e) when (e is PeerLinkException or ObjectDisposedException)
        {
            // A check that cannot leave (no route to that candidate): others may.
        }
    }

    /// <summary>The largest probe: header, an IPv6 seen-from address, tag.</summary>
    internal const int MaxProbeSize = DatagramWire.ProbeHeaderSize + 19 + DatagramWire.TagSize;

    /// <summary>Writes a signed probe to the peer's index; returns its length.</summary>
    internal static int WriteProbe(Span<byte> datagram, Keys keys, ulong transaction, bool nominate, bool response, IPEndPoint? mapped)
    {
        datagram[0] = DatagramWire.Probe;
        datagram[1] = (byte)((response ? DatagramWire.ProbeResponseBit : 0) | (nominate ? DatagramWire.ProbeNominateBit : 0));
        datagram[2] = 0;
        datagram[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(datagram[4..], keys.TheirIndex);
        BinaryPrimitives.WriteUInt64BigEndian(datagram[8..], transaction);
        int length = DatagramWire.ProbeHeaderSize;
        if (mapped is not null)
        {
            length += WriteAddress(datagram[length..], mapped);
        }

        Span<byte> tag = stackalloc byte[32];
        HMACSHA256.HashData(keys.SendProbe, datagram[..length], tag);
        tag[..DatagramWire.TagSize].CopyTo(datagram[length..]);
        return length + DatagramWire.TagSize;
    }

    /// <summary>Reads a probe that arrived for <paramref name="index"/>: null unless it is one, to that index, and verifies.</summary>
    internal static ProbeEvent? ReadProbe(ReadOnlySpan<byte> datagram, Keys keys, uint index, IPEndPoint from)
    {
        if (datagram.Length < DatagramWire.ProbeHeaderSize + DatagramWire.TagSize || datagram[0] != DatagramWire.Probe
            || BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]) != index || !Verify(keys.ReceiveProbe, datagram))
        {
            return null;
        }

        bool response = (datagram[1] & DatagramWire.ProbeResponseBit) != 0;
        IPEndPoint? mapped = response ? ReadAddress(datagram[DatagramWire.ProbeHeaderSize..^DatagramWire.TagSize]) : null;
        return new ProbeEvent(response, BinaryPrimitives.ReadUInt64BigEndian(datagram[8..]), from, (datagram[1] & DatagramWire.ProbeNominateBit) != 0, mapped);
    }

    private static bool Verify(byte[] key, ReadOnlySpan<byte> datagram)
    {
        int body = datagram.Length - DatagramWire.TagSize;
        Span<byte> tag = stackalloc byte[32];
        HMACSHA256.HashData(key, datagram[..body], tag);
        return CryptographicOperations.FixedTimeEquals(tag[..DatagramWire.TagSize], datagram[body..]);
    }

    /// <summary>family (4 or 6), port, address: where a check was seen from (the checker's own reflexive address).</summary>
    private static int WriteAddress(Span<byte> destination, IPEndPoint address)
    {
        IPEndPoint plain = address.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(address.Address.MapToIPv4(), address.Port) : address;
        bool v4 = plain.AddressFamily == AddressFamily.InterNetwork;
        destination[0] = v4 ? (byte)4 : (byte)6;
        BinaryPrimitives.WriteUInt16BigEndian(destination[1..], (ushort)plain.Port);
        plain.Address.TryWriteBytes(destination[3..], out int written);
        return 3 + written;
    }

    private static IPEndPoint? ReadAddress(ReadOnlySpan<byte> source)
    {
        if (source.Length < 3 || source.Length != (source[0] == 4 ? 7 : source[0] == 6 ? 19 : -1))
        {
            return null;
        }

        return new IPEndPoint(new IPAddress(source[3..]), BinaryPrimitives.ReadUInt16BigEndian(source[1..]));
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _events.Writer.TryComplete();
        if (!_opened)
        {
            _transport.ReleasePunchIndex(Index);
        }
    }

    internal sealed record Keys(uint TheirIndex, byte[] SendProbe, byte[] ReceiveProbe, byte[] SendData, byte[] ReceiveData);

    internal readonly record struct ProbeEvent(bool IsResponse, ulong Transaction, IPEndPoint From, bool Nominate, IPEndPoint? Mapped);

    private sealed class Pair(UdpCandidate candidate, ulong priority)
    {
        public UdpCandidate Candidate { get; } = candidate;

        public IPEndPoint Remote => Candidate.EndPoint;

        public ulong Priority { get; } = priority;

        public bool Succeeded { get; set; }

        public bool Sprayed { get; init; }
    }
}
