using System;
using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Transport;
using Xunit;

namespace PeerLink.FunctionalTests.Transport;

/// <summary>Socket failures become one PeerLinkException whose code says what happened, at every socket edge.</summary>
public sealed class SocketErrorTests
{
    [Theory]
    [InlineData(SocketError.AddressAlreadyInUse, PeerLinkError.AddressInUse)]
    [InlineData(SocketError.AddressNotAvailable, PeerLinkError.AddressNotAvailable)]
    [InlineData(SocketError.AccessDenied, PeerLinkError.AddressNotAvailable)]
    [InlineData(SocketError.ConnectionRefused, PeerLinkError.ConnectionRefused)]
    [InlineData(SocketError.TimedOut, PeerLinkError.ConnectionTimeout)]
    [InlineData(SocketError.HostUnreachable, PeerLinkError.HostUnreachable)]
    [InlineData(SocketError.NetworkUnreachable, PeerLinkError.HostUnreachable)]
    [InlineData(SocketError.HostNotFound, PeerLinkError.HostUnreachable)]
    [InlineData(SocketError.ConnectionReset, PeerLinkError.ConnectionReset)]
    [InlineData(SocketError.Shutdown, PeerLinkError.ConnectionReset)]
    [InlineData(SocketError.OperationAborted, PeerLinkError.ConnectionAborted)]
    [InlineData(SocketError.InvalidArgument, PeerLinkError.ConnectionAborted)]
    [InlineData(SocketError.MessageSize, PeerLinkError.MessageTooLarge)]
    [InlineData(SocketError.ProtocolNotSupported, PeerLinkError.Unknown)]
    public void EachSocketErrorHasTheCodeThatSaysWhatHappened(SocketError socketError, PeerLinkError expected)
    {
        var cause = new SocketException((int)socketError);
        PeerLinkException mapped = SocketErrors.Map(cause, "Doing something");
        Assert.Equal(expected, mapped.Error);
        Assert.Same(cause, mapped.InnerException);
        Assert.StartsWith("Doing something: ", mapped.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NonSocketFailuresAreMappedToo()
    {
        Assert.Equal(PeerLinkError.ConnectionAborted, SocketErrors.Map(new ObjectDisposedException("socket"), "x").Error);
        Assert.Equal(PeerLinkError.Unknown, SocketErrors.Map(new InvalidOperationException(), "x").Error);
        var known = new PeerLinkException(PeerLinkError.PeerTimeout, "gone");
        Assert.Same(known, SocketErrors.Map(known, "x"));
    }

    [Fact]
    public async Task ListeningOnAPortInUseIsAddressInUse()
    {
        await using TcpPeerListener first = TcpPeerListener.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        var error = Assert.Throws<PeerLinkException>(() => TcpPeerListener.Listen((IPEndPoint)first.LocalEndPoint));
        Assert.Equal(PeerLinkError.AddressInUse, error.Error);
        Assert.Contains(first.LocalEndPoint.ToString()!, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConnectingWhereNothingListensIsConnectionRefused()
    {
        IPEndPoint closed;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            closed = (IPEndPoint)probe.LocalEndPoint!;      // bound, never listening: a connect gets RST
        }

        var error = await Assert.ThrowsAsync<PeerLinkException>(async () => await new TcpPeerConnector().ConnectAsync(closed));
        Assert.Equal(PeerLinkError.ConnectionRefused, error.Error);
    }

    [Fact]
    public async Task AStunServerOnAPortInUseIsAddressInUseNotASocketException()
    {
        using var holder = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        holder.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var options = new StunServerOptions { PrimaryEndPoint = (IPEndPoint)holder.LocalEndPoint!, EnableTcp = false };

        var error = await Assert.ThrowsAsync<PeerLinkException>(() => StunServer.StartAsync(options));
        Assert.Equal(PeerLinkError.AddressInUse, error.Error);
    }
}
