// A rendezvous tier on NATS (docs/rendezvous-tier.md): each node subscribes to one subject per attached device and
// answers connect requests routed there; "no responders" means that no node holds the device, known at once without
// a lookup. Attachments are announced on a second subject so that a node holding an older attachment closes it.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using PeerLink.Nat.Rendezvous;

namespace PeerLink.Rendezvous.Nats;

/// <summary>
/// Joins a <see cref="RendezvousServer"/> to the other rendezvous nodes of a tier through NATS. Only small signalling
/// messages cross NATS; devices never speak it.
/// </summary>
/// <example>
/// <code>
/// await using var nats = new NatsConnection(new NatsOpts { Url = "nats://127.0.0.1:4222" });
/// await using var backplane = new NatsRendezvousBackplane(nats);
/// await using RendezvousServer node = await RendezvousServer.StartAsync(identity, new RendezvousServerOptions
/// {
///     ListenEndPoint = new IPEndPoint(IPAddress.Parse("203.0.113.10"), 7400),
///     Backplane = backplane,
/// });
/// </code>
/// </example>
/// <remarks>Thread-safe. The caller owns the NATS connection; dispose the backplane after the node.</remarks>
public sealed class NatsRendezvousBackplane : IRendezvousBackplane, IAsyncDisposable
{
    private const byte WireVersion = 1;

    /// <summary>A routed connect request: version, caller, target, the caller's epoch.</summary>
    private const int RequestLength = 1 + (2 * PeerId.Size) + 8;

    private readonly INatsConnection _nats;
    private readonly NatsRendezvousBackplaneOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<PeerId, (long Epoch, INatsSub<byte[]> Subscription, Task Loop)> _devices = [];
    private readonly CancellationTokenSource _stopping = new();
    private IRendezvousTierNode? _node;
    private INatsSub<byte[]>? _announcements;
    private Task _announcementLoop = Task.CompletedTask;
    private int _routedAnswers;
    private INatsKVStore? _presence;

    /// <summary>A backplane on <paramref name="nats"/>.</summary>
    /// <param name="nats">A connection to the tier's NATS servers; the caller keeps ownership.</param>
    /// <param name="options">Subjects and timeouts; null for the defaults. Copied.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="nats"/> is null.</exception>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public NatsRendezvousBackplane(INatsConnection nats, NatsRendezvousBackplaneOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(nats);
        _nats = nats;
        _options = (options ?? new NatsRendezvousBackplaneOptions()).Validate(nameof(options));
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<NatsRendezvousBackplane>();
    }

    /// <summary>Connect requests from other nodes that this node has answered.</summary>
    public int RoutedAnswers => Volatile.Read(ref _routedAnswers);

    /// <summary>Devices whose connect requests this node answers now.</summary>
    public int Subscriptions
    {
        get
        {
            lock (_gate)
            {
                return _devices.Count;
            }
        }
    }

    /// <inheritdoc/>
    public async ValueTask StartAsync(IRendezvousTierNode node, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(node);
        if (Interlocked.CompareExchange(ref _node, node, null) is not null)
        {
            throw new InvalidOperationException("The backplane serves one rendezvous node.");
        }

        try
        {
            _announcements = await _nats.SubscribeCoreAsync<byte[]>(_options.SubjectPrefix + ".attached.*", cancellationToken: cancellationToken).ConfigureAwait(false);
            await _nats.PingAsync(cancellationToken).ConfigureAwait(false);   // the server has the subscription
        }
        catch (Exception e) when (e is NatsException or TimeoutException)
        {
            throw new PeerLinkException(PeerLinkError.TierUnavailable, $"The rendezvous tier's NATS servers did not answer: {e.Message}", e);
        }

        if (_options.PresenceBucket is { } bucket)
        {
            try
            {
                var kv = new NatsKVContext(new NatsJSContext(_nats));
                _presence = await kv.CreateOrUpdateStoreAsync(new NatsKVConfig(bucket) { MaxAge = _options.PresenceMaxAge, History = 1 }, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is NatsException or TimeoutException)
            {
                await UnsubscribeAsync(_announcements, Task.CompletedTask).ConfigureAwait(false);
                throw new PeerLinkException(PeerLinkError.TierUnavailable, $"The presence bucket '{bucket}' is not available (is JetStream on?): {e.Message}", e);
            }
        }

        _announcementLoop = Task.Run(() => ReadAnnouncementsAsync(_announcements));
    }

    /// <inheritdoc/>
    public async ValueTask StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        List<(long, INatsSub<byte[]> Subscription, Task Loop)> devices;
        lock (_gate)
        {
            devices = [.. _devices.Values];
            _devices.Clear();
        }

        foreach ((_, INatsSub<byte[]> subscription, Task loop) in devices)
        {
            await UnsubscribeAsync(subscription, loop).ConfigureAwait(false);
        }

        if (_announcements is not null)
        {
            await UnsubscribeAsync(_announcements, _announcementLoop).ConfigureAwait(false);
            _announcements = null;
        }
    }

    /// <inheritdoc/>
    public async ValueTask AttachedAsync(PeerId device, long epoch, CancellationToken cancellationToken)
    {
        IRendezvousTierNode node = _node ?? throw new InvalidOperationException("The backplane has not started.");
        INatsSub<byte[]> subscription;
        try
        {
            subscription = await _nats.SubscribeCoreAsync<byte[]>(PeerSubject(device), cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (NatsException e)
        {
            throw new PeerLinkException(PeerLinkError.TierUnavailable, $"NATS refused the subscription for a device: {e.Message}", e);
        }

        Task loop = Task.Run(() => AnswerAsync(node, subscription));
        (long Epoch, INatsSub<byte[]> Subscription, Task Loop) replaced = default;
        bool kept;
        lock (_gate)
        {
            kept = !_devices.TryGetValue(device, out replaced) || replaced.Epoch < epoch;
            if (kept)
            {
                _devices[device] = (epoch, subscription, loop);
            }
        }

        if (!kept)
        {
            await UnsubscribeAsync(subscription, loop).ConfigureAwait(false);   // a newer attachment of it is here already
            return;
        }

        if (replaced.Subscription is not null)
        {
            await UnsubscribeAsync(replaced.Subscription, replaced.Loop).ConfigureAwait(false);
        }

        byte[] announcement = new byte[1 + 8 + PeerId.Size];
        announcement[0] = WireVersion;
        BinaryPrimitives.WriteInt64BigEndian(announcement.AsSpan(1), epoch);
        node.PeerId.CopyTo(announcement.AsSpan(9));
        try
        {
            await _nats.PublishAsync(_options.SubjectPrefix + ".attached." + device.ToString(), announcement, cancellationToken: cancellationToken).ConfigureAwait(false);
            await _nats.PingAsync(cancellationToken).ConfigureAwait(false);   // the subscription is in place before the device hears it is attached
        }
        catch (Exception e) when (e is NatsException or TimeoutException)
        {
            throw new PeerLinkException(PeerLinkError.TierUnavailable, $"NATS did not take the attachment's announcement: {e.Message}", e);
        }

        await RecordSeenAsync(device).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async ValueTask DetachedAsync(PeerId device, long epoch, CancellationToken cancellationToken)
    {
        (long Epoch, INatsSub<byte[]> Subscription, Task Loop) entry;
        lock (_gate)
        {
            if (!_devices.TryGetValue(device, out entry) || entry.Epoch != epoch)
            {
                return;
            }

            _devices.Remove(device);
        }

        await UnsubscribeAsync(entry.Subscription, entry.Loop).ConfigureAwait(false);
        try
        {
            // The server has taken the UNSUB once it answers a PING sent after it: requests for the device stop coming
            // here before the node calls it detached (or they would reach this node, which stays silent about a device
            // it does not hold, and the caller would wait out its request timeout for "the tier did not answer").
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
            deadline.CancelAfter(_options.RequestTimeout);
            await _nats.PingAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NatsException or TimeoutException or OperationCanceledException or ObjectDisposedException)
        {
            if (!_stopping.IsCancellationRequested)
            {
                NatsBackplaneLog.UnsubscribeUnconfirmed(_logger, e.Message);   // (when the backplane stops, every subscription goes)
            }
        }

        await RecordSeenAsync(device).ConfigureAwait(false);
    }

    /// <summary>Writes the device's last-seen time to the presence bucket, when there is one; a failure is logged only.</summary>
    private async Task RecordSeenAsync(PeerId device)
    {
        if (_presence is null)
        {
            return;
        }

        try
        {
            string seen = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture);
            await _presence.PutAsync(device.ToString(), Encoding.UTF8.GetBytes(seen), cancellationToken: _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NatsException or TimeoutException or OperationCanceledException)
        {
            NatsBackplaneLog.PresenceFailed(_logger, e.Message);
        }
    }

    /// <summary>The device's last-seen time from the presence bucket, or null.</summary>
    private async Task<string?> LastSeenAsync(PeerId device, CancellationToken cancellationToken)
    {
        if (_presence is null)
        {
            return null;
        }

        try
        {
            NatsKVEntry<byte[]> entry = await _presence.GetEntryAsync<byte[]>(device.ToString(), cancellationToken: cancellationToken).ConfigureAwait(false);
            return entry.Value is { Length: > 0 and <= 64 } value ? Encoding.UTF8.GetString(value) : null;
        }
        catch (NatsKVKeyNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is NatsException or TimeoutException)
        {
            NatsBackplaneLog.PresenceFailed(_logger, e.Message);
            return null;
        }
    }

    /// <inheritdoc/>
    public async ValueTask<RoutedConnectReply?> RouteConnectAsync(RoutedConnect request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        byte[] payload = new byte[RequestLength];
        payload[0] = WireVersion;
        request.Caller.CopyTo(payload.AsSpan(1));
        request.Target.CopyTo(payload.AsSpan(1 + PeerId.Size));
        BinaryPrimitives.WriteInt64BigEndian(payload.AsSpan(1 + (2 * PeerId.Size)), request.CallerEpoch);
        NatsMsg<byte[]>? reply = await RequestAsync(request.Target, payload, cancellationToken).ConfigureAwait(false);
        if (reply is null && _options.OfflineConfirmDelay > TimeSpan.Zero)
        {
            // Nobody answered: ask once more after the cluster has had a moment to spread a new subscription.
            await Task.Delay(_options.OfflineConfirmDelay, cancellationToken).ConfigureAwait(false);
            reply = await RequestAsync(request.Target, payload, cancellationToken).ConfigureAwait(false);
        }

        if (reply is not { } answered)
        {
            // No node holds the device: it is offline. Say since when, if the tier keeps presence.
            return await LastSeenAsync(request.Target, cancellationToken).ConfigureAwait(false) is { } seen
                ? RoutedConnectReply.Refused(PeerLinkError.PeerNotFound, $"peer {request.Target.ToFingerprint()} is offline; last seen {seen}")
                : null;
        }

        return answered.Data is { } data && TryReadReply(data, out RoutedConnectReply? answer)
            ? answer
            : throw new PeerLinkException(PeerLinkError.ProtocolViolation, "A node of the rendezvous tier answered a connect request with a malformed reply.");
    }

    /// <summary>One NATS request to the device's subject; null when there are no responders.</summary>
    private async Task<NatsMsg<byte[]>?> RequestAsync(PeerId target, byte[] payload, CancellationToken cancellationToken)
    {
        try
        {
            NatsMsg<byte[]> reply = await _nats.RequestAsync<byte[], byte[]>(
                PeerSubject(target),
                payload,
                replyOpts: new NatsSubOpts { Timeout = _options.RequestTimeout },
                cancellationToken: cancellationToken).ConfigureAwait(false);
            return reply.HasNoResponders ? null : reply;
        }
        catch (NatsNoRespondersException)
        {
            return null;
        }
        catch (Exception e) when (e is NatsException or TimeoutException)
        {
            throw new PeerLinkException(PeerLinkError.TierUnavailable, $"The rendezvous tier did not answer a connect request: {e.Message}", e);
        }
    }

    /// <summary>Stops, if the node has not (the node calls <see cref="StopAsync"/> when it stops).</summary>
    /// <returns>A task that completes when every subscription is gone.</returns>
    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None).ConfigureAwait(false);
        _stopping.Dispose();
    }

    private string PeerSubject(PeerId device) => _options.SubjectPrefix + ".peer." + device.ToString();

    private async Task AnswerAsync(IRendezvousTierNode node, INatsSub<byte[]> subscription)
    {
        try
        {
            await foreach (NatsMsg<byte[]> message in subscription.Msgs.ReadAllAsync(_stopping.Token).ConfigureAwait(false))
            {
                RoutedConnectReply answer;
                if (message.Data is { Length: RequestLength } data && data[0] == WireVersion)
                {
                    var request = new RoutedConnect(new PeerId(data.AsSpan(1, PeerId.Size)), new PeerId(data.AsSpan(1 + PeerId.Size, PeerId.Size)), BinaryPrimitives.ReadInt64BigEndian(data.AsSpan(1 + (2 * PeerId.Size))));
                    answer = await node.ConnectRoutedAsync(request, _stopping.Token).ConfigureAwait(false);
                    Interlocked.Increment(ref _routedAnswers);
                }
                else
                {
                    answer = RoutedConnectReply.Refused(PeerLinkError.ProtocolViolation, "a malformed routed connect request");
                }

                // A device that left this node a moment ago (evicted by a newer attachment elsewhere, whose node has
                // its own subscription): stay silent, so that the requester takes the holding node's answer.
                if (message.ReplyTo is not null && answer.Error != PeerLinkError.PeerNotFound)
                {
                    await message.ReplyAsync(WriteReply(answer), cancellationToken: _stopping.Token).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e) when (e is NatsException or PeerLinkException or ChannelClosedException)
        {
            NatsBackplaneLog.AnswerFailed(_logger, e.Message);
        }
    }

    private async Task ReadAnnouncementsAsync(INatsSub<byte[]> subscription)
    {
        IRendezvousTierNode node = _node!;
        try
        {
            await foreach (NatsMsg<byte[]> message in subscription.Msgs.ReadAllAsync(_stopping.Token).ConfigureAwait(false))
            {
                string subject = message.Subject;
                int dot = subject.LastIndexOf('.');
                if (message.Data is not { Length: 1 + 8 + PeerId.Size } data || data[0] != WireVersion
                    || !PeerId.TryParse(subject[(dot + 1)..], out PeerId device))
                {
                    continue;
                }

                if (new PeerId(data.AsSpan(9, PeerId.Size)) != node.PeerId)
                {
                    node.Evict(device, BinaryPrimitives.ReadInt64BigEndian(data.AsSpan(1)));
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e) when (e is NatsException or ChannelClosedException)
        {
            NatsBackplaneLog.AnswerFailed(_logger, e.Message);
        }
    }

    private static async Task UnsubscribeAsync(INatsSub<byte[]> subscription, Task loop)
    {
        try
        {
            await subscription.UnsubscribeAsync().ConfigureAwait(false);
        }
        catch (NatsException)
        {
            // The connection is gone: the server dropped the subscription with it.
        }

        await subscription.DisposeAsync().ConfigureAwait(false);
        await loop.ConfigureAwait(false);
    }

    // Reply: version, error (int32, 0 = ready), circuit (int64), target epoch (int64), token length (u8) and token, then
    // the relay endpoint and the reason as UTF-8 with u16 lengths.
    private const int ReplyFixedLength = 1 + 4 + 8 + 8 + 1;

    internal static byte[] WriteReply(RoutedConnectReply reply)
    {
        byte[] endPoint = Encoding.UTF8.GetBytes(reply.RelayEndPoint ?? "");
        byte[] reason = Encoding.UTF8.GetBytes(reply.Reason is { Length: <= 1000 } r ? r : reply.Reason?[..1000] ?? "");
        byte[] bytes = new byte[ReplyFixedLength + reply.Token.Length + 2 + endPoint.Length + 2 + reason.Length];
        Span<byte> span = bytes;
        span[0] = WireVersion;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], reply.Error is { } error ? (int)error : 0);
        BinaryPrimitives.WriteInt64BigEndian(span[5..], reply.Circuit);
        BinaryPrimitives.WriteInt64BigEndian(span[13..], reply.TargetEpoch);
        span[21] = (byte)reply.Token.Length;
        reply.Token.Span.CopyTo(span[ReplyFixedLength..]);
        int at = ReplyFixedLength + reply.Token.Length;
        BinaryPrimitives.WriteUInt16BigEndian(span[at..], (ushort)endPoint.Length);
        endPoint.CopyTo(span[(at + 2)..]);
        at += 2 + endPoint.Length;
        BinaryPrimitives.WriteUInt16BigEndian(span[at..], (ushort)reason.Length);
        reason.CopyTo(span[(at + 2)..]);
        return bytes;
    }

    internal static bool TryReadReply(ReadOnlySpan<byte> data, out RoutedConnectReply? reply)
    {
        reply = null;
        if (data.Length < ReplyFixedLength || data[0] != WireVersion)
        {
            return false;
        }

        int error = BinaryPrimitives.ReadInt32BigEndian(data[1..]);
        long circuit = BinaryPrimitives.ReadInt64BigEndian(data[5..]);
        long targetEpoch = BinaryPrimitives.ReadInt64BigEndian(data[13..]);
        int tokenLength = data[21];
        int at = ReplyFixedLength + tokenLength;
        if (data.Length < at + 2)
        {
            return false;
        }

        byte[] token = data.Slice(ReplyFixedLength, tokenLength).ToArray();
        int endPointLength = BinaryPrimitives.ReadUInt16BigEndian(data[at..]);
        if (data.Length < at + 2 + endPointLength + 2)
        {
            return false;
        }

        string endPoint = Encoding.UTF8.GetString(data.Slice(at + 2, endPointLength));
        at += 2 + endPointLength;
        int reasonLength = BinaryPrimitives.ReadUInt16BigEndian(data[at..]);
        if (data.Length != at + 2 + reasonLength)
        {
            return false;
        }

        string reason = Encoding.UTF8.GetString(data.Slice(at + 2, reasonLength));
        reply = error == 0
            ? new RoutedConnectReply(null, null, circuit, token, endPoint.Length == 0 ? null : endPoint, targetEpoch)
            : RoutedConnectReply.Refused(Enum.IsDefined((PeerLinkError)error) ? (PeerLinkError)error : PeerLinkError.Unknown, reason);
        return true;
    }
}
