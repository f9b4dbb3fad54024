using System;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Nat.Stun;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.FunctionalTests.Stun;

/// <summary>STUN over TCP (RFC 8489 §6.2.2): client and server on loopback.</summary>
public sealed class StunTcpTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task TcpBindingReturnsTheConnectionsAddress()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        Assert.Equal(server.LocalEndPoints[0], server.TcpEndPoint);
        using Socket socket = await ConnectAsync(server.TcpEndPoint!);

        StunBindingResult result = await StunClient.BindingAsync(socket, server.TcpEndPoint!).WaitAsync(Limit);

        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
        Assert.Equal(server.TcpEndPoint, result.ResponseOrigin);
        Assert.True(socket.Connected);   // the caller's socket stays open for later use
    }

    [Fact]
    public async Task SeveralAuthenticatedRequestsShareOneConnection()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0), Username = "u", Password = "p" });
        using Socket socket = await ConnectAsync(server.TcpEndPoint!);
        var options = new StunClientOptions { Username = "u", Password = "p" };

        for (int i = 0; i < 3; i++)
        {
            StunBindingResult result = await StunClient.BindingAsync(socket, server.TcpEndPoint!, options).WaitAsync(Limit);
            Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
        }

        var wrong = await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(socket, server.TcpEndPoint!, new StunClientOptions { Username = "u", Password = "x" }).WaitAsync(Limit));
        Assert.Contains("401", wrong.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARequestArrivingByteByByteIsReassembled()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        using Socket socket = await ConnectAsync(server.TcpEndPoint!);
        socket.NoDelay = true;
        byte[] id = StunMessageBuilder.NewTransactionId();
        byte[] request = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, id).AddString(StunAttributeType.Software, "slow").AddFingerprint().ToArray();

        foreach (byte b in request)
        {
            await socket.SendAsync(new[] { b }, SocketFlags.None);
        }

        StunMessage response = await ReadMessageAsync(socket);
        Assert.Equal(StunClass.SuccessResponse, response.Class);
        Assert.Equal(id, response.TransactionId.ToArray());
    }

    [Fact]
    public async Task NonStunBytesCloseTheConnectionAndOthersCarryOn()
    {
        await using StunServer server = await StunServer.StartAsync(new() { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        using Socket intruder = await ConnectAsync(server.TcpEndPoint!);

        await intruder.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), SocketFlags.None);

        // Closed by the server: a FIN, or a RST because the rest of the junk was never read. Either way, no answer.
        try
        {
            int read = await intruder.ReceiveAsync(new byte[64], SocketFlags.None).WaitAsync(Limit);
            Assert.Equal(0, read);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        using Socket socket = await ConnectAsync(server.TcpEndPoint!);
        StunBindingResult result = await StunClient.BindingAsync(socket, server.TcpEndPoint!).WaitAsync(Limit);
        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
    }

    [Fact]
    public async Task ChangeRequestOverTcpIsABadRequest()
    {
        await using StunServer server = await StunServer.StartAsync(new()
        {
            PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            AlternateAddress = IPAddress.Parse("127.0.0.2"),
            AlternatePort = 0,
        });
        using Socket socket = await ConnectAsync(server.TcpEndPoint!);
        byte[] request = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, StunMessageBuilder.NewTransactionId())
            .AddUInt32(StunAttributeType.ChangeRequest, StunConstants.ChangeIp).ToArray();

        await socket.SendAsync(request, SocketFlags.None);
        StunMessage response = await ReadMessageAsync(socket);

        Assert.Equal(400, response.GetErrorCode()!.Value.Code);
    }

    [Fact]
    public async Task ASilentTcpServerTimesOutAfterTi()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using Socket socket = await ConnectAsync((IPEndPoint)listener.LocalEndPoint!);
        using Socket accepted = await listener.AcceptAsync().WaitAsync(Limit);

        var e = await Assert.ThrowsAsync<PeerLinkException>(() =>
            StunClient.BindingAsync(socket, (IPEndPoint)listener.LocalEndPoint!, new StunClientOptions { TcpTransactionTimeout = TimeSpan.FromMilliseconds(200) }).WaitAsync(Limit));

        Assert.Equal(PeerLinkError.StunTimeout, e.Error);
        Assert.True(accepted.Available > 0);   // the request did arrive
    }

    [Fact]
    public async Task AnUnconnectedTcpSocketIsAnArgumentError()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await Assert.ThrowsAsync<ArgumentException>("socket", () => StunClient.BindingAsync(socket, new IPEndPoint(IPAddress.Loopback, 3478)));
    }

    private static Task<Socket> ConnectAsync(IPEndPoint endPoint) => TestSockets.ConnectTcpAsync(endPoint, Limit);

    private static async Task<StunMessage> ReadMessageAsync(Socket socket)
    {
        byte[] buffer = new byte[2048];
        int filled = 0;
        using var timeout = new CancellationTokenSource(Limit);
        while (filled < 20 || filled < 20 + System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(2)))
        {
            int read = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, timeout.Token);
            Assert.NotEqual(0, read);
            filled += read;
        }

        Assert.True(StunMessage.TryParse(buffer.AsSpan(0, filled), out StunMessage? message, out string? error), error);
        return message!;
    }
}
