// The receive side of a session (docs/protocol.md §4–8): one loop reads Noise transport messages from the stream,
// decrypts them, and dispatches their records: DATA to the reassembler and the application's inbox, PING/PONG, ACCEPT,
// CLOSE, REKEY. It owns receive flow control (the loop pauses while the application is behind) and the delivered
// messages' buffers.
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Security.Noise;
using PeerLink.Sessions.Framing;

namespace PeerLink.Sessions;

/// <summary>
/// Reads, decrypts and dispatches what the peer sends, and hands messages to the application. It reaches the send side
/// only through the sender's narrow calls (PONG, CLOSE, the peer's close, "a message was taken"), and the session's
/// lifetime through two callbacks (fail, complete). The loop is the only writer of its state; the application's receive
/// calls come from one reader at a time.
/// </summary>
internal sealed class SessionReceiver
{
    private readonly PipeReader _input;
    private readonly NoiseCipherState _cipher;
    private readonly SecureSessionOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _connectionId;
    private readonly SessionSender _sender;
    private readonly RequestTracker _requests;
    private readonly ISessionLifetime _lifetime;
    private readonly Inbox _inbox = new();
    private readonly DeliveryBuffers _deliveryBuffers;
    private long _lastReceivedAt;
    private readonly object _receiveGate = new();
    private long _queuedReceiveBytes;
    private TaskCompletionSource? _receiveSpace;
    private byte[]? _lastDelivered;
    private readonly Reassembler _reassembler = new();
    private bool _remoteClosed;
    private SessionCloseCode _remoteCloseCode;
    private Task _receiveLoop = Task.CompletedTask;
    private readonly TaskCompletionSource _accepted = new(TaskCreationOptions.RunContinuationsAsynchronously);


    public SessionReceiver(PipeReader input, NoiseCipherState cipher, SecureSessionOptions options, ILogger logger, string connectionId,
        SessionSender sender, RequestTracker requests, ISessionLifetime lifetime)
    {
        _input = input;
        _cipher = cipher;
        _options = options;
        _time = options.TimeProvider;
        _logger = logger;
        _connectionId = connectionId;
        _sender = sender;
        _requests = requests;
        _lifetime = lifetime;
        _deliveryBuffers = new DeliveryBuffers(options.MaxReceiveQueueBytes);
        _lastReceivedAt = _time.GetTimestamp();
    }

    /// <summary>How many times the receiving key was rekeyed.</summary>
    public int Rekeys { get; private set; }

    /// <summary>Takes PATH records (a copy of each body), on the receive loop: it must hand the work off at once.</summary>
    public Action<byte[]>? PathSignal { get; set; }

    /// <summary>When anything last arrived from the peer (a <see cref="TimeProvider"/> timestamp).</summary>
    public long LastReceivedAt => Volatile.Read(ref _lastReceivedAt);

    /// <summary>Completes when the peer's ACCEPT arrived; faults when the session failed first.</summary>
    public Task Accepted => _accepted.Task;

    /// <summary>The receive loop (completed before <see cref="Start"/>).</summary>
    public Task Loop => _receiveLoop;

    /// <summary>True while the loop waits for the application to take messages.</summary>
    public bool IsPaused
    {
        get
        {
            lock (_receiveGate)
            {
                return _receiveSpace is not null;
            }
        }
    }

    /// <summary>
    /// Starts the receive loop on this thread: what is already buffered is processed before this returns, and the loop
    /// goes on from wherever data arrives next. The peer's first records often come with its last handshake message (in
    /// IK the responder's ACCEPT rides with message 2), so the initiator is established without a thread hop.
    /// </summary>
    public void Start() => _receiveLoop = ReceiveLoopAsync();

    /// <summary>The session ended gracefully: the application reads what is queued, then the end.</summary>
    public void OnCompleted() => _inbox.Complete();

    /// <summary>The session failed: every wait ends with <paramref name="error"/>.</summary>
    public void OnFailed(Exception error)
    {
        _accepted.TrySetException(error);
        _inbox.Complete(error);
        lock (_receiveGate)
        {
            _receiveSpace?.TrySetResult();
        }
    }

    /// <summary>Gives every buffer back; after the loop ended.</summary>
    public void Release()
    {
        ReleaseLastDelivered();
        foreach (PeerMessage left in _inbox.Drain())
        {
            _deliveryBuffers.Return(left.Buffer);
        }

        _deliveryBuffers.Trim();
        _reassembler.Release();
    }

    /// <summary>Quiet for a while: give recycled delivery buffers back.</summary>
    public void TrimBuffers() => _deliveryBuffers.Trim();

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<PeerMessage?> WaitAndReceiveAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            await _inbox.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (TryReceive(out PeerMessage? message))
            {
                return message;
            }
        }
    }

    /// <summary>True with the next message, or with null at a graceful end; throws at a failed end; false to wait.</summary>
    public bool TryReceive(out PeerMessage? received)
    {
        if (_inbox.TryRead(out PeerMessage message, out Exception? error, out bool ended))
        {
            OnDelivered(message);
            received = message;
            return true;
        }

        received = null;
        if (ended && error is PeerLinkException inner)
        {
            throw new PeerLinkException(inner.Error, inner.Message, inner.RemoteCloseCode, inner);   // a fresh stack for this caller, the same code
        }

        return ended;
    }

    private async Task ReceiveLoopAsync()
    {
        // Buffers are rented per read and returned before the next wait, so that an idle session holds none.
        byte[]? plaintext = null;
        byte[]? scratch = null;
        int plaintextUsed = 0;
        try
        {
            while (true)
            {
                await WaitForReceiveSpaceAsync().ConfigureAwait(false);
                ReadResult result = await _input.ReadAsync().ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                SequencePosition consumed = buffer.Start;
                SequencePosition examined = buffer.End;
                bool ended = false;
                try
                {
                    if (result.IsCanceled)
                    {
                        return;
                    }

                    while (TryReadMessage(ref buffer, out ReadOnlySequence<byte> ciphertext))
                    {
                        Volatile.Write(ref _lastReceivedAt, _time.GetTimestamp());
                        if (_remoteClosed)
                        {
                            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer sent a message after its CLOSE.");
                        }

                        ReadOnlySpan<byte> input;
                        if (ciphertext.IsSingleSegment)
                        {
                            input = ciphertext.FirstSpan;
                        }
                        else
                        {
                            scratch ??= ArrayPool<byte>.Shared.Rent(NoiseCipherState.MaxMessageLength);
                            ciphertext.CopyTo(scratch);
                            input = scratch.AsSpan(0, (int)ciphertext.Length);
                        }

                        plaintext ??= ArrayPool<byte>.Shared.Rent(SessionWire.MaxPlaintext);
                        if (!_cipher.TryDecryptWithAd(default, input, plaintext, out int length))
                        {
                            throw new PeerLinkException(PeerLinkError.DecryptionFailed, "A message from the peer failed authentication (altered, replayed, reordered or truncated).");
                        }

                        consumed = buffer.Start;
                        plaintextUsed = Math.Max(plaintextUsed, length);
                        if (ProcessRecords(plaintext.AsSpan(0, length)) && _cipher.HasKey)
                        {
                            _cipher.Rekey();
                            Rekeys++;
                            SessionLog.Rekeyed(_logger, _connectionId, "receive");
                        }

                        if (_remoteClosed)
                        {
                            FinishRemoteClose();
                        }

                        if (!_accepted.Task.IsCompleted)
                        {
                            throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer's first message did not start with ACCEPT.");
                        }
                    }

                    consumed = buffer.Start;
                    if (result.IsCompleted)
                    {
                        if (!buffer.IsEmpty)
                        {
                            throw new PeerLinkException(PeerLinkError.Truncated, $"The connection ended in the middle of a message ({buffer.Length} bytes left).");
                        }

                        ended = true;
                    }
                }
                finally
                {
                    _input.AdvanceTo(consumed, examined);
                    ReturnReceiveBuffers(ref plaintext, ref plaintextUsed, ref scratch);
                }

                if (ended)
                {
                    if (_remoteClosed)
                    {
                        _lifetime.Complete();
                    }
                    else
                    {
                        _lifetime.Fail(new PeerLinkException(PeerLinkError.ConnectionReset, "The peer's connection ended without a CLOSE: the session was aborted."), false);
                    }

                    return;
                }
            }
        }
        catch (PeerLinkException e)
        {
            SessionLog.ReceiveFailed(_logger, _connectionId, e.Error, e.Message);
            SessionCloseCode code = e.Error switch
            {
                PeerLinkError.MessageTooLarge => SessionCloseCode.MessageTooLarge,
                PeerLinkError.ConnectionReset or PeerLinkError.ConnectionAborted or PeerLinkError.RelayLimitExceeded => SessionCloseCode.Normal,
                _ => SessionCloseCode.ProtocolViolation,
            };
            if (code != SessionCloseCode.Normal && e.Error != PeerLinkError.DecryptionFailed)
            {
                // Tell the peer why, if the channel still works; then drop the connection.
                _sender.SendClose(code, null);
                try
                {
                    await _sender.DrainAsync().ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // The peer does not read; it will see the connection drop instead.
                }
            }

            _lifetime.Fail(e, true);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
            _lifetime.Fail(new PeerLinkException(PeerLinkError.ConnectionAborted, "The session's connection was closed.", e), true);
        }
        finally
        {
            ReturnReceiveBuffers(ref plaintext, ref plaintextUsed, ref scratch);
        }
    }

    private static void ReturnReceiveBuffers(ref byte[]? plaintext, ref int plaintextUsed, ref byte[]? scratch)
    {
        if (plaintext is not null)
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(plaintext.AsSpan(0, plaintextUsed));
            ArrayPool<byte>.Shared.Return(plaintext);
            plaintext = null;
            plaintextUsed = 0;
        }

        if (scratch is not null)
        {
            ArrayPool<byte>.Shared.Return(scratch);
            scratch = null;
        }
    }

    private bool TryReadMessage(ref ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> ciphertext)
    {
        if (_cipher.HasKey && buffer.Length >= NoiseFrame.PrefixSize && NoiseFrame.PeekLength(buffer) < NoiseCipherState.TagSize)
        {
            throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"A transport message of {NoiseFrame.PeekLength(buffer)} bytes is shorter than its authentication tag.");
        }

        return NoiseFrame.TryRead(ref buffer, out ciphertext);
    }

    /// <summary>Dispatches the records of one decrypted message. Returns true when it ended with REKEY.</summary>
    private bool ProcessRecords(ReadOnlySpan<byte> records)
    {
        while (!records.IsEmpty)
        {
            if (records.Length < SessionWire.RecordHeaderSize)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "A record header is truncated.");
            }

            byte type = records[0];
            byte flags = records[1];
            int length = BinaryPrimitives.ReadUInt16BigEndian(records[2..]);
            if (records.Length < SessionWire.RecordHeaderSize + length)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"A record claims {length} bytes; its message holds {records.Length - SessionWire.RecordHeaderSize}.");
            }

            ReadOnlySpan<byte> body = records.Slice(SessionWire.RecordHeaderSize, length);
            records = records[(SessionWire.RecordHeaderSize + length)..];
            if (_remoteClosed)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer sent a record after its CLOSE.");
            }

            if (type != SessionWire.Accept && !_accepted.Task.IsCompleted && type != SessionWire.Close)
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "The peer sent a record before ACCEPT.");
            }

            switch (type)
            {
                case SessionWire.Data:
                    OnData(flags, body);
                    break;
                case SessionWire.Ping:
                    _sender.EnqueueControl(SessionWire.Pong, body.Length <= 8 ? body : body[..8]);
                    break;
                case SessionWire.Pong:
                    if (!body.IsEmpty)
                    {
                        _requests.OnPong();     // keepalive PINGs are empty, so their PONGs are not an application's ping
                    }

                    break;
                case SessionWire.Accept:
                    if (!_accepted.TrySetResult())
                    {
                        throw new PeerLinkException(PeerLinkError.ProtocolViolation, "An unexpected ACCEPT.");
                    }

                    break;
                case SessionWire.Close:
                    OnClose(body);
                    break;
                case SessionWire.PathSignal:
                    PathSignal?.Invoke(body.ToArray());
                    break;
                case SessionWire.Rekey:
                    if (!records.IsEmpty)
                    {
                        throw new PeerLinkException(PeerLinkError.ProtocolViolation, "REKEY must be the last record of its message.");
                    }

                    return true;
                default:
                    if ((type & SessionWire.IgnorableBit) == 0)
                    {
                        throw new PeerLinkException(PeerLinkError.ProtocolViolation, $"Unknown record type 0x{type:x2}.");
                    }

                    break;
            }
        }

        return false;
    }

    private void OnData(byte flags, ReadOnlySpan<byte> body)
    {
        if (_reassembler.Add(flags, body, _options.MaxMessageSize, out ReadOnlySpan<byte> message, out byte messageFlags))
        {
            Deliver(messageFlags, message);
            _reassembler.Release();
        }
    }

    private void Deliver(byte flags, ReadOnlySpan<byte> body)
    {
        uint id = 0;
        bool isRequest = (flags & SessionWire.Request) != 0;
        bool isResponse = (flags & SessionWire.Response) != 0;
        if (isRequest || isResponse)
        {
            if (body.Length < 4 || (isRequest && isResponse))
            {
                throw new PeerLinkException(PeerLinkError.ProtocolViolation, "A request or response without its id.");
            }

            id = BinaryPrimitives.ReadUInt32BigEndian(body);
            body = body[4..];
        }

        if (body.Length > _options.MaxMessageSize)
        {
            throw new PeerLinkException(PeerLinkError.MessageTooLarge, $"The peer sent a message larger than the limit of {_options.MaxMessageSize} bytes.");
        }

        if (isResponse)
        {
            _requests.OnResponse(id, body);
            return;   // a late response to a request that timed out is dropped
        }

        byte[] buffer = _deliveryBuffers.Rent(Math.Max(body.Length, 1));
        body.CopyTo(buffer);
        lock (_receiveGate)
        {
            _queuedReceiveBytes += body.Length;
        }

        if (!_inbox.TryWrite(new PeerMessage(buffer, body.Length, id, isRequest, _options.Serializer)))
        {
            _deliveryBuffers.Return(buffer);
        }
    }

    /// <summary>
    /// An unreliable message from a datagram transport, on its receive loop. It may overtake reliable ones, and it is
    /// dropped (as the network could have dropped it) before the session is accepted, after the peer's CLOSE, when it is
    /// larger than the session's limit, or while the application is behind.
    /// </summary>
    public void DeliverUnreliable(ReadOnlySpan<byte> body)
    {
        if (!_accepted.Task.IsCompletedSuccessfully || _remoteClosed || body.Length > _options.MaxMessageSize)
        {
            return;
        }

        lock (_receiveGate)
        {
            if (_queuedReceiveBytes >= _options.MaxReceiveQueueBytes)
            {
                return;
            }

            _queuedReceiveBytes += body.Length;
        }

        byte[] buffer = _deliveryBuffers.Rent(Math.Max(body.Length, 1));
        body.CopyTo(buffer);
        if (!_inbox.TryWrite(new PeerMessage(buffer, body.Length, 0, false, _options.Serializer)))
        {
            _deliveryBuffers.Return(buffer);
        }
    }

    private void OnClose(ReadOnlySpan<byte> body)
    {
        _remoteCloseCode = body.IsEmpty ? SessionCloseCode.Normal : (SessionCloseCode)body[0];
        _remoteClosed = true;
        _sender.OnRemoteClose(_remoteCloseCode);
        SessionLog.CloseReceived(_logger, _connectionId, _remoteCloseCode);
    }

    /// <summary>After the message that carried the peer's CLOSE was processed without error.</summary>
    private void FinishRemoteClose()
    {
        SessionCloseCode code = _remoteCloseCode;
        if (code == SessionCloseCode.Refused && !_accepted.Task.IsCompleted)
        {
            _accepted.TrySetException(new PeerLinkException(PeerLinkError.PeerRefused, "The peer refused the session.", code));
        }

        if (code is SessionCloseCode.Normal or SessionCloseCode.Shutdown)
        {
            _inbox.Complete();
        }
        else
        {
            PeerLinkError error = code switch
            {
                SessionCloseCode.Refused => PeerLinkError.PeerRefused,
                SessionCloseCode.MessageTooLarge => PeerLinkError.MessageTooLarge,
                SessionCloseCode.Timeout => PeerLinkError.PeerTimeout,
                SessionCloseCode.ProtocolViolation => PeerLinkError.ProtocolViolation,
                _ => PeerLinkError.SessionClosed,      // a code from a newer peer that this version does not know
            };
            _inbox.Complete(new PeerLinkException(error, $"The peer closed the session: {code}.", code));
        }

        // Answer with our own CLOSE after whatever we still have queued; then the flush loop sends FIN.
        _sender.SendClose(SessionCloseCode.Normal, null);
    }

    private async Task WaitForReceiveSpaceAsync()
    {
        while (true)
        {
            Task space;
            lock (_receiveGate)
            {
                // Also go on once the session has failed: the next read then ends the loop.
                if (_queuedReceiveBytes < _options.MaxReceiveQueueBytes || _sender.HasFailed)
                {
                    return;
                }

                _receiveSpace ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                space = _receiveSpace.Task;
            }

            await space.ConfigureAwait(false);
            Volatile.Write(ref _lastReceivedAt, _time.GetTimestamp());   // our own pause is not the peer's silence
        }
    }

    private void OnDelivered(PeerMessage message)
    {
        _lastDelivered = message.Buffer;
        _sender.NoteReceived();
        Diagnostics.Telemetry.CountMessage(Diagnostics.Telemetry.MessagesReceived, Diagnostics.Telemetry.BytesReceived, message.Length);
        TaskCompletionSource? space = null;
        lock (_receiveGate)
        {
            _queuedReceiveBytes -= message.Length;
            if (_queuedReceiveBytes < _options.MaxReceiveQueueBytes)
            {
                (space, _receiveSpace) = (_receiveSpace, null);
            }
        }

        space?.TrySetResult();
    }

    public void ReleaseLastDelivered()
    {
        byte[]? last = Interlocked.Exchange(ref _lastDelivered, null);
        if (last is not null)
        {
            _deliveryBuffers.Return(last);
        }
    }
}
