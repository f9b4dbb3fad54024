// The keys of one datagram session (docs/protocol.md §11.4): each direction's Noise transport key, used with the
// datagram's own counter as the nonce, the replay window, and key updates. A sender moves to the next key (Noise REKEY of
// the current one) after a time or a number of datagrams and flips the key phase bit; the receiver derives the same next
// key when it sees the flip, and keeps the previous key for a grace period so that reordered datagrams still open. No
// new handshake, no pause in traffic.
using System;
using System.Buffers.Binary;
using System.Threading;
using PeerLink.Security.Noise;

namespace PeerLink.Transport.Datagrams;

/// <summary>
/// Seals and opens the transport datagrams of one session. Sealing is serialized by the caller (one sender); opening
/// runs on one receive loop. The two sides share no state, so they may run concurrently.
/// </summary>
internal sealed class DatagramKeys : IDisposable
{
    private readonly TimeProvider _time;
    private readonly TimeSpan _rekeyInterval;
    private readonly ulong _rekeyAfterDatagrams;
    private readonly TimeSpan _grace;

    // Send side.
    private NoiseCipherState _send;
    private bool _sendPhase;
    private ulong _nextCounter;
    private long _sendKeyAt;
    private ulong _sendKeyDatagrams;

    // Receive side.
    private NoiseCipherState _receive;
    private bool _receivePhase;
    private ulong _receivePhaseStart;
    private NoiseCipherState? _previous;
    private long _previousUntil;
    private NoiseCipherState? _next;
    private readonly ReplayWindow _window = new();
    private int _disposed;

    public DatagramKeys(NoiseCipherState send, NoiseCipherState receive, TimeProvider time, TimeSpan rekeyInterval, ulong rekeyAfterDatagrams, TimeSpan grace)
    {
        _send = send;
        _receive = receive;
        _time = time;
        _rekeyInterval = rekeyInterval;
        _rekeyAfterDatagrams = rekeyAfterDatagrams;
        _grace = grace;
        _sendKeyAt = time.GetTimestamp();
    }

    /// <summary>Key updates made by this side's sender.</summary>
    public int SendUpdates { get; private set; }

    /// <summary>Key updates of the peer followed by this side's receiver.</summary>
    public int ReceiveUpdates { get; private set; }

    /// <summary>The counter the next sealed datagram will carry (also the number sealed so far).</summary>
    public ulong NextCounter => _nextCounter;

    /// <summary>
    /// Writes a transport datagram for <paramref name="plaintext"/> into <paramref name="destination"/>: header, then
    /// ciphertext and tag. Returns its length; <paramref name="counter"/> is the counter it carries.
    /// </summary>
    public int Seal(Span<byte> destination, uint receiverIndex, ReadOnlySpan<byte> plaintext, out ulong counter)
    {
        if (_sendKeyDatagrams >= _rekeyAfterDatagrams || _time.GetElapsedTime(_sendKeyAt) >= _rekeyInterval)
        {
            NoiseCipherState next = _send.CreateNext();
            _send.Dispose();
            _send = next;
            _sendPhase = !_sendPhase;
            _sendKeyAt = _time.GetTimestamp();
            _sendKeyDatagrams = 0;
            SendUpdates++;
        }

        counter = _nextCounter++;
        _sendKeyDatagrams++;
        int length = DatagramWire.TransportHeaderSize + plaintext.Length + DatagramWire.TagSize;
        DatagramWire.WriteTransportHeader(destination, receiverIndex, counter, _sendPhase);
        _send.EncryptWithNonce(counter, destination[..DatagramWire.TransportHeaderSize], plaintext, destination[DatagramWire.TransportHeaderSize..length]);
        return length;
    }

    /// <summary>
    /// Authenticates and decrypts a transport datagram into <paramref name="plaintext"/> (at least the datagram's length).
    /// False, with nothing recorded, for a replay, a datagram too old for the window, or one that fails authentication.
    /// </summary>
    public bool TryOpen(ReadOnlySpan<byte> datagram, Span<byte> plaintext, out ulong counter, out int length)
    {
        length = 0;
        counter = 0;
        if (datagram.Length < DatagramWire.TransportHeaderSize + DatagramWire.TagSize || datagram[0] != DatagramWire.Transport)
        {
            return false;
        }

        counter = BinaryPrimitives.ReadUInt64BigEndian(datagram[8..]);
        if (!_window.IsFresh(counter))
        {
            return false;
        }

        bool phase = (datagram[1] & DatagramWire.KeyPhaseBit) != 0;
        ReadOnlySpan<byte> header = datagram[..DatagramWire.TransportHeaderSize];
        ReadOnlySpan<byte> ciphertext = datagram[DatagramWire.TransportHeaderSize..];
        int plaintextLength = ciphertext.Length - DatagramWire.TagSize;
        if (phase == _receivePhase)
        {
            if (!_receive.TryDecryptWithNonce(counter, header, ciphertext, plaintext))
            {
                return false;
            }
        }
        else if (_previous is not null && counter < _receivePhaseStart && _time.GetTimestamp() < _previousUntil)
        {
            if (!_previous.TryDecryptWithNonce(counter, header, ciphertext, plaintext))
            {
                return false;
            }
        }
        else
        {
            // The peer moved to its next key: derive it (once), and switch only if the datagram authenticates with it.
            _next ??= _receive.CreateNext();
            if (!_next.TryDecryptWithNonce(counter, header, ciphertext, plaintext))
            {
                return false;
            }

            _previous?.Dispose();
            _previous = _receive;
            _previousUntil = _time.GetTimestamp() + (long)(_grace.TotalSeconds * _time.TimestampFrequency);
            _receive = _next;
            _next = null;
            _receivePhase = phase;
            _receivePhaseStart = counter;
            ReceiveUpdates++;
        }

        _window.TryRecord(counter);
        length = plaintextLength;
        return true;
    }

    /// <summary>Erases every key.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _send.Dispose();
        _receive.Dispose();
        _previous?.Dispose();
        _next?.Dispose();
    }
}
