// RFC 6763 §4 (browsing with PTR queries), §5 (resolving SRV and TXT), §12 (additional records); RFC 6762 for the rest.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Discovery.Dns;
using PeerLink.Discovery.Mdns;

namespace PeerLink.Discovery;

/// <summary>
/// mDNS (RFC 6762) and DNS-SD (RFC 6763) on the local network: advertise services, browse for them and resolve them.
/// It shares UDP port 5353 with Avahi or Bonjour on the same host. Dispose it to send goodbyes and release the sockets.
/// </summary>
/// <example>
/// <code>
/// await using ServiceDiscovery mdns = await ServiceDiscovery.StartAsync();
/// await using ServiceRegistration light = await mdns.AdvertiseAsync(new ServiceProfile("Kitchen Light", "_http._tcp", 8080));
/// await foreach (ServiceEvent e in mdns.BrowseAsync("_http._tcp", cancellationToken))
/// {
///     Console.WriteLine($"{e.Kind}: {e.Instance}");
/// }
/// </code>
/// </example>
public sealed class ServiceDiscovery : IAsyncDisposable
{
    private readonly MdnsEngine _engine;
    private int _disposed;

    private ServiceDiscovery(MdnsEngine engine)
    {
        _engine = engine;
    }

    /// <summary>This host's mDNS name (for example "peerlink-3fa9c2.local"), which advertised SRV records point at.</summary>
    public string HostName => _engine.Host.FullName.ToString();

    /// <summary>Opens the mDNS sockets on the chosen interfaces and starts answering.</summary>
    /// <param name="options">Interfaces, address families, host name and clock; defaults when null.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <exception cref="ArgumentException">The options are inconsistent.</exception>
    /// <exception cref="PeerLinkException">UDP port 5353 could not be bound (<see cref="PeerLinkError.AddressInUse"/> when another socket holds it without address sharing, <see cref="PeerLinkError.AddressNotAvailable"/> without permission).</exception>
    public static Task<ServiceDiscovery> StartAsync(MdnsOptions? options = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        options = (options ?? new MdnsOptions()).Validate(nameof(options));
        loggerFactory ??= NullLoggerFactory.Instance;
        ILogger logger = loggerFactory.CreateLogger<ServiceDiscovery>();
        var transport = new UdpMdnsTransport(options, logger);
        return Task.FromResult(Start(transport, options, new Random(RandomNumberGenerator.GetInt32(int.MaxValue)), logger));
    }

    internal static ServiceDiscovery Start(IMdnsTransport transport, MdnsOptions options, Random random, ILogger logger)
    {
        string host = options.HostName ?? "peerlink-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
        var engine = new MdnsEngine(transport, host, options.TimeProvider, random, logger, options.MaxCachedRecords);
        engine.Start();
        return new ServiceDiscovery(engine);
    }

    internal MdnsEngine Engine => _engine;

    /// <summary>
    /// Advertises a service: probes its name (three probes, 250 ms apart), renames it on a conflict, announces it, and
    /// returns once it is announced. Dispose the registration to withdraw it with a goodbye.
    /// </summary>
    /// <param name="service">The service.</param>
    /// <param name="cancellationToken">Stops waiting (the service is then withdrawn).</param>
    /// <exception cref="ArgumentException">The profile is invalid; the message says which part.</exception>
    /// <exception cref="ObjectDisposedException">The discovery was disposed.</exception>
    public async Task<ServiceRegistration> AdvertiseAsync(ServiceProfile service, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(service);
        service.Validate(nameof(service));
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        Publication publication = _engine.AddService(
            service.InstanceName, service.ServiceTypeName(nameof(service)), [.. service.Subtypes], (ushort)service.Port, service.EncodeTxt(nameof(service)));
        var registration = new ServiceRegistration(_engine, publication, service);
        try
        {
            await publication.Probed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await registration.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return registration;
    }

    /// <summary>
    /// Browses for instances of a service type until cancelled: each instance is reported when it is complete (SRV, TXT
    /// and an address), again when it changes, and when it leaves. Queries back off from 1 s to an hour; instances
    /// already in the cache are reported at once.
    /// </summary>
    /// <param name="serviceType">For example "_http._tcp", or "_printer._sub._http._tcp" for a subtype.</param>
    /// <param name="cancellationToken">Ends the browse.</param>
    /// <exception cref="ArgumentException">The service type is not like "_name._tcp".</exception>
    public IAsyncEnumerable<ServiceEvent> BrowseAsync(string serviceType, CancellationToken cancellationToken = default)
    {
        DnsName type = ServiceNames.ParseType(serviceType, nameof(serviceType));
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return BrowseCoreAsync(type, cancellationToken);
    }

    private async IAsyncEnumerable<ServiceEvent> BrowseCoreAsync(DnsName type, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var browser = new Browser(_engine, type);
        browser.Start();
        try
        {
            while (await browser.Events.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (browser.Events.Reader.TryRead(out ServiceEvent? e))
                {
                    yield return e;
                }
            }
        }
        finally
        {
            browser.Stop();
        }
    }

    /// <summary>
    /// Resolves one instance by name: its host, port, addresses and properties. Waits until they are known or
    /// <paramref name="cancellationToken"/> fires (pass a timeout).
    /// </summary>
    /// <param name="instanceName">The instance name, for example "Kitchen Light".</param>
    /// <param name="serviceType">Its type, for example "_http._tcp".</param>
    /// <param name="cancellationToken">Ends the wait; there is no other timeout.</param>
    /// <exception cref="ArgumentException">A name is invalid.</exception>
    /// <exception cref="OperationCanceledException">The instance was not resolved in time.</exception>
    public async Task<ServiceInstance> ResolveAsync(string instanceName, string serviceType, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(instanceName);
        DnsName type = ServiceNames.ParseType(serviceType, nameof(serviceType));
        DnsName instance;
        try
        {
            instance = type.Prepend(instanceName);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException(e.Message, nameof(instanceName), e);
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var resolver = new Browser(_engine, type, instance);
        resolver.Start();
        try
        {
            ServiceEvent e = await resolver.Events.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            return e.Instance;
        }
        finally
        {
            resolver.Stop();
        }
    }

    /// <summary>Sends goodbyes for every advertised service and closes the sockets.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await _engine.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Follows the instances of one type (or one instance, when resolving) through the cache, asking for what is missing
    /// and reporting complete instances. Runs on the engine's logical thread.
    /// </summary>
    private sealed class Browser
    {
        private readonly MdnsEngine _engine;
        private readonly DnsName _type;
        private readonly DnsName? _only;
        private readonly Dictionary<DnsName, ServiceInstance> _reported = [];
        private readonly Dictionary<string, ContinuousQuery> _asking = new(StringComparer.Ordinal);
        private readonly HashSet<DnsName> _hosts = [];
        private ContinuousQuery? _browse;
        private bool _stopped;

        public Browser(MdnsEngine engine, DnsName type, DnsName? only = null)
        {
            _engine = engine;
            _type = type;
            _only = only;
        }

        public Channel<ServiceEvent> Events { get; } = Channel.CreateUnbounded<ServiceEvent>(new UnboundedChannelOptions { SingleReader = true });

        public void Start() => _engine.Post(() =>
        {
            _engine.CacheChanged += Update;
            if (_only is null)
            {
                _browse = _engine.StartQuery(new DnsQuestion(_type, DnsRecordType.Ptr), continuous: true, Interested);
            }

            Update();
        });

        public void Stop() => _engine.Post(() =>
        {
            _stopped = true;
            _engine.CacheChanged -= Update;
            if (_browse is not null)
            {
                _engine.StopQuery(_browse);
            }

            foreach (ContinuousQuery query in _asking.Values)
            {
                _engine.StopQuery(query);
            }

            _asking.Clear();
            Events.Writer.TryComplete();
        });

        private bool Interested(DnsRecord record) => _reported.ContainsKey(record.Name) || _hosts.Contains(record.Name);

        private void Update()
        {
            if (_stopped)
            {
                return;
            }

            List<DnsName> instances = _only is not null
                ? [_only]
                : _engine.Lookup(_type, DnsRecordType.Ptr).Select(p => ((DnsPtrRecord)p.Record).Target).Distinct().ToList();
            _hosts.Clear();
            foreach (DnsName name in instances)
            {
                ServiceInstance? instance = Build(name);
                if (instance is null)
                {
                    continue;
                }

                if (!_reported.TryGetValue(name, out ServiceInstance? before))
                {
                    _reported[name] = instance;
                    Events.Writer.TryWrite(new ServiceEvent(ServiceEventKind.Found, instance));
                }
                else if (!before.SameAs(instance))
                {
                    _reported[name] = instance;
                    Events.Writer.TryWrite(new ServiceEvent(ServiceEventKind.Updated, instance));
                }
            }

            foreach (DnsName gone in _reported.Keys.Where(k => !instances.Contains(k)).ToList())
            {
                Events.Writer.TryWrite(new ServiceEvent(ServiceEventKind.Lost, _reported[gone]));
                _reported.Remove(gone);
                Forget(gone);
            }
        }

        private ServiceInstance? Build(DnsName name)
        {
            (DnsRecord Record, int LinkIndex)? srv = _engine.Lookup(name, DnsRecordType.Srv).Cast<(DnsRecord, int)?>().FirstOrDefault();
            (DnsRecord Record, int LinkIndex)? txt = _engine.Lookup(name, DnsRecordType.Txt).Cast<(DnsRecord, int)?>().FirstOrDefault();
            if (srv is null)
            {
                Ask(name, DnsRecordType.Srv);
            }

            if (txt is null)
            {
                Ask(name, DnsRecordType.Txt);
            }

            if (srv is null)
            {
                return null;
            }

            var target = ((DnsSrvRecord)srv.Value.Record).Target;
            _hosts.Add(target);
            List<IPAddress> addresses = [.. _engine.Lookup(target, DnsRecordType.A).Concat(_engine.Lookup(target, DnsRecordType.Aaaa))
                .Select(a => WithScope(((DnsAddressRecord)a.Record).Address, a.LinkIndex))
                .DistinctBy(a => a.ToString())];
            if (addresses.Count == 0)
            {
                Ask(target, DnsRecordType.A);
                Ask(target, DnsRecordType.Aaaa);
                return null;
            }

            if (txt is null)
            {
                return null;
            }

            // Found: the one-shot questions for this instance are answered.
            foreach (string key in _asking.Keys.Where(k => k.StartsWith(name.Key, StringComparison.Ordinal) || k.StartsWith(target.Key, StringComparison.Ordinal)).ToList())
            {
                _engine.StopQuery(_asking[key]);
                _asking.Remove(key);
            }

            string instanceLabel = name.Labels[0];
            return new ServiceInstance(
                instanceLabel,
                name.Skip(1).ToString(),
                target.ToString(),
                ((DnsSrvRecord)srv.Value.Record).Port,
                addresses,
                TxtProperties.Decode(((DnsTxtRecord)txt.Value.Record).Strings));
        }

        private void Ask(DnsName name, DnsRecordType type)
        {
            string key = name.Key + "|" + type;
            if (!_asking.ContainsKey(key))
            {
                _asking[key] = _engine.StartQuery(new DnsQuestion(name, type), continuous: false);
            }
        }

        private void Forget(DnsName name)
        {
            foreach (string key in _asking.Keys.Where(k => k.StartsWith(name.Key + "|", StringComparison.Ordinal)).ToList())
            {
                _engine.StopQuery(_asking[key]);
                _asking.Remove(key);
            }
        }

        private static IPAddress WithScope(IPAddress address, int linkIndex) =>
            address.AddressFamily == AddressFamily.InterNetworkV6 && address.IsIPv6LinkLocal
                ? new IPAddress(address.GetAddressBytes(), linkIndex)
                : address;
    }
}

/// <summary>An advertised service. Dispose it to withdraw the service with a goodbye (TTL 0).</summary>
public sealed class ServiceRegistration : IAsyncDisposable
{
    private readonly MdnsEngine _engine;
    private readonly Publication _publication;
    private int _disposed;

    internal ServiceRegistration(MdnsEngine engine, Publication publication, ServiceProfile profile)
    {
        _engine = engine;
        _publication = publication;
        Profile = profile;
        publication.Renamed += name => Renamed?.Invoke(this, name);
    }

    /// <summary>What was asked to be advertised.</summary>
    public ServiceProfile Profile { get; }

    /// <summary>The instance name in use; differs from the profile's after a conflict ("Name (2)").</summary>
    public string InstanceName => _publication.Label;

    /// <summary>Raised with the new instance name when a conflict forced a rename (on an internal thread).</summary>
    public event EventHandler<string>? Renamed;

    /// <summary>Replaces the TXT properties and announces the change.</summary>
    /// <param name="properties">The new properties, in order; a null value is a bare key.</param>
    /// <exception cref="ArgumentException">A property is invalid.</exception>
    public void UpdateProperties(IEnumerable<KeyValuePair<string, string?>> properties)
    {
        ArgumentNullException.ThrowIfNull(properties);
        _engine.UpdateTxt(_publication, TxtProperties.Encode(properties, nameof(properties)));
    }

    /// <summary>Withdraws the service: goodbye packets on every interface.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            try
            {
                await _engine.RemoveAsync(_publication).ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                // The discovery already said goodbye for everything.
            }
        }
    }
}
