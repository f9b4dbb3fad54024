// RFC 6762 §3 and §5 (224.0.0.251 and ff02::fb, port 5353), §11 (IP TTL 255) and §15 (several responders on one host:
// address reuse).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;

using PeerLink.Transport;

namespace PeerLink.Discovery.Mdns;

/// <summary>An interface that mDNS runs on: its index, name, addresses and the largest packet that fits its MTU.</summary>
internal sealed record MdnsLink(int Index, string Name, IReadOnlyList<IPAddress> Addresses, int MaxPacketSize)
{
    public bool HasIPv4 => Addresses.Any(a => a.AddressFamily == AddressFamily.InterNetwork);

    public bool HasIPv6 => Addresses.Any(a => a.AddressFamily == AddressFamily.InterNetworkV6);

    public bool SameAs(MdnsLink other) =>
        Index == other.Index && Name == other.Name && MaxPacketSize == other.MaxPacketSize && Addresses.Order(AddressComparer.Instance).SequenceEqual(other.Addresses.Order(AddressComparer.Instance));

    private sealed class AddressComparer : IComparer<IPAddress>
    {
        public static readonly AddressComparer Instance = new();

        public int Compare(IPAddress? x, IPAddress? y) => string.CompareOrdinal(x?.ToString(), y?.ToString());
    }
}

/// <summary>What the engine needs from the network; real sockets in production, an in-memory link in tests.</summary>
internal interface IMdnsTransport : IAsyncDisposable
{
    /// <summary>The interfaces in use now.</summary>
    IReadOnlyList<MdnsLink> Links { get; }

    /// <summary>Starts delivering packets and interface changes. Packets may arrive on any thread.</summary>
    void Start(Action<ReadOnlyMemory<byte>, IPEndPoint, MdnsLink> onPacket, Action onLinksChanged);

    /// <summary>Sends a packet on one interface, to the group of <paramref name="family"/> or to <paramref name="destination"/>.</summary>
    void Send(ReadOnlySpan<byte> packet, MdnsLink link, AddressFamily family, IPEndPoint? destination);
}

/// <summary>
/// mDNS over UDP sockets: one socket per address family bound to port 5353 with address reuse (so that Avahi or Bonjour
/// can run beside it), joined to the group on each chosen interface. The arrival interface comes from the packet
/// information; the outgoing interface is set before each send, with sends serialised.
/// </summary>
internal sealed class UdpMdnsTransport : IMdnsTransport
{
    public const int Port = 5353;
    public static readonly IPAddress GroupV4 = IPAddress.Parse("224.0.0.251");
    public static readonly IPAddress GroupV6 = IPAddress.Parse("ff02::fb");

    private readonly MdnsOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _sendLock = new();
    private readonly CancellationTokenSource _stop = new();
    private Socket? _v4;
    private Socket? _v6;
    private volatile MdnsLink[] _links = [];
    private ITimer? _poll;
    private Action<ReadOnlyMemory<byte>, IPEndPoint, MdnsLink>? _onPacket;
    private Action? _onLinksChanged;
    private readonly List<Task> _loops = [];
    private int _disposed;

    public UdpMdnsTransport(MdnsOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
        try
        {
            if (options.UseIPv4)
            {
                _v4 = Bind(AddressFamily.InterNetwork);
            }

            if (options.UseIPv6 && Socket.OSSupportsIPv6)
            {
                _v6 = Bind(AddressFamily.InterNetworkV6);
            }
        }
        catch (SocketException e)
        {
            _v4?.Dispose();
            _v6?.Dispose();
            throw SocketErrors.Map(e, $"mDNS could not bind UDP port {Port}");
        }

        UpdateLinks();
    }

    public IReadOnlyList<MdnsLink> Links => _links;

    public void Start(Action<ReadOnlyMemory<byte>, IPEndPoint, MdnsLink> onPacket, Action onLinksChanged)
    {
        _onPacket = onPacket;
        _onLinksChanged = onLinksChanged;
        if (_v4 is not null)
        {
            _loops.Add(Task.Run(() => ReceiveLoopAsync(_v4)));
        }

        if (_v6 is not null)
        {
            _loops.Add(Task.Run(() => ReceiveLoopAsync(_v6)));
        }

        NetworkChange.NetworkAddressChanged += OnNetworkChanged;
        _poll = _options.TimeProvider.CreateTimer(_ => OnNetworkChanged(null, EventArgs.Empty), null, _options.InterfacePollInterval, _options.InterfacePollInterval);
    }

    public void Send(ReadOnlySpan<byte> packet, MdnsLink link, AddressFamily family, IPEndPoint? destination)
    {
        Socket? socket = family == AddressFamily.InterNetwork ? _v4 : _v6;
        if (socket is null || Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        destination ??= family == AddressFamily.InterNetwork ? new IPEndPoint(GroupV4, Port) : new IPEndPoint(GroupV6, Port);
        try
        {
            lock (_sendLock)
            {
                if (family == AddressFamily.InterNetwork)
                {
                    IPAddress? source = link.Addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork);
                    if (source is null)
                    {
                        return;
                    }

                    socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastInterface, BitConverter.ToInt32(source.GetAddressBytes()));
                }
                else
                {
                    socket.SetSocketOption(SocketOptionLevel.IPv6, SocketOptionName.MulticastInterface, link.Index);
                    if (destination.Address.IsIPv6LinkLocal && destination.Address.ScopeId == 0)
                    {
                        destination = new IPEndPoint(new IPAddress(destination.Address.GetAddressBytes(), link.Index), destination.Port);
                    }
                }

                socket.SendTo(packet, SocketFlags.None, destination);
            }
        }
        catch (SocketException e)
        {
            MdnsLog.SendFailed(_logger, link.Name, destination.ToString(), e.SocketErrorCode.ToString());
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        NetworkChange.NetworkAddressChanged -= OnNetworkChanged;
        if (_poll is not null)
        {
            await _poll.DisposeAsync().ConfigureAwait(false);
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _v4?.Dispose();
        _v6?.Dispose();
        await Task.WhenAll(_loops).ConfigureAwait(false);
        _stop.Dispose();
    }

    private Socket Bind(AddressFamily family)
    {
        var socket = new Socket(family, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            if (family == AddressFamily.InterNetwork)
            {
                socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.PacketInformation, true);
                socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastTimeToLive, 255);
                socket.Ttl = 255;
                socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastLoopback, true);
                socket.Bind(new IPEndPoint(IPAddress.Any, Port));
            }
            else
            {
                socket.DualMode = false;
                socket.SetSocketOption(SocketOptionLevel.IPv6, SocketOptionName.PacketInformation, true);
                socket.SetSocketOption(SocketOptionLevel.IPv6, SocketOptionName.MulticastTimeToLive, 255);
                socket.Ttl = 255;
                socket.SetSocketOption(SocketOptionLevel.IPv6, SocketOptionName.MulticastLoopback, true);
                socket.Bind(new IPEndPoint(IPAddress.IPv6Any, Port));
            }

            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private async Task ReceiveLoopAsync(Socket socket)
    {
        byte[] buffer = new byte[MdnsPackets.MaxPacketSize];
        EndPoint any = socket.AddressFamily == AddressFamily.InterNetwork ? new IPEndPoint(IPAddress.Any, 0) : new IPEndPoint(IPAddress.IPv6Any, 0);
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveMessageFromResult result;
            try
            {
                result = await socket.ReceiveMessageFromAsync(buffer, SocketFlags.None, any, _stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                // ICMP errors and the like from earlier sends: this socket keeps serving.
                MdnsLog.ReceiveFailed(_logger, e.SocketErrorCode.ToString());
                continue;
            }

            MdnsLink? link = Array.Find(_links, l => l.Index == result.PacketInformation.Interface);
            if (link is null || result.RemoteEndPoint is not IPEndPoint source)
            {
                continue;   // an interface we were not asked to use
            }

            try
            {
                _onPacket?.Invoke(buffer.AsMemory(0, result.ReceivedBytes), source, link);
            }
            catch (Exception e)
            {
                MdnsLog.PacketHandlerFailed(_logger, e);
            }
        }
    }

    private void OnNetworkChanged(object? sender, EventArgs e)
    {
        if (Volatile.Read(ref _disposed) == 0 && UpdateLinks())
        {
            _onLinksChanged?.Invoke();
        }
    }

    private readonly Lock _linksLock = new();

    /// <summary>Finds the chosen interfaces, joins the group on new ones and leaves it on gone ones; true when the set changed.</summary>
    private bool UpdateLinks()
    {
        lock (_linksLock)
        {
            List<MdnsLink> found = FindLinks();
            MdnsLink[] old = _links;
            bool changed = found.Count != old.Length || found.Any(f => !old.Any(o => o.SameAs(f)));
            if (!changed)
            {
                return false;
            }

            foreach (MdnsLink gone in old.Where(o => !found.Any(f => f.Index == o.Index)))
            {
                Membership(gone, join: false);
            }

            foreach (MdnsLink added in found.Where(f => !old.Any(o => o.Index == f.Index && o.HasIPv4 == f.HasIPv4 && o.HasIPv6 == f.HasIPv6)))
            {
                Membership(added, join: true);
            }

            _links = [.. found];
            foreach (MdnsLink link in found)
            {
                MdnsLog.UsingInterface(_logger, link.Name, link.Index, string.Join(", ", link.Addresses));
            }

            return true;
        }
    }

    private void Membership(MdnsLink link, bool join)
    {
        SocketOptionName change = join ? SocketOptionName.AddMembership : SocketOptionName.DropMembership;
        if (_v4 is not null && link.HasIPv4)
        {
            SetMembership(_v4, SocketOptionLevel.IP, change, new MulticastOption(GroupV4, link.Index), link, "IPv4");
        }

        if (_v6 is not null && link.HasIPv6)
        {
            SetMembership(_v6, SocketOptionLevel.IPv6, change, new IPv6MulticastOption(GroupV6, link.Index), link, "IPv6");
        }
    }

    private void SetMembership(Socket socket, SocketOptionLevel level, SocketOptionName change, object option, MdnsLink link, string family)
    {
        try
        {
            socket.SetSocketOption(level, change, option);
        }
        catch (SocketException e)
        {
            MdnsLog.MembershipFailed(_logger, link.Name, family, e.SocketErrorCode.ToString());
        }
    }

    private List<MdnsLink> FindLinks()
    {
        var links = new List<MdnsLink>();
        NetworkInterface[] interfaces;
        try
        {
            interfaces = NetworkInterface.GetAllNetworkInterfaces();
        }
        catch (NetworkInformationException)
        {
            return links;
        }

        foreach (NetworkInterface nic in interfaces)
        {
            bool chosen = _options.Interfaces.Count > 0
                ? _options.Interfaces.Contains(nic.Name, StringComparer.Ordinal)
                : nic.OperationalStatus == OperationalStatus.Up && nic.SupportsMulticast && nic.NetworkInterfaceType != NetworkInterfaceType.Loopback;
            if (!chosen || (_options.InterfaceFilter is { } filter && !filter(nic)) || nic.OperationalStatus == OperationalStatus.Down)
            {
                continue;
            }

            IPInterfaceProperties properties = nic.GetIPProperties();
            int index;
            int mtu = 1500;
            try
            {
                if (nic.Supports(NetworkInterfaceComponent.IPv4))
                {
                    IPv4InterfaceProperties v4 = properties.GetIPv4Properties();
                    index = v4.Index;
                    mtu = v4.Mtu > 0 ? v4.Mtu : mtu;
                }
                else
                {
                    index = properties.GetIPv6Properties().Index;
                }
            }
            catch (NetworkInformationException)
            {
                continue;
            }

            List<IPAddress> addresses = properties.UnicastAddresses
                .Select(u => u.Address)
                .Where(a => (a.AddressFamily == AddressFamily.InterNetwork && _options.UseIPv4) || (a.AddressFamily == AddressFamily.InterNetworkV6 && _options.UseIPv6))
                .ToList();
            if (addresses.Count > 0)
            {
                // IP and UDP headers: 20 + 8 for IPv4, 40 + 8 for IPv6; size packets for the larger.
                links.Add(new MdnsLink(index, nic.Name, addresses, Math.Min(mtu - 48, MdnsPackets.MaxPacketSize)));
            }
        }

        return links;
    }
}
