using System;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PeerLink.Hosting;
using PeerLink.Sessions;

namespace PeerLink.Samples.Worker;

/// <summary>The application's part: a light that answers every command on every session of the hosted node.</summary>
internal sealed partial class LightService(PeerLinkNode peerLink, ILogger<LightService> logger) : BackgroundService
{
    private LightState _state = new(false, 0);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        PeerNode node = await peerLink.WaitForStartAsync(stoppingToken);
        await foreach (SecureSession session in node.AcceptAllAsync(stoppingToken))
        {
            _ = ServeAsync(session, stoppingToken);
        }
    }

    private async Task ServeAsync(SecureSession session, CancellationToken stoppingToken)
    {
        try
        {
            while (await session.ReceiveAsync(stoppingToken) is { } message)
            {
                Command command = message.Deserialize<Command>();
                _state = new LightState(command.On, command.On ? command.Brightness : 0);
                Switched(logger, session.RemotePeerId.ToFingerprint(), _state.On, _state.Brightness);
                await session.SendAsync(_state, stoppingToken);
            }
        }
        catch (Exception e) when (e is PeerLinkException or OperationCanceledException)
        {
            // The peer went away or the host stops; the session's own error says which.
        }
        finally
        {
            await session.DisposeAsync();
        }
    }

    [LoggerMessage(1, LogLevel.Information, "Light switched by {Peer}: on={On} brightness={Brightness}")]
    private static partial void Switched(ILogger logger, string peer, bool on, int brightness);
}
