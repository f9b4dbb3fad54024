using System;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Nat.Stun;
using Xunit;

namespace PeerLink.FunctionalTests.Stun;

/// <summary>
/// Backwards compatibility with RFC 3489 clients (RFC 8489 §12): a Binding request without the magic cookie is answered
/// with MAPPED-ADDRESS and its whole 16-byte transaction id copied back, as deployed servers do.
/// </summary>
public sealed class StunClassicTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);
    private static readonly IPAddress Loopback2 = IPAddress.Parse("127.0.0.2");

    [Fact]
    public async Task AClassicBindingRequestGetsMappedAddressAndItsTransactionIdBack()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0), AlternateAddress = Loopback2, AlternatePort = 0 });
        using Socket client = Bound();
        byte[] request = ClassicRequest(out byte[] transactionId);

        (byte[] answer, IPEndPoint from) = await ExchangeAsync(client, request, server.LocalEndPoints[0]);

        Assert.Equal(0x0101, BinaryPrimitives.ReadUInt16BigEndian(answer));   // Binding success
        Assert.Equal(transactionId, answer.AsSpan(4, 16).ToArray());             // all 16 bytes, the "cookie" field included
        Assert.False(StunMessage.TryParse(answer, out _, out _), "without allowClassic an RFC 8489 parser refuses it");
        Assert.True(StunMessage.TryParse(answer, out StunMessage? response, out string? error, allowClassic: true), error);
        Assert.True(response!.IsClassic);
        Assert.Equal(client.LocalEndPoint, response.GetMappedAddress());
        Assert.False(response.Has(StunAttributeType.XorMappedAddress), "a classic client knows no XOR-MAPPED-ADDRESS");
        Assert.False(response.Has(StunAttributeType.Fingerprint));
        Assert.Equal(server.LocalEndPoints[0], from);
        Assert.True(response.TryGetValue(StunAttributeType.SourceAddress, out _), "SOURCE-ADDRESS");
        Assert.True(response.TryGetValue(StunAttributeType.ChangedAddress, out _), "CHANGED-ADDRESS with an alternate address");
    }

    [Fact]
    public async Task AClassicChangeRequestIsAnsweredFromTheOtherAddressAndPort()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0), AlternateAddress = Loopback2, AlternatePort = 0 });
        using Socket client = Bound();
        byte[] request = ClassicRequest(out byte[] transactionId, changeRequest: StunConstants.ChangeIp | StunConstants.ChangePort);

        (byte[] answer, IPEndPoint from) = await ExchangeAsync(client, request, server.LocalEndPoints[0]);

        Assert.Equal(transactionId, answer.AsSpan(4, 16).ToArray());
        Assert.Equal(Loopback2, from.Address);
        Assert.NotEqual(server.LocalEndPoints[0].Port, from.Port);
    }

    [Fact]
    public async Task AServerThatAsksForCredentialsDoesNotAnswerClassicRequests()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0), Username = "device", Password = "secret" });
        using Socket client = Bound();

        // The classic request, then an RFC 8489 one without credentials: the server handles them in order on one
        // socket, so the first answer to arrive is the 401, and nothing came for the classic request before it.
        await client.SendToAsync(ClassicRequest(out _), SocketFlags.None, server.LocalEndPoints[0]);
        byte[] id = StunMessageBuilder.NewTransactionId();
        (byte[] answer, _) = await ExchangeAsync(client, new StunMessageBuilder(StunClass.Request, StunMethod.Binding, id).ToArray(), server.LocalEndPoints[0]);

        Assert.True(StunMessage.TryParse(answer, out StunMessage? response, out _));
        Assert.Equal(id, response!.TransactionId.ToArray());
        Assert.Equal(400, response.GetErrorCode()!.Value.Code);
    }

    private static byte[] ClassicRequest(out byte[] transactionId, uint changeRequest = 0)
    {
        transactionId = RandomNumberGenerator.GetBytes(16);
        BinaryPrimitives.WriteUInt32BigEndian(transactionId, 0x0BADF00D);   // anything but the magic cookie
        byte[] request = new byte[20 + (changeRequest != 0 ? 8 : 0)];
        BinaryPrimitives.WriteUInt16BigEndian(request, 0x0001);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(2), (ushort)(request.Length - 20));
        transactionId.CopyTo(request, 4);
        if (changeRequest != 0)
        {
            BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(20), StunAttributeType.ChangeRequest);
            BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(22), 4);
            BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), changeRequest);
        }

        return request;
    }

    private static async Task<(byte[] Answer, IPEndPoint From)> ExchangeAsync(Socket client, byte[] request, IPEndPoint server)
    {
        await client.SendToAsync(request, SocketFlags.None, server);
        byte[] buffer = new byte[2048];
        SocketReceiveFromResult r = await client.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0)).WaitAsync(Limit);
        return (buffer.AsSpan(0, r.ReceivedBytes).ToArray(), (IPEndPoint)r.RemoteEndPoint);
    }

    private static Socket Bound()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return socket;
    }
}
