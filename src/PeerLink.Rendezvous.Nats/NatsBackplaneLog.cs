using Microsoft.Extensions.Logging;

namespace PeerLink.Rendezvous.Nats;

/// <summary>The backplane's log messages (event ids 3300–3309).</summary>
internal static partial class NatsBackplaneLog
{
    [LoggerMessage(3300, LogLevel.Warning, "The NATS backplane stopped answering on a subscription: {Reason}.", EventName = "NatsBackplaneAnswerFailed")]
    public static partial void AnswerFailed(ILogger logger, string reason);

    [LoggerMessage(3301, LogLevel.Warning, "The NATS backplane could not read or write the presence bucket: {Reason}.", EventName = "NatsBackplanePresenceFailed")]
    public static partial void PresenceFailed(ILogger logger, string reason);

    [LoggerMessage(3302, LogLevel.Warning, "The NATS server did not confirm that a detached device's subscription is gone: {Reason}.", EventName = "NatsBackplaneUnsubscribeUnconfirmed")]
    public static partial void UnsubscribeUnconfirmed(ILogger logger, string reason);
}
