using System;
using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Nat.Stun;
using Xunit;

namespace PeerLink.FunctionalTests.Stun;

/// <summary>Several STUN servers queried at once from one socket, and their answers compared.</summary>
public sealed class StunQueryTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);
    // About 1.1 s before a silent server is given up: quick, yet loose enough for a loaded machine.
    private static readonly StunClientOptions Quick = new() { InitialRto = TimeSpan.FromMilliseconds(100), MaxTransmissions = 4, FinalWaitMultiplier = 4 };

    [Fact]
    public async Task AnswersAreCollectedAndASilentServerIsReported()
    {
        await using StunServer first = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        await using StunServer second = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0) });
        using Socket silent = Bound();
        using Socket socket = Bound();
        IPEndPoint[] servers = [first.LocalEndPoints[0], (IPEndPoint)silent.LocalEndPoint!, second.LocalEndPoints[0]];

        StunQueryResult result = await StunClient.QueryAsync(socket, servers, Quick).WaitAsync(Limit);

        Assert.Equal([servers[0], servers[2]], [result.Answers[0].Server, result.Answers[1].Server]);
        Assert.True(result.MappedAddressesAgree);
        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
        (IPEndPoint failed, PeerLinkException error) = Assert.Single(result.Failures);
        Assert.Equal(servers[1], failed);
        Assert.Equal(PeerLinkError.StunTimeout, error.Error);
    }

    [Fact]
    public async Task DifferentMappedAddressesRevealPerDestinationMapping()
    {
        // Two scripted servers that report different public endpoints, as a symmetric NAT would make real ones do.
        using Socket a = Bound();
        using Socket b = Bound();
        using Socket socket = Bound();
        var seenByA = new IPEndPoint(IPAddress.Parse("198.51.100.7"), 40001);
        var seenByB = new IPEndPoint(IPAddress.Parse("198.51.100.7"), 40777);
        Task serveA = AnswerOnceAsync(a, seenByA);
        Task serveB = AnswerOnceAsync(b, seenByB);

        StunQueryResult result = await StunClient.QueryAsync(socket, [(IPEndPoint)a.LocalEndPoint!, (IPEndPoint)b.LocalEndPoint!], Quick).WaitAsync(Limit);
        await Task.WhenAll(serveA, serveB).WaitAsync(Limit);

        Assert.False(result.MappedAddressesAgree);
        Assert.Null(result.MappedAddress);
        Assert.Equal([seenByA, seenByB], result.DistinctMappedAddresses);
        Assert.Empty(result.Failures);
    }

    [Fact]
    public async Task CredentialsAndErrorsArePerServer()
    {
        await using StunServer open = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        await using StunServer guarded = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0), Username = "u", Password = "p" });
        using Socket socket = Bound();

        StunQueryResult anonymous = await StunClient.QueryAsync(socket, [open.LocalEndPoints[0], guarded.LocalEndPoints[0]], Quick).WaitAsync(Limit);

        Assert.Single(anonymous.Answers);
        Assert.Contains("400", Assert.Single(anonymous.Failures).Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BadArgumentsAreNamed()
    {
        using Socket socket = Bound();
        using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var server = new IPEndPoint(IPAddress.Loopback, 3478);

        await Assert.ThrowsAsync<ArgumentException>("servers", () => StunClient.QueryAsync(socket, []));
        await Assert.ThrowsAsync<ArgumentException>("socket", () => StunClient.QueryAsync(tcp, [server]));
        await Assert.ThrowsAsync<ArgumentException>("options", () => StunClient.QueryAsync(socket, [server], new StunClientOptions { Username = "u", Password = "p", UseLongTermCredentials = true }));
    }

    private static Socket Bound()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return socket;
    }

    private static async Task AnswerOnceAsync(Socket server, IPEndPoint mapped)
    {
        byte[] buffer = new byte[2048];
        SocketReceiveFromResult r = await server.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0));
        Assert.True(StunMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out StunMessage? request, out _));
        byte[] answer = new StunMessageBuilder(StunClass.SuccessResponse, StunMethod.Binding, request!.TransactionId)
            .AddAddress(StunAttributeType.XorMappedAddress, mapped).AddFingerprint().ToArray();
        await server.SendToAsync(answer, SocketFlags.None, r.RemoteEndPoint);
    }
}
