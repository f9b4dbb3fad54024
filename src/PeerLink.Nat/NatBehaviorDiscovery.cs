// NAT behaviour discovery (RFC 5780 §4.3 mapping, §4.4 filtering) against a STUN server with two addresses and ports.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Nat.Stun;

namespace PeerLink.Nat;

/// <summary>Settings of <see cref="NatBehaviorDiscovery.DiscoverAsync"/>.</summary>
public sealed class NatBehaviorDiscoveryOptions
{
    /// <summary>Retransmission for the requests that must be answered (the mapping tests).</summary>
    /// <remarks>Defaults to RTO 250 ms, 5 transmissions, final wait 4 RTO (about 5 s before a silent server is given up).</remarks>
    public StunClientOptions Requests { get; set; } = new() { InitialRto = TimeSpan.FromMilliseconds(250), MaxTransmissions = 5, FinalWaitMultiplier = 4 };

    /// <summary>
    /// Retransmission for the filtering tests, where no answer is a result: the time they take when the NAT filters.
    /// </summary>
    /// <remarks>Defaults to RTO 100 ms, 4 transmissions, final wait 4 RTO (1.1 s per test).</remarks>
    public StunClientOptions FilteringProbes { get; set; } = new() { InitialRto = TimeSpan.FromMilliseconds(100), MaxTransmissions = 4, FinalWaitMultiplier = 4 };

    /// <summary>
    /// Whether to measure how long an idle UDP mapping lives (RFC 5780 §4.6). Each test binds a socket, lets its mapping
    /// idle for a while, then asks the server (with RESPONSE-PORT, from a second socket) to answer to that mapping. The
    /// tests run in parallel: a ladder of waits doubling from <see cref="MappingLifetimeResolution"/> up to
    /// <see cref="MappingLifetimeLimit"/>, then one round that narrows the interval where the mapping died to the resolution.
    /// </summary>
    /// <remarks>Defaults to false: it takes up to twice <see cref="MappingLifetimeLimit"/>.</remarks>
    public bool MeasureMappingLifetime { get; set; }

    /// <summary>The longest idle time tested; a mapping that outlives it is reported as "at least" this long.</summary>
    /// <remarks>Defaults to 2 minutes (RFC 4787 REQ-5 asks NATs for at least 2 minutes).</remarks>
    public TimeSpan MappingLifetimeLimit { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>How finely the lifetime is measured: the gap between the bounds of the result, at most.</summary>
    /// <remarks>Defaults to 5 seconds. At most eight tests narrow the interval, so a coarse ladder may leave it wider.</remarks>
    public TimeSpan MappingLifetimeResolution { get; set; } = TimeSpan.FromSeconds(5);

    internal void Validate(string paramName)
    {
        if (Requests is null || FilteringProbes is null)
        {
            throw new ArgumentException("Requests and FilteringProbes are required.", paramName);
        }

        if (MappingLifetimeResolution < TimeSpan.FromMilliseconds(100) || MappingLifetimeLimit < MappingLifetimeResolution || MappingLifetimeLimit > TimeSpan.FromHours(1))
        {
            throw new ArgumentException("MappingLifetimeResolution must be at least 100 ms, and MappingLifetimeLimit from it up to an hour.", paramName);
        }

        Requests.Validate(paramName);
        FilteringProbes.Validate(paramName);
    }
}

/// <summary>Classifies the NAT between this host and a STUN server that supports RFC 5780 (two addresses and ports).</summary>
public static class NatBehaviorDiscovery
{
    /// <summary>
    /// Runs the RFC 5780 mapping tests (one socket, Binding to the server's primary, then alternate address, then alternate
    /// address and port) and filtering tests (a fresh socket asking for answers from another address and port, then another
    /// port only). Each test uses its own UDP socket on <paramref name="localAddress"/>.
    /// </summary>
    /// <param name="server">The server's primary endpoint; it must announce OTHER-ADDRESS.</param>
    /// <param name="localAddress">The local address to send from; the one routed towards the server when null.</param>
    /// <param name="options">Timing; defaults when null.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the discovery.</param>
    /// <exception cref="PeerLinkException"><see cref="PeerLinkError.StunTimeout"/> when the server does not answer at all;
    /// <see cref="PeerLinkError.StunError"/> when it answers with an error.</exception>
    public static async Task<NatBehavior> DiscoverAsync(IPEndPoint server, IPAddress? localAddress = null, NatBehaviorDiscoveryOptions? options = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(server);
        options ??= new NatBehaviorDiscoveryOptions();
        options.Validate(nameof(options));
        localAddress ??= RouteSource(server);

        // Mapping: Test I to the primary, Test II to (alternate IP, primary port), Test III to (alternate IP, alternate port).
        using Socket mappingSocket = Bind(localAddress);
        var local = (IPEndPoint)mappingSocket.LocalEndPoint!;
        StunBindingResult first = await StunClient.BindingAsync(mappingSocket, server, options.Requests, loggerFactory, cancellationToken).ConfigureAwait(false);
        NatMappingBehavior mapping;
        IPEndPoint? other = first.OtherAddress;
        if (first.MappedAddress.Equals(local))
        {
            mapping = NatMappingBehavior.NoNat;
        }
        else if (other is null)
        {
            mapping = NatMappingBehavior.Unknown;
        }
        else
        {
            StunBindingResult second = await StunClient.BindingAsync(mappingSocket, new IPEndPoint(other.Address, server.Port), options.Requests, loggerFactory, cancellationToken).ConfigureAwait(false);
            if (second.MappedAddress.Equals(first.MappedAddress))
            {
                mapping = NatMappingBehavior.EndpointIndependent;
            }
            else
            {
                StunBindingResult third = await StunClient.BindingAsync(mappingSocket, other, options.Requests, loggerFactory, cancellationToken).ConfigureAwait(false);
                mapping = third.MappedAddress.Equals(second.MappedAddress) ? NatMappingBehavior.AddressDependent : NatMappingBehavior.AddressAndPortDependent;
            }
        }

        // Filtering: a fresh mapping towards the primary only, then ask for answers from elsewhere.
        NatFilteringBehavior filtering = NatFilteringBehavior.Unknown;
        if (other is not null)
        {
            if (await AnsweredAsync(server, localAddress, StunConstants.ChangeIp | StunConstants.ChangePort, options, loggerFactory, cancellationToken).ConfigureAwait(false))
            {
                filtering = NatFilteringBehavior.EndpointIndependent;
            }
            else
            {
                filtering = await AnsweredAsync(server, localAddress, StunConstants.ChangePort, options, loggerFactory, cancellationToken).ConfigureAwait(false)
                    ? NatFilteringBehavior.AddressDependent
                    : NatFilteringBehavior.AddressAndPortDependent;
            }
        }

        NatMappingLifetime? lifetime = options.MeasureMappingLifetime
            ? await MeasureLifetimeAsync(server, localAddress, options, loggerFactory, cancellationToken).ConfigureAwait(false)
            : null;
        return new NatBehavior(mapping, filtering, local, first.MappedAddress, lifetime);
    }

    /// <summary>RFC 5780 §4.6 with parallel tests: a doubling ladder of waits, then one round inside the interval it found.</summary>
    private static async Task<NatMappingLifetime> MeasureLifetimeAsync(IPEndPoint server, IPAddress localAddress, NatBehaviorDiscoveryOptions options, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        var waits = new List<TimeSpan>();
        for (TimeSpan wait = options.MappingLifetimeResolution; wait < options.MappingLifetimeLimit; wait *= 2)
        {
            waits.Add(wait);
        }

        waits.Add(options.MappingLifetimeLimit);
        (TimeSpan alive, TimeSpan? dead) = Bounds(waits, await ProbeAllAsync(waits).ConfigureAwait(false), TimeSpan.Zero, null);
        if (dead is { } upper && upper - alive > options.MappingLifetimeResolution)
        {
            int steps = (int)Math.Min(8, Math.Ceiling((upper - alive) / options.MappingLifetimeResolution));
            TimeSpan step = (upper - alive) / steps;
            List<TimeSpan> inner = Enumerable.Range(1, steps - 1).Select(k => alive + step * k).ToList();
            (alive, dead) = Bounds(inner, await ProbeAllAsync(inner).ConfigureAwait(false), alive, dead);
        }

        return new NatMappingLifetime(alive, dead);

        Task<bool[]> ProbeAllAsync(List<TimeSpan> idle) =>
            Task.WhenAll(idle.Select(wait => ProbeLifetimeAsync(server, localAddress, wait, options, loggerFactory, cancellationToken)));
    }

    /// <summary>The longest wait that survived, and the shortest longer one that did not.</summary>
    private static (TimeSpan Alive, TimeSpan? Dead) Bounds(List<TimeSpan> waits, bool[] survived, TimeSpan alive, TimeSpan? dead)
    {
        for (int i = 0; i < waits.Count; i++)
        {
            if (!survived[i] && (dead is null || waits[i] < dead))
            {
                dead = waits[i];
            }
        }

        for (int i = 0; i < waits.Count; i++)
        {
            if (survived[i] && waits[i] > alive && (dead is null || waits[i] < dead))
            {
                alive = waits[i];
            }
        }

        return (alive, dead);
    }

    /// <summary>One lifetime test: a mapping from socket X, idle for <paramref name="wait"/>, then an answer sent to it.</summary>
    private static async Task<bool> ProbeLifetimeAsync(IPEndPoint server, IPAddress localAddress, TimeSpan wait, NatBehaviorDiscoveryOptions options, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        using Socket x = Bind(localAddress);
        StunBindingResult mapped = await StunClient.BindingAsync(x, server, options.Requests, loggerFactory, cancellationToken).ConfigureAwait(false);
        await Task.Delay(wait, options.Requests.TimeProvider, cancellationToken).ConfigureAwait(false);
        using Socket y = Bind(localAddress);
        return await StunClient.ProbeMappingAsync(y, x, server, (ushort)mapped.MappedAddress.Port, options.FilteringProbes, loggerFactory, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Test I from a fresh socket, then the CHANGE-REQUEST test from the same socket: did its answer get through?</summary>
    private static async Task<bool> AnsweredAsync(IPEndPoint server, IPAddress localAddress, uint change, NatBehaviorDiscoveryOptions options, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        using Socket socket = Bind(localAddress);
        await StunClient.BindingAsync(socket, server, options.Requests, loggerFactory, cancellationToken).ConfigureAwait(false);
        try
        {
            await StunClient.BindingAsync(socket, server, change, options.FilteringProbes, loggerFactory, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (PeerLinkException e) when (e.Error == PeerLinkError.StunTimeout)
        {
            return false;
        }
    }

    private static Socket Bind(IPAddress address)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(address, 0));
        return socket;
    }

    /// <summary>The local address the routing table picks towards <paramref name="server"/> (a connected UDP socket sends nothing).</summary>
    private static IPAddress RouteSource(IPEndPoint server)
    {
        using var probe = new Socket(server.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        probe.Connect(server);
        return ((IPEndPoint)probe.LocalEndPoint!).Address;
    }
}
