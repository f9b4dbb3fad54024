using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Discovery;
using PeerLink.Discovery.Dns;
using PeerLink.Discovery.Mdns;
using PeerLink.Nat;
using PeerLink.Nat.Rendezvous;
using PeerLink.Nat.Stun;
using PeerLink.Security.Noise;
using PeerLink.Sessions;

namespace PeerLink.Fuzz;

/// <summary>One method per parser; each catches exactly the failure its parser documents for hostile input.</summary>
internal static class Targets
{
    private static readonly byte[] Payload = new byte[NoiseCipherState.MaxMessageLength];
    private static readonly PeerIdentity Responder = PeerIdentity.Generate();

    /// <summary>The DNS message codec: parse; what parses must write and parse again to the same records.</summary>
    public static void Dns(byte[] input)
    {
        if (DnsMessage.TryParse(input, out DnsMessage? message, out _))
        {
            byte[] written = message!.ToArray();
            if (!DnsMessage.TryParse(written, out DnsMessage? again, out string? error))
            {
                throw new InvalidOperationException($"A parsed message did not parse once written: {error}");
            }

            if (again!.Questions.Count != message.Questions.Count || again.Answers.Count != message.Answers.Count)
            {
                throw new InvalidOperationException("A parsed message lost records when written.");
            }
        }
    }

    private static readonly FuzzMdnsTransport MdnsLink = new();
    private static readonly ServiceDiscovery MdnsNode = StartMdns();

    /// <summary>The mDNS engine as a packet from the LAN reaches it: cache, conflicts, responder, all behind the codec.</summary>
    public static void Mdns(byte[] input) => MdnsLink.Deliver(input, input.Length > 0 && (input[0] & 1) != 0 ? 5353 : 40000);

    private static ServiceDiscovery StartMdns()
    {
        ServiceDiscovery discovery = ServiceDiscovery.Start(MdnsLink, new MdnsOptions { HostName = "fuzz" }, new Random(6762), NullLogger.Instance);
        _ = discovery.AdvertiseAsync(new ServiceProfile("Fuzz light", "_peerlink._tcp", 4242));
        return discovery;
    }

    /// <summary>The STUN codec: parse (RFC 8489 and RFC 3489 forms) and read every attribute a client or server reads.</summary>
    public static void Stun(byte[] input)
    {
        foreach (bool classic in new[] { false, true })
        {
            if (StunMessage.TryParse(input, out StunMessage? message, out _, classic))
            {
                _ = message!.GetXorMappedAddress();
                _ = message.GetMappedAddress();
                _ = message.GetResponseOrigin();
                _ = message.GetOtherAddress();
                _ = message.GetAlternateServer();
                _ = message.GetUsername();
                _ = message.GetRealm();
                _ = message.GetNonce();
                _ = message.GetSoftware();
                _ = message.GetErrorCode();
                _ = message.GetUnknownAttributes();
                _ = message.GetChangeRequest();
                _ = message.GetResponsePort();
                _ = message.GetPasswordAlgorithms();
                _ = message.HasValidFingerprint();
                _ = message.VerifyMessageIntegrity("key"u8);
                _ = message.VerifyMessageIntegritySha256("key"u8);
            }
        }
    }

    private static readonly Nat.StunServer Server = Nat.StunServer.StartAsync(new StunServerOptions { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0), EnableTcp = false }).GetAwaiter().GetResult();
    private static readonly IPEndPoint Client = new(IPAddress.Parse("192.0.2.1"), 40000);

    /// <summary>The STUN server's request handling: whatever the datagram, an answer or silence.</summary>
    public static void StunServer(byte[] input) => _ = Server.HandleDatagram(input, Client);

    /// <summary>The first Noise XX message as a responder sees it.</summary>
    public static void NoiseXx(byte[] input) => NoiseResponder(input, "Noise_XX_25519_ChaChaPoly_SHA256");

    /// <summary>The first Noise IK message as a responder sees it (it carries the initiator's encrypted static key).</summary>
    public static void NoiseIk(byte[] input) => NoiseResponder(input, "Noise_IK_25519_ChaChaPoly_SHA256");

    private static void NoiseResponder(byte[] input, string name)
    {
        using var handshake = new NoiseHandshakeState(NoiseProtocol.Parse(name), initiator: false, "PLNK"u8, localStatic: Responder.KeyPair);
        try
        {
            handshake.ReadMessage(input, Payload);
        }
        catch (PeerLinkException)
        {
            // Malformed, too large, or not authentic: the documented refusal.
        }
    }

    /// <summary>The session hello (MessagePack) a peer sends inside the handshake.</summary>
    public static void Hello(byte[] input)
    {
        try
        {
            _ = SessionHello.Read(input);
        }
        catch (PeerLinkException)
        {
        }
    }

    /// <summary>The rendezvous node's and the devices' control messages, and the path signalling inside sessions.</summary>
    public static void Rendezvous(byte[] input)
    {
        try
        {
            _ = RendezvousWire.Deserialize(input);
        }
        catch (PeerLinkException)
        {
        }

        try
        {
            _ = PathMessage.Deserialize(input);
        }
        catch (PeerLinkException)
        {
        }
    }

    private static readonly SecureSessionOptions RecordOptions = new() { Identity = Responder, MaxMessageSize = 64 * 1024 };

    /// <summary>
    /// Session records and fragments as a session's receive loop reads them: the input is the byte stream of frames
    /// (keyless, as records travel inside the datagram transport's encryption), then the end of the stream.
    /// </summary>
    public static void Records(byte[] input) => RecordsAsync(input).GetAwaiter().GetResult();

    private static async System.Threading.Tasks.Task RecordsAsync(byte[] input)
    {
        (Transport.PeerConnection local, Transport.PeerConnection remote) = Transport.PeerConnection.CreatePair();
        SecureSession session = SecureSession.StartKeylessForFuzzing(local, RecordOptions);
        await remote.Transport.Output.WriteAsync(input);
        await remote.Transport.Output.CompleteAsync();
        try
        {
            while (await session.ReceiveAsync() is { } message)
            {
                if (message.IsRequest)
                {
                    await session.RespondAsync(message, message.Payload);
                }
            }
        }
        catch (PeerLinkException)
        {
            // A malformed record or the stream's end in the middle of a frame: the documented failure.
        }

        session.Abort();
        await session.DisposeAsync();
        await remote.DisposeAsync();
    }

    private static readonly Transport.UdpTransport Udp = Transport.UdpTransport.Bind(new IPEndPoint(IPAddress.Loopback, 0), new SecureSessionOptions { Identity = Responder });
    private static readonly IPEndPoint UdpPeer = new(IPAddress.Loopback, 9);   // answers go to the discard port on loopback

    /// <summary>
    /// The datagram transport's messages as its socket receives them: initiations, responses, cookie replies, transport
    /// headers and STUN demultiplexing. (What lies inside a session's encryption is the records target's.)
    /// </summary>
    public static void Datagram(byte[] input) => Udp.DispatchForFuzzing(input, UdpPeer);

    /// <summary>An in-memory link on which each fuzz input arrives as a packet from another host.</summary>
    private sealed class FuzzMdnsTransport : IMdnsTransport
    {
        private static readonly MdnsLink Link = new(1, "fuzz0", [IPAddress.Parse("10.0.0.1")], 1452);
        private Action<ReadOnlyMemory<byte>, IPEndPoint, MdnsLink>? _onPacket;

        public IReadOnlyList<MdnsLink> Links => [Link];

        public void Start(Action<ReadOnlyMemory<byte>, IPEndPoint, MdnsLink> onPacket, Action onLinksChanged) => _onPacket = onPacket;

        public void Send(ReadOnlySpan<byte> packet, MdnsLink link, AddressFamily family, IPEndPoint? destination)
        {
        }

        public void Deliver(byte[] packet, int sourcePort) => _onPacket?.Invoke(packet, new IPEndPoint(IPAddress.Parse("10.0.0.9"), sourcePort), Link);

        public System.Threading.Tasks.ValueTask DisposeAsync() => default;
    }
}
