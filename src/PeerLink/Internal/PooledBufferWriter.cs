using System;
using System.Buffers;

namespace PeerLink.Internal;

/// <summary>
/// An <see cref="IBufferWriter{T}"/> over arrays rented from the shared pool, itself cached per thread so that
/// serializing a message allocates nothing. <see cref="Return"/> gives it back.
/// </summary>
internal sealed class PooledBufferWriter : IBufferWriter<byte>
{
    [ThreadStatic]
    private static PooledBufferWriter? t_cached;

    private byte[]? _buffer;
    private int _written;

    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, _written);

    public static PooledBufferWriter Rent()
    {
        PooledBufferWriter? writer = t_cached;
        t_cached = null;
        return writer ?? new PooledBufferWriter();
    }

    public static void Return(PooledBufferWriter writer)
    {
        writer._written = 0;
        if (writer._buffer is { Length: > 64 * 1024 } large)
        {
            ArrayPool<byte>.Shared.Return(large);   // keep only small buffers cached
            writer._buffer = null;
        }

        t_cached = writer;
    }

    public void Advance(int count) => _written += count;

    public Memory<byte> GetMemory(int sizeHint = 0) => Ensure(sizeHint).AsMemory(_written);

    public Span<byte> GetSpan(int sizeHint = 0) => Ensure(sizeHint).AsSpan(_written);

    private byte[] Ensure(int sizeHint)
    {
        int need = _written + Math.Max(sizeHint, 1);
        if (_buffer is null || _buffer.Length < need)
        {
            byte[] larger = ArrayPool<byte>.Shared.Rent(Math.Max(need, Math.Max(256, (_buffer?.Length ?? 0) * 2)));
            if (_buffer is not null)
            {
                _buffer.AsSpan(0, _written).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_buffer);
            }

            _buffer = larger;
        }

        return _buffer;
    }
}
