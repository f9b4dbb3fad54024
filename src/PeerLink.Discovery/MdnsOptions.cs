using System;
using System.Collections.Generic;
using System.Net.NetworkInformation;
using PeerLink.Discovery.Dns;

namespace PeerLink.Discovery;

/// <summary>Options of the mDNS engine behind <see cref="ServiceDiscovery"/>.</summary>
public sealed class MdnsOptions
{
    /// <summary>
    /// The names of the interfaces to use (for example "eth0"). Empty, the default, means every interface that is up,
    /// multicast-capable and not loopback. Interfaces that appear later are picked up.
    /// </summary>
    public IList<string> Interfaces { get; } = new List<string>();

    /// <summary>A further filter on the interfaces; null (the default) keeps all that <see cref="Interfaces"/> chose.</summary>
    public Func<NetworkInterface, bool>? InterfaceFilter { get; set; }

    /// <summary>Whether to use IPv4 (224.0.0.251). Default true.</summary>
    public bool UseIPv4 { get; set; } = true;

    /// <summary>Whether to use IPv6 (ff02::fb). Default true.</summary>
    public bool UseIPv6 { get; set; } = true;

    /// <summary>
    /// The first label of this host's mDNS name, which SRV records point at (".local" is added). Default null: "peerlink-"
    /// and six random hex digits, so that it never collides with the operating system's own name. Renamed on conflict.
    /// </summary>
    public string? HostName { get; set; }

    /// <summary>How often the interface list is checked, besides the operating system's change notifications. Default 5 s.</summary>
    public TimeSpan InterfacePollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The most records kept in the cache; more are ignored until some expire (a flood cannot grow memory). Default 4096.</summary>
    public int MaxCachedRecords { get; set; } = 4096;

    /// <summary>The clock for every protocol timer. Default <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    internal MdnsOptions Validate(string paramName)
    {
        if (!UseIPv4 && !UseIPv6)
        {
            throw new ArgumentException("MdnsOptions: at least one of UseIPv4 and UseIPv6 must be true.", paramName);
        }

        if (InterfacePollInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException($"MdnsOptions.InterfacePollInterval must be positive; it is {InterfacePollInterval}.", paramName);
        }

        if (MaxCachedRecords < 16)
        {
            throw new ArgumentException($"MdnsOptions.MaxCachedRecords must be at least 16; it is {MaxCachedRecords}.", paramName);
        }

        if (TimeProvider is null)
        {
            throw new ArgumentException("MdnsOptions.TimeProvider must not be null.", paramName);
        }

        if (HostName is not null)
        {
            try
            {
                _ = DnsName.FromLabels([HostName, "local"]);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"MdnsOptions.HostName '{HostName}' is not a valid DNS label: {e.Message}", paramName, e);
            }
        }

        return this;
    }
}
