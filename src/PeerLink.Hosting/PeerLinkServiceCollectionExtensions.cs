using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PeerLink.Nat.Rendezvous;

namespace PeerLink.Hosting;

/// <summary>Registers a PeerLink node with Microsoft.Extensions.DependencyInjection and Hosting.</summary>
public static class PeerLinkServiceCollectionExtensions
{
    /// <summary>
    /// Adds a PeerLink node whose settings are bound from <paramref name="configuration"/> (typically
    /// <c>builder.Configuration.GetSection("PeerLink")</c>). The host starts it with the application and disposes it at
    /// shutdown; inject <see cref="PeerLinkNode"/> to use it.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="configuration">The node's section.</param>
    /// <param name="configureNode">Further set-up in code (components, options a file cannot hold); called last.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddPeerLink(this IServiceCollection services, IConfiguration configuration, Action<PeerNodeBuilder>? configureNode = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<PeerLinkOptions>().Bind(configuration);
        return AddCore(services, configureNode);
    }

    /// <summary>Adds a PeerLink node configured in code. See <see cref="AddPeerLink(IServiceCollection, IConfiguration, Action{PeerNodeBuilder}?)"/>.</summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Sets the node's settings.</param>
    /// <param name="configureNode">Further set-up of the builder; called last.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddPeerLink(this IServiceCollection services, Action<PeerLinkOptions> configure, Action<PeerNodeBuilder>? configureNode = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<PeerLinkOptions>().Configure(configure);
        return AddCore(services, configureNode);
    }

    /// <summary>
    /// Adds the health check of the hosted node: Healthy while it runs (and, when rendezvous nodes are configured, is
    /// attached to one), Degraded while it runs but is not attached, Unhealthy before it starts, after a failed start and
    /// after it stopped.
    /// </summary>
    /// <param name="builder">The health checks.</param>
    /// <param name="name">The check's name.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static IHealthChecksBuilder AddPeerLink(this IHealthChecksBuilder builder, string name = "peerlink")
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrEmpty(name);
        return builder.AddCheck<PeerLinkHealthCheck>(name);
    }

    private static IServiceCollection AddCore(IServiceCollection services, Action<PeerNodeBuilder>? configureNode)
    {
        if (services.Any(d => d.ServiceType == typeof(PeerLinkNode)))
        {
            throw new InvalidOperationException("AddPeerLink was already called: one hosted node per service collection.");
        }

        services.AddSingleton<PeerLinkNode>();
        services.AddSingleton(new PeerLinkNodeConfiguration { Configure = configureNode });
        services.AddSingleton<IHostedService>(provider => new PeerLinkHostedService(
            provider.GetRequiredService<PeerLinkNode>(),
            provider.GetRequiredService<IOptions<PeerLinkOptions>>(),
            provider.GetService<ILoggerFactory>() ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance,
            provider.GetService<IHostEnvironment>(),
            provider.GetRequiredService<PeerLinkNodeConfiguration>()));
        return services;
    }
}

/// <summary>The health of the hosted node (see <see cref="PeerLinkServiceCollectionExtensions.AddPeerLink(IHealthChecksBuilder, string)"/>).</summary>
internal sealed class PeerLinkHealthCheck(PeerLinkNode holder) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (holder.StartFailure is { } failure)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("The PeerLink node failed to start.", failure));
        }

        if (!holder.IsRunning)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("The PeerLink node is not running."));
        }

        PeerNode node = holder.Node;
        var data = new Dictionary<string, object>
        {
            ["peerId"] = node.PeerId.ToString(),
            ["listening"] = string.Join(", ", node.LocalEndPoints),
        };
        if (node.GetComponent<RendezvousClient>() is { } rendezvous)
        {
            data["rendezvous"] = rendezvous.CurrentNode.EndPoint.ToString();
            if (!rendezvous.IsAttached)
            {
                return Task.FromResult(HealthCheckResult.Degraded("The PeerLink node runs but is not attached to a rendezvous node: peers beyond the LAN cannot reach it.", data: data));
            }
        }

        return Task.FromResult(HealthCheckResult.Healthy("The PeerLink node runs.", data));
    }
}
