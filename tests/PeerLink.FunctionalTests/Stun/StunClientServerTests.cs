using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Nat;
using PeerLink.Nat.Stun;
using Xunit;

namespace PeerLink.FunctionalTests.Stun;

/// <summary>The STUN client against the STUN server and against scripted fake servers, on loopback only.</summary>
public sealed class StunClientServerTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);
    private static readonly IPAddress Loopback2 = IPAddress.Parse("127.0.0.2");

    [Fact]
    public async Task BindingReturnsTheClientsAddressAndTheServersOrigin()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        using Socket socket = BoundUdp(IPAddress.Loopback);

        StunBindingResult result = await StunClient.BindingAsync(socket, server.LocalEndPoints[0]).WaitAsync(Limit);

        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
        Assert.Equal(server.LocalEndPoints[0], result.ResponseOrigin);
        Assert.Equal(server.LocalEndPoints[0], result.RespondedFrom);
        Assert.Null(result.OtherAddress);
        Assert.Equal("PeerLink", result.ServerSoftware);
    }

    [Fact]
    public async Task BindingWorksOverIPv6()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.IPv6Loopback, 0) });
        using Socket socket = BoundUdp(IPAddress.IPv6Loopback);

        StunBindingResult result = await StunClient.BindingAsync(socket, server.LocalEndPoints[0]).WaitAsync(Limit);

        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
        Assert.Equal(AddressFamily.InterNetworkV6, result.MappedAddress.AddressFamily);
    }

    [Fact]
    public async Task AWildcardServerReportsTheAddressTheRequestReached()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Any, 0) });
        using Socket socket = BoundUdp(IPAddress.Loopback);
        var target = new IPEndPoint(Loopback2, server.LocalEndPoints[0].Port);

        StunBindingResult result = await StunClient.BindingAsync(socket, target).WaitAsync(Limit);

        Assert.Equal(target, result.ResponseOrigin);
    }

    [Fact]
    public async Task ChangeRequestIsAnsweredFromTheOtherAddressAndPort()
    {
        await using StunServer server = await StunServer.StartAsync(new()
        {
            PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            AlternateAddress = Loopback2,
            AlternatePort = 0,
        });
        IReadOnlyList<IPEndPoint> endpoints = server.LocalEndPoints;
        Assert.Equal(4, endpoints.Count);
        using Socket socket = BoundUdp(IPAddress.Loopback);

        StunBindingResult plain = await StunClient.BindingAsync(socket, endpoints[0]).WaitAsync(Limit);
        StunBindingResult both = await StunClient.BindingAsync(socket, endpoints[0], StunConstants.ChangeIp | StunConstants.ChangePort, null, null, default).WaitAsync(Limit);
        StunBindingResult port = await StunClient.BindingAsync(socket, endpoints[0], StunConstants.ChangePort, null, null, default).WaitAsync(Limit);

        Assert.Equal(endpoints[3], plain.OtherAddress);
        Assert.Equal(endpoints[3], both.RespondedFrom);
        Assert.Equal(endpoints[3], both.ResponseOrigin);
        Assert.Equal(endpoints[0], both.OtherAddress);   // OTHER-ADDRESS is relative to where the answer came from
        Assert.Equal(endpoints[1], port.RespondedFrom);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, endpoints[1].Port), port.ResponseOrigin);
    }

    [Fact]
    public async Task ResponsePortSendsTheAnswerToAnotherPortOfTheRequester()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        using Socket sender = BoundUdp(IPAddress.Loopback);
        using Socket listener = BoundUdp(IPAddress.Loopback);
        byte[] id = StunMessageBuilder.NewTransactionId();
        byte[] request = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, id)
            .AddResponsePort((ushort)((IPEndPoint)listener.LocalEndPoint!).Port).ToArray();

        await sender.SendToAsync(request, SocketFlags.None, server.LocalEndPoints[0]);
        byte[] buffer = new byte[2048];
        SocketReceiveFromResult r = await listener.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0)).WaitAsync(Limit);

        Assert.True(StunMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out StunMessage? response, out _));
        Assert.Equal(id, response!.TransactionId.ToArray());
        Assert.Equal(sender.LocalEndPoint, response.GetXorMappedAddress());   // still the request's source
        Assert.Equal(0, sender.Available);
    }

    [Fact]
    public async Task ChangeRequestWithoutAnAlternateAddressIsError420()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        using Socket socket = BoundUdp(IPAddress.Loopback);

        var e = await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(socket, server.LocalEndPoints[0], StunConstants.ChangeIp, null, null, default).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.StunError, e.Error);
        Assert.Contains("420", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ShortTermCredentialsAreRequiredAndChecked()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0), Username = "device", Password = "s3cret" });
        using Socket socket = BoundUdp(IPAddress.Loopback);
        IPEndPoint endpoint = server.LocalEndPoints[0];

        StunBindingResult ok = await StunClient.BindingAsync(socket, endpoint, new StunClientOptions { Username = "device", Password = "s3cret" }).WaitAsync(Limit);
        var none = await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(socket, endpoint).WaitAsync(Limit));
        var wrong = await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(socket, endpoint, new StunClientOptions { Username = "device", Password = "guess" }).WaitAsync(Limit));

        Assert.Equal(socket.LocalEndPoint, ok.MappedAddress);
        Assert.Contains("400", none.Message, StringComparison.Ordinal);
        Assert.Contains("401", wrong.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownComprehensionRequiredAttributesAreError420WithTheirList()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        using Socket socket = BoundUdp(IPAddress.Loopback);
        byte[] id = StunMessageBuilder.NewTransactionId();
        byte[] request = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, id).AddUInt32(0x7F01, 1).AddUInt32(0xC001, 2).AddFingerprint().ToArray();

        StunMessage response = await ExchangeAsync(socket, server.LocalEndPoints[0], request);

        Assert.Equal(StunClass.ErrorResponse, response.Class);
        Assert.Equal(420, response.GetErrorCode()!.Value.Code);
        Assert.Equal(new ushort[] { 0x7F01 }, response.GetUnknownAttributes());   // the optional 0xC001 is not listed
        Assert.True(response.HasValidFingerprint());
    }

    [Fact]
    public async Task GarbageIsDroppedAndTheServerKeepsAnswering()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        using Socket socket = BoundUdp(IPAddress.Loopback);
        var random = new Random(3478);
        for (int i = 0; i < 200; i++)
        {
            byte[] junk = new byte[random.Next(0, 600)];
            random.NextBytes(junk);
            if (junk.Length >= 8 && i % 2 == 0)
            {
                junk[0] = 0;
                junk[1] = 1;
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(junk.AsSpan(4), StunConstants.MagicCookie);
            }

            await socket.SendToAsync(junk, SocketFlags.None, server.LocalEndPoints[0]);
        }

        byte[] indication = new StunMessageBuilder(StunClass.Indication, StunMethod.Binding, StunMessageBuilder.NewTransactionId()).ToArray();
        await socket.SendToAsync(indication, SocketFlags.None, server.LocalEndPoints[0]);

        // Every datagram that comes back must be the answer to the real request: nothing above was answered. The request
        // is repeated, as any STUN client does, because the burst may overflow the server's socket buffer under load.
        byte[] id = StunMessageBuilder.NewTransactionId();
        byte[] request = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, id).ToArray();
        byte[] buffer = new byte[2048];
        StunMessage? response = null;
        using var deadline = new CancellationTokenSource(Limit);
        while (response is null)
        {
            await socket.SendToAsync(request, SocketFlags.None, server.LocalEndPoints[0], deadline.Token);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token);
            wait.CancelAfter(TimeSpan.FromMilliseconds(200));
            try
            {
                SocketReceiveFromResult r = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), wait.Token);
                Assert.True(StunMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out response, out string? error), error);
            }
            catch (OperationCanceledException) when (!deadline.IsCancellationRequested)
            {
            }
        }

        Assert.Equal(StunClass.SuccessResponse, response.Class);
        Assert.Equal(id, response.TransactionId.ToArray());
    }

    [Fact]
    public async Task LostRequestsAreRetransmittedWithTheSameTransaction()
    {
        using Socket fake = BoundUdp(IPAddress.Loopback);
        using Socket socket = BoundUdp(IPAddress.Loopback);
        var seen = new List<byte[]>();
        Task server = Task.Run(async () =>
        {
            byte[] buffer = new byte[2048];
            while (true)
            {
                SocketReceiveFromResult r = await fake.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0));
                Assert.True(StunMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out StunMessage? request, out _));
                seen.Add(request!.TransactionId.ToArray());
                if (seen.Count < 3)
                {
                    continue;   // "lose" the first two
                }

                // An unrelated response first (wrong transaction): the client must ignore it.
                byte[] other = new StunMessageBuilder(StunClass.SuccessResponse, StunMethod.Binding, StunMessageBuilder.NewTransactionId())
                    .AddAddress(StunAttributeType.XorMappedAddress, new IPEndPoint(IPAddress.Parse("198.51.100.1"), 1)).ToArray();
                await fake.SendToAsync(other, SocketFlags.None, r.RemoteEndPoint);
                byte[] answer = new StunMessageBuilder(StunClass.SuccessResponse, StunMethod.Binding, request.TransactionId)
                    .AddAddress(StunAttributeType.XorMappedAddress, (IPEndPoint)r.RemoteEndPoint).AddFingerprint().ToArray();
                await fake.SendToAsync(answer, SocketFlags.None, r.RemoteEndPoint);
                return;
            }
        });

        var options = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(50) };
        StunBindingResult result = await StunClient.BindingAsync(socket, (IPEndPoint)fake.LocalEndPoint!, options).WaitAsync(Limit);
        await server.WaitAsync(Limit);

        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
        Assert.Equal(3, seen.Count);
        Assert.Equal(seen[0], seen[1]);
        Assert.Equal(seen[0], seen[2]);
    }

    [Fact]
    public async Task LongTermCredentialsFollowThe401ChallengeAndA438StaleNonce()
    {
        using Socket fake = BoundUdp(IPAddress.Loopback);
        using Socket socket = BoundUdp(IPAddress.Loopback);
        byte[] key = StunCredentials.LongTermKey("device", "example.org", "p\u00ADw");   // SASLprep drops the soft hyphen
        var steps = new List<string>();
        Task server = Task.Run(async () =>
        {
            // The script answers by transaction, as a real server does: the first transaction gets 401, the second 438,
            // the third success, and a retransmission of a transaction gets that transaction's answer again.
            var answers = new Dictionary<string, byte[]>();
            byte[] buffer = new byte[2048];
            while (answers.Count < 3)
            {
                SocketReceiveFromResult r = await fake.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0));
                Assert.True(StunMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out StunMessage? request, out _));
                string transaction = Convert.ToHexString(request!.TransactionId);
                if (!answers.TryGetValue(transaction, out byte[]? answer))
                {
                    int step = answers.Count;
                    var reply = new StunMessageBuilder(step == 2 ? StunClass.SuccessResponse : StunClass.ErrorResponse, StunMethod.Binding, request.TransactionId);
                    switch (step)
                    {
                        case 0:
                            steps.Add(request.Has(StunAttributeType.MessageIntegrity) ? "credentials too early" : "unauthenticated");
                            reply.AddErrorCode(401, "Unauthenticated").AddString(StunAttributeType.Realm, "example.org").AddString(StunAttributeType.Nonce, "n1");
                            break;
                        case 1:
                            steps.Add($"{request.GetUsername()}@{request.GetRealm()} nonce {request.GetNonce()} valid {request.VerifyMessageIntegrity(key)}");
                            reply.AddErrorCode(438, "Stale Nonce").AddString(StunAttributeType.Realm, "example.org").AddString(StunAttributeType.Nonce, "n2");
                            break;
                        default:
                            steps.Add($"{request.GetUsername()}@{request.GetRealm()} nonce {request.GetNonce()} valid {request.VerifyMessageIntegrity(key)}");
                            reply.AddAddress(StunAttributeType.XorMappedAddress, (IPEndPoint)r.RemoteEndPoint).AddMessageIntegrity(key);
                            break;
                    }

                    answers[transaction] = answer = reply.AddFingerprint().ToArray();
                }

                await fake.SendToAsync(answer, SocketFlags.None, r.RemoteEndPoint);
            }
        });

        // On a clock that only the test moves, the client never retransmits: three transactions, three datagrams.
        var clock = new FakeTimeProvider();
        var options = new StunClientOptions { Username = "device", Password = "p\u00ADw", UseLongTermCredentials = true, TimeProvider = clock };
        StunBindingResult result = await StunClient.BindingAsync(socket, (IPEndPoint)fake.LocalEndPoint!, options).WaitAsync(Limit);
        await server.WaitAsync(Limit);

        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
        Assert.Equal(["unauthenticated", "device@example.org nonce n1 valid True", "device@example.org nonce n2 valid True"], steps);
        Assert.Equal(TimeSpan.Zero, result.RoundTripTime);     // no time passed on the client's clock
    }

    [Fact]
    public async Task AResponseWithABadMacIsRefused()
    {
        using Socket fake = BoundUdp(IPAddress.Loopback);
        using Socket socket = BoundUdp(IPAddress.Loopback);
        Task server = Task.Run(async () =>
        {
            byte[] buffer = new byte[2048];
            SocketReceiveFromResult r = await fake.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0));
            Assert.True(StunMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out StunMessage? request, out _));
            byte[] reply = new StunMessageBuilder(StunClass.SuccessResponse, StunMethod.Binding, request!.TransactionId)
                .AddAddress(StunAttributeType.XorMappedAddress, new IPEndPoint(IPAddress.Parse("198.51.100.9"), 9))
                .AddMessageIntegrity("an attacker's key"u8).ToArray();
            await fake.SendToAsync(reply, SocketFlags.None, r.RemoteEndPoint);
        });

        var options = new StunClientOptions { Username = "device", Password = "pw" };
        var e = await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(socket, (IPEndPoint)fake.LocalEndPoint!, options).WaitAsync(Limit));
        await server.WaitAsync(Limit);

        Assert.Equal(PeerLinkError.StunError, e.Error);
        Assert.Contains("MESSAGE-INTEGRITY", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASilentServerTimesOutAfterRcTransmissions()
    {
        using Socket silent = BoundUdp(IPAddress.Loopback);
        using Socket socket = BoundUdp(IPAddress.Loopback);
        var options = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(20), MaxTransmissions = 3, FinalWaitMultiplier = 2 };

        var e = await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(socket, (IPEndPoint)silent.LocalEndPoint!, options).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.StunTimeout, e.Error);
        int received = 0;
        byte[] buffer = new byte[2048];
        while (silent.Available > 0)
        {
            silent.Receive(buffer);
            received++;
        }

        Assert.Equal(3, received);
    }

    [Fact]
    public async Task CancellationIsTheCallersOwn()
    {
        using Socket silent = BoundUdp(IPAddress.Loopback);
        using Socket socket = BoundUdp(IPAddress.Loopback);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => StunClient.BindingAsync(socket, (IPEndPoint)silent.LocalEndPoint!, cancellationToken: cts.Token).WaitAsync(Limit));
    }

    [Fact]
    public async Task BadArgumentsAreNamed()
    {
        using Socket socket = BoundUdp(IPAddress.Loopback);
        using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var server = new IPEndPoint(IPAddress.Loopback, 3478);

        await Assert.ThrowsAsync<ArgumentNullException>("socket", () => StunClient.BindingAsync((System.Net.Sockets.Socket)null!, server));
        await Assert.ThrowsAsync<ArgumentException>("socket", () => StunClient.BindingAsync(tcp, server));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>("options", () => StunClient.BindingAsync(socket, server, new StunClientOptions { MaxTransmissions = 0 }));
        await Assert.ThrowsAsync<ArgumentException>("options", () => StunServer.StartAsync(new() { Username = "only-a-name" }));
        await Assert.ThrowsAsync<ArgumentException>("options", () => StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Any, 0), AlternateAddress = Loopback2 }));
    }

    private static Socket BoundUdp(IPAddress address)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(address, 0));
        return socket;
    }

    private static async Task<StunMessage> ExchangeAsync(Socket socket, IPEndPoint server, byte[] request)
    {
        await socket.SendToAsync(request, SocketFlags.None, server);
        byte[] buffer = new byte[2048];
        SocketReceiveFromResult r = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0)).WaitAsync(Limit);
        Assert.True(StunMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out StunMessage? message, out string? error), error);
        return message!;
    }
}
