using System;
using System.Buffers;

namespace PeerLink.Sessions;

/// <summary>
/// Joins the DATA fragments of one message (docs/protocol.md §5: all but the last carry MORE) into a pooled buffer that
/// grows by doubling up to the receiver's limit. A message that would exceed the limit is refused before it is
/// buffered. Used by the receive loop alone.
/// </summary>
internal sealed class Reassembler
{
    private byte[]? _buffer;
    private int _length;
    private byte _flags;

    /// <summary>True while a fragmented message is incomplete.</summary>
    public bool InProgress => _buffer is not null;

    /// <summary>
    /// Adds one DATA record. Returns true when it completes a message: then <paramref name="message"/> and
    /// <paramref name="messageFlags"/> (the first fragment's flags) describe it until <see cref="Release"/>, which the
    /// caller must call once it has taken the message. An unfragmented record is returned as it is, without a copy.
    /// </summary>
    /// <param name="flags">The record's flags.</param>
    /// <param name="body">The record's body.</param>
    /// <param name="maxMessageSize">The receiver's limit; a request or response id (4 bytes) may come on top.</param>
    /// <param name="message">The whole message.</param>
    /// <param name="messageFlags">Its flags.</param>
    /// <exception cref="PeerLinkException"><see cref="PeerLinkError.MessageTooLarge"/>; the partial message is dropped.</exception>
    public bool Add(byte flags, ReadOnlySpan<byte> body, int maxMessageSize, out ReadOnlySpan<byte> message, out byte messageFlags)
    {
        bool more = (flags & SessionWire.More) != 0;
        if (_buffer is null && !more)
        {
            message = body;
            messageFlags = flags;
            return true;
        }

        if (_buffer is null)
        {
            _flags = flags;
            _length = 0;
            _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(body.Length * 2, 4096));
        }

        long total = (long)_length + body.Length;
        int limit = maxMessageSize + 4;
        if (total > limit)
        {
            Release();
            throw new PeerLinkException(PeerLinkError.MessageTooLarge, $"The peer sent a message larger than the limit of {maxMessageSize} bytes.");
        }

        if (total > _buffer.Length)
        {
            byte[] larger = ArrayPool<byte>.Shared.Rent((int)Math.Min(Math.Max(total, _buffer.Length * 2L), limit));
            _buffer.AsSpan(0, _length).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }

        body.CopyTo(_buffer.AsSpan(_length));
        _length = (int)total;
        if (more)
        {
            message = default;
            messageFlags = 0;
            return false;
        }

        message = _buffer.AsSpan(0, _length);
        messageFlags = _flags;
        return true;
    }

    /// <summary>Gives the buffer back: after a completed message was taken, or when the session ends.</summary>
    public void Release()
    {
        if (_buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
            _length = 0;
        }
    }
}
