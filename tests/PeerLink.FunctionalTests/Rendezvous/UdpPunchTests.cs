using System;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.FunctionalTests.Transport;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;
using PeerLink.Testing;
using PeerLink.Transport;
using Xunit;

namespace PeerLink.FunctionalTests.Rendezvous;

/// <summary>
/// UDP connectivity checks between two transports on loopback, without a rendezvous node: the candidates and secrets
/// that the session would carry are handed over directly. A port-changing relay plays a symmetric NAT.
/// </summary>
public sealed class UdpPunchTests : PeerIdentities
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(5);

    private SecureSessionOptions Options(PeerIdentity identity) => new() { Identity = identity };

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task TwoTransportsCheckEachOthersCandidatesAndOpenAPathThatCarriesBytesBothWays(bool aliceControls)
    {
        await using UdpTransport alice = Bind(Alice);
        await using UdpTransport bob = Bind(Bob);
        using UdpPunch fromAlice = await PrepareAsync(alice);
        using UdpPunch fromBob = await PrepareAsync(bob);

        Task<UdpPunchResult> a = fromAlice.RunAsync(fromBob.Candidates, fromBob.Index, fromBob.Secret, controlling: aliceControls, Budget, CancellationToken.None);
        Task<UdpPunchResult> b = fromBob.RunAsync(fromAlice.Candidates, fromAlice.Index, fromAlice.Secret, controlling: !aliceControls, Budget, CancellationToken.None);
        UdpPunchResult[] results = await Task.WhenAll(a, b).WaitAsync(Limit);

        PeerConnection toBob = Assert.IsAssignableFrom<PeerConnection>(results[0].Connection);
        PeerConnection toAlice = Assert.IsAssignableFrom<PeerConnection>(results[1].Connection);
        await using (toBob)
        await using (toAlice)
        {
            Assert.Contains("(the peer's host address)", results[0].Detail);
            Assert.Equal(bob.LocalEndPoint.Port, ((IPEndPoint)toBob.RemoteEndPoint!).Port);
            Assert.Equal(alice.LocalEndPoint.Port, ((IPEndPoint)toAlice.RemoteEndPoint!).Port);
            await AssertCarriesAsync(toBob, toAlice, 100_000);
            await AssertCarriesAsync(toAlice, toBob, 100_000);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task APeerBehindANatThatPicksANewPortIsLearnedFromItsChecks(bool aliceControls)
    {
        // Bob reaches Alice only through a "NAT" whose outside port Bob never learns, and offers a candidate on which
        // nothing listens: Alice can reach Bob only at the address his checks come from.
        await using BobBehindNat scene = await BobBehindNatAsync();
        (RebindingUdpNat nat, UdpPunch fromAlice, UdpPunch fromBob) = (scene.Nat, scene.FromAlice, scene.FromBob);
        UdpCandidate[] bobOffers = Reflexive(scene.Closed.LocalEndPoint!);
        UdpCandidate[] aliceSeenByBob = Reflexive(nat.EndPoint);

        Task<UdpPunchResult> a = fromAlice.RunAsync(bobOffers, fromBob.Index, fromBob.Secret, controlling: aliceControls, Budget, CancellationToken.None);
        Task<UdpPunchResult> b = fromBob.RunAsync(aliceSeenByBob, fromAlice.Index, fromAlice.Secret, controlling: !aliceControls, Budget, CancellationToken.None);
        UdpPunchResult[] results = await Task.WhenAll(a, b).WaitAsync(Limit);

        await AssertPathThroughNatAsync(results, nat, "peer-reflexive");
    }

    /// <summary>
    /// Birthday probing, where the peer's check comes in before any answer to ours: Alice sprays Bob's NAT, and her check
    /// to his port arrives before the mapping carries anything (the NAT drops it). Bob's check then comes from that port,
    /// which Alice's NAT would let in only because she sprayed it: the path says it was found by birthday probing.
    /// </summary>
    [Fact]
    public async Task APortThatWasSprayedIsSaidToBeFoundByBirthdayProbingEvenWhenThePeersCheckArrivesFirst()
    {
        await using BobBehindNat scene = await BobBehindNatAsync();
        (RebindingUdpNat nat, UdpPunch fromAlice, UdpPunch fromBob) = (scene.Nat, scene.FromAlice, scene.FromBob);
        int closedPort = ((IPEndPoint)scene.Closed.LocalEndPoint!).Port;
        var sprayedBobsPort = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int sprays = 0;
        fromAlice.SprayPort = () => ++sprays switch
        {
            1 => nat.BackEndPoint.Port,
            2 => SignalThen(sprayedBobsPort, closedPort),   // the first went out before this one is picked
            _ => closedPort,
        };
        UdpCandidate[] bobOffers = Reflexive(scene.Closed.LocalEndPoint!);
        UdpCandidate[] aliceSeenByBob = Reflexive(nat.EndPoint);

        Task<UdpPunchResult> a = fromAlice.RunAsync(bobOffers, fromBob.Index, fromBob.Secret, controlling: false, Budget, CancellationToken.None, spray: IPAddress.Loopback);
        await sprayedBobsPort.Task.WaitAsync(Limit);
        Task<UdpPunchResult> b = fromBob.RunAsync(aliceSeenByBob, fromAlice.Index, fromAlice.Secret, controlling: true, Budget, CancellationToken.None);
        UdpPunchResult[] results = await Task.WhenAll(a, b).WaitAsync(Limit);

        await AssertPathThroughNatAsync(results, nat, "(a port of the peer's NAT found by birthday probing) nominated by the peer");
    }

    private static UdpCandidate[] Reflexive(EndPoint at) => [new(UdpCandidateKind.ServerReflexive, (IPEndPoint)at, UdpCandidate.PriorityOf(UdpCandidateKind.ServerReflexive, 65535))];

    /// <summary>Alice's path goes to the address Bob's NAT sends from, says how it was found, and carries bytes both ways.</summary>
    private static async Task AssertPathThroughNatAsync(UdpPunchResult[] results, RebindingUdpNat nat, string detail)
    {
        await using PeerConnection toBob = Assert.IsAssignableFrom<PeerConnection>(results[0].Connection);
        await using PeerConnection toAlice = Assert.IsAssignableFrom<PeerConnection>(results[1].Connection);
        Assert.Contains(detail, results[0].Detail);
        Assert.Equal(nat.BackEndPoint, toBob.RemoteEndPoint);
        await AssertCarriesAsync(toBob, toAlice, 50_000);
        await AssertCarriesAsync(toAlice, toBob, 50_000);
    }

    private static int SignalThen(TaskCompletionSource signal, int port)
    {
        signal.TrySetResult();
        return port;
    }

    [Fact]
    public async Task WhenNothingAnswersTheAttemptEndsAtItsBudgetAndSaysWhy()
    {
        await using UdpTransport alice = Bind(Alice);
        using UdpPunch fromAlice = await PrepareAsync(alice);
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));   // receives the checks and never answers
        silent.ReceiveTimeout = (int)Limit.TotalMilliseconds;
        UdpCandidate[] theirs = [new(UdpCandidateKind.Host, (IPEndPoint)silent.LocalEndPoint!, UdpCandidate.PriorityOf(UdpCandidateKind.Host, 65535))];

        UdpPunchResult result = await fromAlice.RunAsync(theirs, 7, RandomNumberGenerator.GetBytes(UdpPunch.SecretLength), controlling: true, TimeSpan.FromMilliseconds(400), CancellationToken.None).WaitAsync(Limit);

        Assert.Null(result.Connection);
        Assert.Contains("none answered", result.Detail);
        byte[] check = new byte[64];
        int received = silent.Receive(check);   // the checks did go out, paced
        Assert.Equal(0x86, check[0]);
        Assert.Equal(7u, BinaryPrimitives.ReadUInt32BigEndian(check.AsSpan(4)));
        Assert.True(received >= 32);
    }

    [Fact]
    public async Task ProbesThatDoNotVerifyAreNeitherAnsweredNorLearned()
    {
        await using UdpTransport alice = Bind(Alice);
        using UdpPunch fromAlice = await PrepareAsync(alice);
        byte[] bobSecret = RandomNumberGenerator.GetBytes(UdpPunch.SecretLength);
        UdpPunch.Keys keys = fromAlice.SetPeer(99, bobSecret, controlling: true);
        using var stranger = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        stranger.Bind(new IPEndPoint(IPAddress.Loopback, 0));

        // A check with a forged tag, then a truncated one, then a check the peer's key really signed, all from one socket:
        // the transport takes them in order, so the answer to the last says the first two were seen.
        byte[] forged = Check(fromAlice.Index, 1, RandomNumberGenerator.GetBytes(32));
        stranger.SendTo(forged, alice.LocalEndPoint);
        stranger.SendTo(forged.AsSpan(0, 20).ToArray(), alice.LocalEndPoint);
        stranger.SendTo(Check(fromAlice.Index, 2, keys.ReceiveProbe), alice.LocalEndPoint);
        byte[] answer = new byte[64];
        using var timeout = new CancellationTokenSource(Limit);
        int length = await stranger.ReceiveAsync(answer, SocketFlags.None, timeout.Token);

        Assert.Equal(0x86, answer[0]);
        Assert.Equal(0x01, answer[1]);   // a response
        Assert.Equal(2UL, BinaryPrimitives.ReadUInt64BigEndian(answer.AsSpan(8)));
        Assert.Equal(16 + 7 + 16, length);   // header, the IPv4 address it was seen from, tag
        Assert.Equal(((IPEndPoint)stranger.LocalEndPoint!).Port, BinaryPrimitives.ReadUInt16BigEndian(answer.AsSpan(17)));
        Assert.Equal(1, fromAlice.RejectedProbes);
    }

    private static byte[] Check(uint receiver, ulong transaction, byte[] key)
    {
        byte[] datagram = new byte[32];
        datagram[0] = 0x86;
        BinaryPrimitives.WriteUInt32BigEndian(datagram.AsSpan(4), receiver);
        BinaryPrimitives.WriteUInt64BigEndian(datagram.AsSpan(8), transaction);
        HMACSHA256.HashData(key, datagram.AsSpan(0, 16)).AsSpan(0, 16).CopyTo(datagram.AsSpan(16));
        return datagram;
    }

    /// <summary>Alice and Bob on loopback, Bob behind a NAT of the test's own, and a socket that never answers.</summary>
    private async Task<BobBehindNat> BobBehindNatAsync()
    {
        UdpTransport alice = Bind(Alice);
        UdpTransport bob = Bind(Bob);
        var nat = new RebindingUdpNat(alice.LocalEndPoint);
        var closed = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        closed.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return new BobBehindNat(alice, bob, nat, closed, await PrepareAsync(alice), await PrepareAsync(bob));
    }

    private sealed record BobBehindNat(UdpTransport Alice, UdpTransport Bob, RebindingUdpNat Nat, Socket Closed, UdpPunch FromAlice, UdpPunch FromBob) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            FromAlice.Dispose();
            FromBob.Dispose();
            Closed.Dispose();
            Nat.Dispose();
            await Bob.DisposeAsync();
            await Alice.DisposeAsync();
        }
    }

    private UdpTransport Bind(PeerIdentity identity)
    {
        UdpTransport transport = UdpTransport.Bind(new IPEndPoint(IPAddress.Loopback, 0), Options(identity));
        transport.AcceptsSessions = false;
        return transport;
    }

    private static Task<UdpPunch> PrepareAsync(UdpTransport transport) =>
        UdpPunch.PrepareAsync(transport, stunServer: null, [IPAddress.Loopback], TimeProvider.System, CancellationToken.None);

    private static async Task AssertCarriesAsync(PeerConnection from, PeerConnection to, int bytes)
    {
        byte[] sent = RandomNumberGenerator.GetBytes(bytes);
        await from.Transport.Output.WriteAsync(sent);
        byte[] received = new byte[bytes];
        int have = 0;
        while (have < bytes)
        {
            var read = await to.Transport.Input.ReadAsync().AsTask().WaitAsync(Limit);
            foreach (ReadOnlyMemory<byte> segment in read.Buffer)
            {
                int take = Math.Min(segment.Length, bytes - have);
                segment.Span[..take].CopyTo(received.AsSpan(have));
                have += take;
            }

            to.Transport.Input.AdvanceTo(read.Buffer.End);
        }

        Assert.Equal(sent, received);
    }
}
