// RFC 6763 §4.1 (instance names), §6 (TXT: key=value, bare keys, case-insensitive keys, first occurrence wins), §7
// (service types "_name._tcp" and "_name._udp"; subtypes "_sub").
using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Linq;
using System.Net;
using System.Text;
using PeerLink.Discovery.Dns;

namespace PeerLink.Discovery;

/// <summary>A service to advertise: an instance name, a service type, a port, subtypes and TXT properties.</summary>
public sealed class ServiceProfile
{
    /// <summary>A profile; the arguments are checked when it is advertised.</summary>
    /// <param name="instanceName">The user-visible name, 1–63 bytes of UTF-8, any characters (for example "Kitchen Light").</param>
    /// <param name="serviceType">The type, for example "_http._tcp" (".local" is implied).</param>
    /// <param name="port">The TCP or UDP port the service listens on, 1–65535.</param>
    public ServiceProfile(string instanceName, string serviceType, int port)
    {
        InstanceName = instanceName;
        ServiceType = serviceType;
        Port = port;
    }

    /// <summary>The user-visible name; the engine renames on a conflict ("Name (2)") and says so in the registration.</summary>
    public string InstanceName { get; }

    /// <summary>The service type, for example "_peerlink._tcp".</summary>
    public string ServiceType { get; }

    /// <summary>The port.</summary>
    public int Port { get; }

    /// <summary>Subtypes (for example "_printer"), each announced as "_printer._sub.TYPE". Default none.</summary>
    public IList<string> Subtypes { get; } = new List<string>();

    /// <summary>TXT properties in order: "key=value", or a bare "key" when the value is null (RFC 6763 §6.4). Default none.</summary>
    public IList<KeyValuePair<string, string?>> Properties { get; } = new List<KeyValuePair<string, string?>>();

    internal DnsName ServiceTypeName(string paramName) => ServiceNames.ParseType(ServiceType, paramName);

    internal IReadOnlyList<byte[]> EncodeTxt(string paramName) => TxtProperties.Encode(Properties, paramName);

    internal void Validate(string paramName)
    {
        if (string.IsNullOrEmpty(InstanceName) || Encoding.UTF8.GetByteCount(InstanceName) > DnsName.MaxLabelLength)
        {
            throw new ArgumentException($"The instance name must have 1 to 63 bytes of UTF-8; '{InstanceName}' does not.", paramName);
        }

        if (Port is < 1 or > 65535)
        {
            throw new ArgumentException($"The port must be 1 to 65535; it is {Port}.", paramName);
        }

        DnsName type = ServiceTypeName(paramName);
        foreach (string subtype in Subtypes)
        {
            if (string.IsNullOrEmpty(subtype) || !subtype.StartsWith('_') || Encoding.UTF8.GetByteCount(subtype) > DnsName.MaxLabelLength)
            {
                throw new ArgumentException($"The subtype '{subtype}' must start with '_' and have at most 63 bytes.", paramName);
            }
        }

        _ = type.Prepend(InstanceName);
        _ = EncodeTxt(paramName);
    }
}

/// <summary>A service instance found on the network, with everything needed to connect to it.</summary>
public sealed class ServiceInstance
{
    internal ServiceInstance(string instanceName, string serviceType, string hostName, int port, IReadOnlyList<IPAddress> addresses, IReadOnlyDictionary<string, string?> properties)
    {
        InstanceName = instanceName;
        ServiceType = serviceType;
        HostName = hostName;
        Port = port;
        Addresses = addresses;
        Properties = properties;
    }

    /// <summary>The instance name, for example "Kitchen Light".</summary>
    public string InstanceName { get; }

    /// <summary>The service type with its domain, for example "_peerlink._tcp.local".</summary>
    public string ServiceType { get; }

    /// <summary>The host the SRV record names, for example "kitchen.local".</summary>
    public string HostName { get; }

    /// <summary>The port from the SRV record.</summary>
    public int Port { get; }

    /// <summary>The host's addresses; IPv6 link-local ones carry the scope (interface index) they were seen on.</summary>
    public IReadOnlyList<IPAddress> Addresses { get; }

    /// <summary>The TXT properties; keys compare without case, and a bare key has a null value (RFC 6763 §6).</summary>
    public IReadOnlyDictionary<string, string?> Properties { get; }

    /// <summary>The addresses with the port.</summary>
    public IReadOnlyList<IPEndPoint> EndPoints => Addresses.Select(a => new IPEndPoint(a, Port)).ToArray();

    internal bool SameAs(ServiceInstance other) =>
        HostName == other.HostName && Port == other.Port &&
        Addresses.Select(a => a.ToString()).Order().SequenceEqual(other.Addresses.Select(a => a.ToString()).Order()) &&
        Properties.Count == other.Properties.Count && Properties.All(p => other.Properties.TryGetValue(p.Key, out string? v) && v == p.Value);

    /// <inheritdoc/>
    public override string ToString() => $"{InstanceName}.{ServiceType} at {HostName}:{Port} [{string.Join(", ", Addresses)}]";
}

/// <summary>What happened to a service instance.</summary>
public enum ServiceEventKind
{
    /// <summary>The instance appeared, complete with its address, port and properties.</summary>
    Found,

    /// <summary>Its addresses, port or properties changed.</summary>
    Updated,

    /// <summary>It said goodbye or its records expired.</summary>
    Lost,
}

/// <summary>A change seen while browsing.</summary>
/// <param name="Kind">Found, updated or lost.</param>
/// <param name="Instance">The instance as it is now (as it was last seen, for <see cref="ServiceEventKind.Lost"/>).</param>
public sealed record ServiceEvent(ServiceEventKind Kind, ServiceInstance Instance);

internal static class ServiceNames
{
    public static DnsName ParseType(string serviceType, string paramName)
    {
        if (string.IsNullOrWhiteSpace(serviceType))
        {
            throw new ArgumentException("The service type must be like \"_name._tcp\".", paramName);
        }

        DnsName name;
        try
        {
            name = DnsName.Parse(serviceType);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"The service type '{serviceType}' is not a valid name: {e.Message}", paramName, e);
        }

        if (!name.EndsWith(MdnsEngineNames.Local))
        {
            name = name.Append(MdnsEngineNames.Local);
        }

        // "_name._proto.local", optionally behind "_sub._sub" for a subtype browse.
        IReadOnlyList<string> labels = name.Labels;
        int n = labels.Count;
        bool valid = n >= 3 && labels[n - 3].StartsWith('_') && labels[n - 2] is "_tcp" or "_udp" &&
                     (n == 3 || (n == 5 && labels[1].Equals("_sub", StringComparison.OrdinalIgnoreCase) && labels[0].StartsWith('_')));
        if (!valid)
        {
            throw new ArgumentException($"The service type '{serviceType}' must be like \"_name._tcp\" or \"_name._udp\" (or \"_sub1._sub._name._tcp\").", paramName);
        }

        return name;
    }
}

internal static class MdnsEngineNames
{
    public static readonly DnsName Local = DnsName.Parse("local");
}

/// <summary>TXT strings to and from properties (RFC 6763 §6).</summary>
internal static class TxtProperties
{
    public const int MaxTotalBytes = 8900;

    public static IReadOnlyList<byte[]> Encode(IEnumerable<KeyValuePair<string, string?>> properties, string paramName)
    {
        var strings = new List<byte[]>();
        int total = 0;
        foreach ((string key, string? value) in properties)
        {
            if (string.IsNullOrEmpty(key) || key.Contains('=', StringComparison.Ordinal) || key.Any(c => c < 0x20 || c > 0x7E))
            {
                throw new ArgumentException($"The TXT key '{key}' must be printable ASCII without '=' and not empty.", paramName);
            }

            byte[] bytes = Encoding.UTF8.GetBytes(value is null ? key : key + "=" + value);
            if (bytes.Length > 255)
            {
                throw new ArgumentException($"The TXT property '{key}' has {bytes.Length} bytes; key=value has at most 255.", paramName);
            }

            total += bytes.Length + 1;
            strings.Add(bytes);
        }

        if (total > MaxTotalBytes)
        {
            throw new ArgumentException($"The TXT properties have {total} bytes; at most {MaxTotalBytes} fit in one mDNS packet.", paramName);
        }

        return strings;
    }

    public static IReadOnlyDictionary<string, string?> Decode(IReadOnlyList<byte[]> strings)
    {
        var properties = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (byte[] s in strings)
        {
            if (s.Length == 0 || s[0] == (byte)'=')
            {
                continue;   // §6.4: empty strings and strings without a key are ignored
            }

            int equals = Array.IndexOf(s, (byte)'=');
            string key = Encoding.ASCII.GetString(s, 0, equals < 0 ? s.Length : equals);
            string? value = equals < 0 ? null : Encoding.UTF8.GetString(s, equals + 1, s.Length - equals - 1);
            properties.TryAdd(key, value);   // §6.4: the first occurrence wins
        }

        return new ReadOnlyDictionary<string, string?>(properties);
    }
}
