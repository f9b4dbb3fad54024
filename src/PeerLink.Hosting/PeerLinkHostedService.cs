using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PeerLink.Discovery;
using PeerLink.Nat.Rendezvous;

namespace PeerLink.Hosting;

/// <summary>Starts the node with the host and disposes it at shutdown.</summary>
internal sealed partial class PeerLinkHostedService(
    PeerLinkNode holder,
    IOptions<PeerLinkOptions> options,
    ILoggerFactory loggerFactory,
    IHostEnvironment? environment,
    PeerLinkNodeConfiguration configuration) : IHostedService
{
    private readonly ILogger _logger = loggerFactory.CreateLogger("PeerLink.Hosting");
    private PeerIdentity? _identity;
    private NetworkKey? _networkKey;
    private PeerNode? _node;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            _node = await StartNodeAsync(options.Value, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            holder.SetFailed(e);
            Dispose();
            throw;
        }

        holder.SetStarted(_node);
        Started(_logger, _node.PeerId.ToString(), string.Join(", ", _node.LocalEndPoints));
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        holder.Stopped = true;
        if (_node is not null)
        {
            await _node.DisposeAsync().ConfigureAwait(false);
        }

        Dispose();
    }

    private async Task<PeerNode> StartNodeAsync(PeerLinkOptions settings, CancellationToken cancellationToken)
    {
        string path = settings.IdentityFile;
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new ArgumentException("PeerLink:IdentityFile must name a file.", "PeerLink:IdentityFile");
        }

        if (!Path.IsPathRooted(path) && environment is not null)
        {
            path = Path.Combine(environment.ContentRootPath, path);
        }

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        _identity = PeerIdentity.LoadOrCreate(path);

        var allowed = new HashSet<PeerId>();
        for (int i = 0; i < settings.AllowedPeers.Count; i++)
        {
            if (!PeerId.TryParse(settings.AllowedPeers[i], out PeerId peer, out string? error))
            {
                throw new ArgumentException($"PeerLink:AllowedPeers:{i} is not a PeerId: {error}", $"PeerLink:AllowedPeers:{i}");
            }

            allowed.Add(peer);
        }

        if (settings.NetworkKey is { Length: > 0 } text)
        {
            byte[] key = new byte[NetworkKey.Size];
            if (!Convert.TryFromBase64String(text, key, out int written) || written != NetworkKey.Size)
            {
                throw new ArgumentException($"PeerLink:NetworkKey must be base64 of {NetworkKey.Size} bytes.", "PeerLink:NetworkKey");
            }

            _networkKey = new NetworkKey(key);
            Array.Clear(key);
        }

        var builder = new PeerNodeBuilder(_identity, loggerFactory);
        for (int i = 0; i < settings.Listen.Count; i++)
        {
            builder.ListenOn(ParseEndPoint(settings.Listen[i], $"PeerLink:Listen:{i}"));
        }

        builder.Configure(o =>
        {
            if (allowed.Count > 0)
            {
                o.Session.AllowedPeers = allowed;
            }

            o.Session.NetworkKey = _networkKey;
            if (settings.ApplicationId is { Length: > 0 } applicationId)
            {
                o.Session.ApplicationId = applicationId;
            }
        });

        if (settings.Discovery.Enabled)
        {
            builder.UseMdnsDiscovery(o =>
            {
                o.Advertise = settings.Discovery.Advertise;
                o.InstanceName = settings.Discovery.InstanceName;
                foreach (string name in settings.Discovery.Interfaces)
                {
                    o.Mdns.Interfaces.Add(name);
                }
            });
        }

        if (settings.Rendezvous.Count > 0)
        {
            var nodes = new List<RendezvousNode>();
            for (int i = 0; i < settings.Rendezvous.Count; i++)
            {
                PeerLinkRendezvousNodeOptions node = settings.Rendezvous[i];
                if (!PeerId.TryParse(node.PeerId, out PeerId nodeId, out string? error))
                {
                    throw new ArgumentException($"PeerLink:Rendezvous:{i}:PeerId is not a PeerId: {error}", $"PeerLink:Rendezvous:{i}:PeerId");
                }

                nodes.Add(new RendezvousNode(ParseEndPoint(node.EndPoint, $"PeerLink:Rendezvous:{i}:EndPoint"), nodeId));
            }

            builder.UseRendezvous(nodes);
        }

        configuration.Configure?.Invoke(builder);
        return await builder.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    private static IPEndPoint ParseEndPoint(string text, string key) =>
        IPEndPoint.TryParse(text, out IPEndPoint? endPoint)
            ? endPoint
            : throw new ArgumentException($"{key} is not an endpoint (\"address:port\"): '{text}'.", key);

    private void Dispose()
    {
        _identity?.Dispose();
        _networkKey?.Dispose();
        _identity = null;
        _networkKey = null;
    }

    [LoggerMessage(5001, LogLevel.Information, "PeerLink node {PeerId} started, listening on {EndPoints}.", EventName = "HostedNodeStarted")]
    private static partial void Started(ILogger logger, string peerId, string endPoints);
}

/// <summary>The code-level part of the node's configuration (components a configuration file cannot name).</summary>
internal sealed class PeerLinkNodeConfiguration
{
    public Action<PeerNodeBuilder>? Configure { get; set; }
}
