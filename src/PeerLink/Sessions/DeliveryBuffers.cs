using System;
using System.Buffers;

namespace PeerLink.Sessions;

/// <summary>
/// Buffers for delivered messages, recycled within one session. While the application lags behind, up to
/// <see cref="SecureSessionOptions.MaxReceiveQueueBytes"/> of messages wait in the inbox: more buffers of one size than
/// the shared <see cref="ArrayPool{T}"/> keeps, so each burst would otherwise allocate new ones. Spares are kept only
/// while traffic flows; <see cref="Trim"/> gives them back, so an idle session holds none.
/// </summary>
internal sealed class DeliveryBuffers(long maxSpareBytes)
{
    // As many as the inbox may hold (its byte bound decides): a pipelined sender keeps thousands of small messages
    // waiting, and a fixed few spares made every message past them a new array (about 80 B per 64-byte message).
    private const int MaxSpares = 65_536;
    private readonly object _gate = new();
    private byte[][]? _spares;
    private int _count;
    private long _bytes;

    /// <summary>How many spares are kept (for tests).</summary>
    internal int SpareCount
    {
        get
        {
            lock (_gate)
            {
                return _count;
            }
        }
    }

    /// <summary>A buffer of at least <paramref name="length"/> bytes: the last spare if it fits, else one from the shared pool.</summary>
    public byte[] Rent(int length)
    {
        lock (_gate)
        {
            if (_count > 0)
            {
                byte[] top = _spares![_count - 1];
                if (top.Length >= length && top.Length <= Math.Max(length, 16) * 2)
                {
                    _spares[--_count] = null!;
                    _bytes -= top.Length;
                    return top;
                }
            }
        }

        return ArrayPool<byte>.Shared.Rent(length);
    }

    /// <summary>Takes a buffer back from a released message (one rented from <see cref="Rent"/>).</summary>
    public void Return(byte[] buffer)
    {
        lock (_gate)
        {
            if (_count < MaxSpares && _bytes + buffer.Length <= maxSpareBytes)
            {
                _spares ??= new byte[64][];
                if (_count == _spares.Length)
                {
                    Array.Resize(ref _spares, Math.Min(_spares.Length * 2, MaxSpares));
                }

                _spares[_count++] = buffer;
                _bytes += buffer.Length;
                return;
            }
        }

        ArrayPool<byte>.Shared.Return(buffer);
    }

    /// <summary>Returns every spare to the shared pool.</summary>
    public void Trim()
    {
        byte[][]? spares;
        int count;
        lock (_gate)
        {
            (spares, count) = (_spares, _count);
            _spares = null;
            _count = 0;
            _bytes = 0;
        }

        for (int i = 0; i < count; i++)
        {
            ArrayPool<byte>.Shared.Return(spares![i]);
        }
    }
}
