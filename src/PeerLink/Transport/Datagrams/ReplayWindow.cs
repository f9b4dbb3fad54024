// The anti-replay window of RFC 6479 ("IPsec Anti-Replay Algorithm without Bit Shifting"): a ring of 64-bit blocks, so
// that moving the window clears whole blocks instead of shifting a long bitmap. A counter is checked before the datagram
// is decrypted (cheap rejection of old and repeated counters) and recorded only after it authenticated, so that forged
// datagrams cannot move the window.
using System;

namespace PeerLink.Transport.Datagrams;

/// <summary>Accepts each datagram counter once, tolerating reordering of up to <see cref="Size"/> counters. Not thread-safe.</summary>
internal sealed class ReplayWindow
{
    private const int BlockBits = 64;
    private const int Blocks = 64;                       // a power of two
    private const int BlockMask = Blocks - 1;

    /// <summary>How far behind the newest counter an older one is still accepted: 4,032 counters (RFC 6479 with 64 blocks of 64 bits, one block kept as slack).</summary>
    public const int Size = (Blocks - 1) * BlockBits;

    private readonly ulong[] _bitmap = new ulong[Blocks];
    private ulong _newest;
    private bool _any;

    /// <summary>The newest counter recorded so far.</summary>
    public ulong Newest => _newest;

    /// <summary>True when <paramref name="counter"/> is neither too old nor already recorded. Changes nothing.</summary>
    public bool IsFresh(ulong counter)
    {
        if (!_any || counter > _newest)
        {
            return true;
        }

        if (_newest - counter >= Size)
        {
            return false;
        }

        return (_bitmap[(int)((counter / BlockBits) & BlockMask)] & (1UL << (int)(counter % BlockBits))) == 0;
    }

    /// <summary>Records an authenticated <paramref name="counter"/>; false (and nothing recorded) when it is stale or a replay.</summary>
    public bool TryRecord(ulong counter)
    {
        if (!IsFresh(counter))
        {
            return false;
        }

        ulong block = counter / BlockBits;
        if (!_any || counter > _newest)
        {
            ulong current = _any ? _newest / BlockBits : block;
            ulong advance = Math.Min(block - current, Blocks);
            for (ulong i = 1; i <= advance; i++)
            {
                _bitmap[(int)((current + i) & BlockMask)] = 0;
            }

            if (!_any)
            {
                _bitmap[(int)(block & BlockMask)] = 0;
            }

            _newest = counter;
            _any = true;
        }

        _bitmap[(int)(block & BlockMask)] |= 1UL << (int)(counter % BlockBits);
        return true;
    }
}
