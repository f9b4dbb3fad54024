using System;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Nat.Stun;
using Xunit;

namespace PeerLink.FunctionalTests.Stun;

/// <summary>
/// The server's long-term credential mechanism (RFC 8489 §9.2.4): the challenge, a stateless nonce bound to the client's
/// address and expiring on the server's clock, PASSWORD-ALGORITHMS, USERHASH, and the clients of RFC 8489 and RFC 5389.
/// </summary>
public sealed class StunLongTermServerTests
{
    private const string Realm = "lab.peerlink.invalid";
    private const string User = "gateway";
    private const string Password = "correct horse";
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task TheClientAnswersTheChallengeWithSha256AndGetsAProtectedAnswer()
    {
        await using StunServer server = await StartAsync();
        using Socket socket = BoundUdp(IPAddress.Loopback);

        StunBindingResult ok = await StunClient.BindingAsync(socket, server.LocalEndPoints[0], ClientOptions(Password)).WaitAsync(Limit);
        var wrong = await Assert.ThrowsAsync<PeerLinkException>(() => StunClient.BindingAsync(socket, server.LocalEndPoints[0], ClientOptions("guess")).WaitAsync(Limit));
        var shortTerm = await Assert.ThrowsAsync<PeerLinkException>(() =>
            StunClient.BindingAsync(socket, server.LocalEndPoints[0], new StunClientOptions { Username = User, Password = Password }).WaitAsync(Limit));

        Assert.Equal(socket.LocalEndPoint, ok.MappedAddress);
        Assert.Equal(PeerLinkError.StunError, wrong.Error);
        Assert.Contains("401", wrong.Message, StringComparison.Ordinal);
        Assert.Contains("400", shortTerm.Message, StringComparison.Ordinal);   // MESSAGE-INTEGRITY without REALM and NONCE
    }

    [Fact]
    public async Task AgainstAnRfc8489ChallengeTheClientChoosesSha256AndEchoesTheList()
    {
        using Socket fake = BoundUdp(IPAddress.Loopback);
        using Socket socket = BoundUdp(IPAddress.Loopback);
        const string nonce = "obMatJos2wAAAscripted";
        byte[] key = StunCredentials.LongTermKey(User, Realm, Password, StunConstants.PasswordAlgorithmSha256);
        StunMessage? authenticated = null;
        Task server = Task.Run(async () =>
        {
            byte[] buffer = new byte[2048];
            while (true)
            {
                SocketReceiveFromResult r = await fake.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0));
                Assert.True(StunMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out StunMessage? request, out _));
                StunMessageBuilder reply;
                if (request!.GetNonce() is null)
                {
                    reply = new StunMessageBuilder(StunClass.ErrorResponse, StunMethod.Binding, request.TransactionId).AddErrorCode(401, "Unauthenticated")
                        .AddString(StunAttributeType.Realm, Realm).AddString(StunAttributeType.Nonce, nonce)
                        .AddPasswordAlgorithms(StunConstants.PasswordAlgorithmMd5, StunConstants.PasswordAlgorithmSha256);
                }
                else
                {
                    authenticated = request;
                    reply = new StunMessageBuilder(StunClass.SuccessResponse, StunMethod.Binding, request.TransactionId)
                        .AddAddress(StunAttributeType.XorMappedAddress, (IPEndPoint)r.RemoteEndPoint).AddMessageIntegritySha256(key);
                }

                await fake.SendToAsync(reply.AddFingerprint().ToArray(), SocketFlags.None, r.RemoteEndPoint);
                if (authenticated is not null)
                {
                    return;
                }
            }
        });

        StunBindingResult result = await StunClient.BindingAsync(socket, (IPEndPoint)fake.LocalEndPoint!, ClientOptions(Password)).WaitAsync(Limit);
        await server.WaitAsync(Limit);

        Assert.Equal(socket.LocalEndPoint, result.MappedAddress);
        Assert.Equal(new ushort[] { StunConstants.PasswordAlgorithmMd5, StunConstants.PasswordAlgorithmSha256 }, authenticated!.GetPasswordAlgorithms());
        Assert.Equal(StunConstants.PasswordAlgorithmSha256, authenticated.GetPasswordAlgorithm());
        Assert.True(authenticated.VerifyMessageIntegritySha256(key));
        Assert.False(authenticated.Has(StunAttributeType.MessageIntegrity));
    }

    [Fact]
    public async Task TheClientWorksOverTcpToo()
    {
        await using StunServer server = await StartAsync();
        using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await tcp.ConnectAsync(server.TcpEndPoint!);

        StunBindingResult ok = await StunClient.BindingAsync(tcp, server.TcpEndPoint!, ClientOptions(Password)).WaitAsync(Limit);

        Assert.Equal(tcp.LocalEndPoint, ok.MappedAddress);
    }

    [Fact]
    public async Task ARequestWithoutIntegrityIsChallengedWithRealmNonceAndAlgorithms()
    {
        await using StunServer server = await StartAsync();
        using Socket socket = BoundUdp(IPAddress.Loopback);

        StunMessage challenge = await ExchangeAsync(socket, server.LocalEndPoints[0], Builder().AddString(StunAttributeType.Username, User));

        Assert.Equal(StunClass.ErrorResponse, challenge.Class);
        Assert.Equal(401, challenge.GetErrorCode()!.Value.Code);
        Assert.Equal(Realm, challenge.GetRealm());
        Assert.StartsWith("obMatJos2", challenge.GetNonce(), StringComparison.Ordinal);
        Assert.True(StunLongTermAuth.AnnouncesPasswordAlgorithms(challenge.GetNonce()!));
        Assert.Equal(new ushort[] { StunConstants.PasswordAlgorithmSha256, StunConstants.PasswordAlgorithmMd5 }, challenge.GetPasswordAlgorithms());
        Assert.False(challenge.Has(StunAttributeType.MessageIntegrity));
        Assert.False(challenge.Has(StunAttributeType.MessageIntegritySha256));
        Assert.True(challenge.HasValidFingerprint());
    }

    [Fact]
    public async Task AnRfc5389ClientWithMd5AndMessageIntegrityIsAccepted()
    {
        await using StunServer server = await StartAsync();
        using Socket socket = BoundUdp(IPAddress.Loopback);
        string nonce = await NonceAsync(socket, server);
        byte[] md5Key = StunCredentials.LongTermKey(User, Realm, Password);

        StunMessage ok = await ExchangeAsync(socket, server.LocalEndPoints[0], Builder()
            .AddString(StunAttributeType.Username, User).AddString(StunAttributeType.Realm, Realm).AddString(StunAttributeType.Nonce, nonce)
            .AddMessageIntegrity(md5Key));

        Assert.Equal(StunClass.SuccessResponse, ok.Class);
        Assert.True(ok.VerifyMessageIntegrity(md5Key));
        Assert.False(ok.Has(StunAttributeType.MessageIntegritySha256));
        Assert.Equal(socket.LocalEndPoint, ok.GetXorMappedAddress());
    }

    [Fact]
    public async Task UserHashStandsInForTheUserName()
    {
        await using StunServer server = await StartAsync();
        using Socket socket = BoundUdp(IPAddress.Loopback);
        string nonce = await NonceAsync(socket, server);
        byte[] key = StunCredentials.LongTermKey(User, Realm, Password, StunConstants.PasswordAlgorithmSha256);

        StunMessage ok = await ExchangeAsync(socket, server.LocalEndPoints[0], Authenticated(nonce, key, userHash: StunCredentials.UserHash(User, Realm)));
        StunMessage otherUser = await ExchangeAsync(socket, server.LocalEndPoints[0], Authenticated(nonce, key, userHash: StunCredentials.UserHash("intruder", Realm)));

        Assert.Equal(StunClass.SuccessResponse, ok.Class);
        Assert.True(ok.VerifyMessageIntegritySha256(key));
        Assert.Equal(401, otherUser.GetErrorCode()!.Value.Code);
        Assert.NotNull(otherUser.GetNonce());   // a 401 challenges again
    }

    [Fact]
    public async Task InconsistentPasswordAlgorithmsAreError400()
    {
        await using StunServer server = await StartAsync();
        using Socket socket = BoundUdp(IPAddress.Loopback);
        string nonce = await NonceAsync(socket, server);
        byte[] key = StunCredentials.LongTermKey(User, Realm, Password, StunConstants.PasswordAlgorithmSha256);

        // A downgrade attempt: the list the server sent, reordered.
        StunMessage reordered = await ExchangeAsync(socket, server.LocalEndPoints[0], Builder()
            .AddString(StunAttributeType.Username, User).AddString(StunAttributeType.Realm, Realm).AddString(StunAttributeType.Nonce, nonce)
            .AddPasswordAlgorithms(StunConstants.PasswordAlgorithmMd5, StunConstants.PasswordAlgorithmSha256)
            .AddPasswordAlgorithm(StunConstants.PasswordAlgorithmSha256).AddMessageIntegritySha256(key));
        StunMessage chosenOnly = await ExchangeAsync(socket, server.LocalEndPoints[0], Builder()
            .AddString(StunAttributeType.Username, User).AddString(StunAttributeType.Realm, Realm).AddString(StunAttributeType.Nonce, nonce)
            .AddPasswordAlgorithm(StunConstants.PasswordAlgorithmSha256).AddMessageIntegritySha256(key));

        Assert.Equal(400, reordered.GetErrorCode()!.Value.Code);
        Assert.Equal(400, chosenOnly.GetErrorCode()!.Value.Code);
        Assert.Null(reordered.GetNonce());
    }

    [Fact]
    public async Task IntegrityWithoutNonceIsError400()
    {
        await using StunServer server = await StartAsync();
        using Socket socket = BoundUdp(IPAddress.Loopback);
        byte[] key = StunCredentials.LongTermKey(User, Realm, Password);

        StunMessage response = await ExchangeAsync(socket, server.LocalEndPoints[0], Builder()
            .AddString(StunAttributeType.Username, User).AddString(StunAttributeType.Realm, Realm).AddMessageIntegrity(key));

        Assert.Equal(400, response.GetErrorCode()!.Value.Code);
    }

    [Fact]
    public async Task AnExpiredNonceIs438WithAFreshOneThatWorks()
    {
        var clock = new ManualTimeProvider(DateTimeOffset.Parse("2026-11-21T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        await using StunServer server = await StartAsync(clock);
        using Socket socket = BoundUdp(IPAddress.Loopback);
        string nonce = await NonceAsync(socket, server);
        byte[] key = StunCredentials.LongTermKey(User, Realm, Password, StunConstants.PasswordAlgorithmSha256);

        StunMessage fresh = await ExchangeAsync(socket, server.LocalEndPoints[0], Authenticated(nonce, key));
        clock.Advance(TimeSpan.FromMinutes(5) + TimeSpan.FromSeconds(1));
        StunMessage stale = await ExchangeAsync(socket, server.LocalEndPoints[0], Authenticated(nonce, key));
        StunMessage renewed = await ExchangeAsync(socket, server.LocalEndPoints[0], Authenticated(stale.GetNonce()!, key));

        Assert.Equal(StunClass.SuccessResponse, fresh.Class);
        Assert.Equal(438, stale.GetErrorCode()!.Value.Code);
        Assert.Equal(Realm, stale.GetRealm());
        Assert.NotEqual(nonce, stale.GetNonce());
        Assert.False(stale.Has(StunAttributeType.MessageIntegritySha256));
        Assert.Equal(StunClass.SuccessResponse, renewed.Class);
    }

    [Fact]
    public async Task ANonceIsBoundToTheClientAddressAndCannotBeForged()
    {
        await using StunServer server = await StartAsync(address: IPAddress.Any);
        var endpoint = new IPEndPoint(IPAddress.Loopback, server.LocalEndPoints[0].Port);
        using Socket first = BoundUdp(IPAddress.Loopback);
        using Socket second = BoundUdp(IPAddress.Parse("127.0.0.2"));
        string nonce = await NonceAsync(first, server, endpoint);
        byte[] key = StunCredentials.LongTermKey(User, Realm, Password, StunConstants.PasswordAlgorithmSha256);
        char[] tampered = nonce.ToCharArray();
        tampered[^3] = tampered[^3] == 'A' ? 'B' : 'A';

        StunMessage elsewhere = await ExchangeAsync(second, endpoint, Authenticated(nonce, key));
        StunMessage forged = await ExchangeAsync(first, endpoint, Authenticated(new string(tampered), key));
        StunMessage made = await ExchangeAsync(first, endpoint, Authenticated("obMatJos2wAAA" + new string('A', 32), key));
        StunMessage own = await ExchangeAsync(first, endpoint, Authenticated(nonce, key));

        Assert.Equal(438, elsewhere.GetErrorCode()!.Value.Code);
        Assert.Equal(438, forged.GetErrorCode()!.Value.Code);
        Assert.Equal(438, made.GetErrorCode()!.Value.Code);
        Assert.Equal(StunClass.SuccessResponse, own.Class);
    }

    [Fact]
    public async Task BadOptionsAreNamed()
    {
        await Assert.ThrowsAsync<ArgumentException>("options", () => StunServer.StartAsync(new() { Realm = Realm }));
        await Assert.ThrowsAsync<ArgumentException>("options", () => StunServer.StartAsync(new() { Realm = "", Username = User, Password = Password }));
        await Assert.ThrowsAsync<ArgumentException>("options", () => StunServer.StartAsync(new() { Realm = Realm, Username = User, Password = Password, NonceLifetime = TimeSpan.Zero }));
    }

    private static Task<StunServer> StartAsync(TimeProvider? clock = null, IPAddress? address = null) => StunServer.StartAsync(new()
    {
        PrimaryEndPoint = new IPEndPoint(address ?? IPAddress.Loopback, 0),
        Username = User,
        Password = Password,
        Realm = Realm,
        NonceLifetime = TimeSpan.FromMinutes(5),
        TimeProvider = clock ?? TimeProvider.System,
    });

    private static StunClientOptions ClientOptions(string password) => new()
    {
        Username = User,
        Password = password,
        UseLongTermCredentials = true,
        InitialRto = TimeSpan.FromMilliseconds(200),
    };

    private static StunMessageBuilder Builder() => new(StunClass.Request, StunMethod.Binding, StunMessageBuilder.NewTransactionId());

    private static StunMessageBuilder Authenticated(string nonce, byte[] sha256Key, byte[]? userHash = null)
    {
        StunMessageBuilder builder = Builder();
        if (userHash is null)
        {
            builder.AddString(StunAttributeType.Username, User);
        }
        else
        {
            builder.Add(StunAttributeType.UserHash, userHash);
        }

        return builder.AddString(StunAttributeType.Realm, Realm).AddString(StunAttributeType.Nonce, nonce)
            .AddPasswordAlgorithms(StunConstants.PasswordAlgorithmSha256, StunConstants.PasswordAlgorithmMd5)
            .AddPasswordAlgorithm(StunConstants.PasswordAlgorithmSha256)
            .AddMessageIntegritySha256(sha256Key);
    }

    private static async Task<string> NonceAsync(Socket socket, StunServer server, IPEndPoint? endpoint = null)
    {
        StunMessage challenge = await ExchangeAsync(socket, endpoint ?? server.LocalEndPoints[0], Builder());
        Assert.Equal(401, challenge.GetErrorCode()!.Value.Code);
        return challenge.GetNonce()!;
    }

    private static Socket BoundUdp(IPAddress address)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(address, 0));
        return socket;
    }

    /// <summary>Sends the request, repeating it every 250 ms as a STUN client would, until its answer arrives.</summary>
    private static async Task<StunMessage> ExchangeAsync(Socket socket, IPEndPoint server, StunMessageBuilder builder)
    {
        byte[] request = builder.AddFingerprint().ToArray();
        byte[] id = request.AsSpan(8, 12).ToArray();
        byte[] buffer = new byte[2048];
        using var deadline = new CancellationTokenSource(Limit);
        while (true)
        {
            await socket.SendToAsync(request, SocketFlags.None, server, deadline.Token);
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token);
            attempt.CancelAfter(TimeSpan.FromMilliseconds(250));
            try
            {
                while (true)
                {
                    SocketReceiveFromResult r = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), attempt.Token);
                    if (StunMessage.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out StunMessage? message, out _) && message!.TransactionId.SequenceEqual(id))
                    {
                        return message;
                    }
                }
            }
            catch (OperationCanceledException) when (!deadline.IsCancellationRequested)
            {
                // No answer yet: send again.
            }
        }
    }

    private sealed class ManualTimeProvider(DateTimeOffset start) : TimeProvider
    {
        private DateTimeOffset _now = start;

        public override DateTimeOffset GetUtcNow() => _now;

        public void Advance(TimeSpan by) => _now += by;
    }
}
