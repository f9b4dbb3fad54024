// A sorted set of disjoint half-open ranges [start, end) of 64-bit numbers: stream offsets acknowledged or to resend,
// packet numbers received. Adjacent and overlapping ranges merge; the list's storage is reused, so steady-state use
// allocates nothing.
using System;
using System.Collections.Generic;

namespace PeerLink.Transport.Datagrams;

internal sealed class RangeSet
{
    private readonly List<(long Start, long End)> _ranges = new();

    public int Count => _ranges.Count;

    public bool IsEmpty => _ranges.Count == 0;

    public (long Start, long End) this[int index] => _ranges[index];

    public (long Start, long End) First => _ranges[0];

    public (long Start, long End) Last => _ranges[^1];

    public void Clear() => _ranges.Clear();

    /// <summary>Adds [start, end), merging with neighbours.</summary>
    public void Add(long start, long end)
    {
        if (end <= start)
        {
            return;
        }

        // Fast path: appending at or after the end (in-order arrival).
        if (_ranges.Count == 0 || start > _ranges[^1].End)
        {
            _ranges.Add((start, end));
            return;
        }

        if (start >= _ranges[^1].Start)
        {
            _ranges[^1] = (_ranges[^1].Start, Math.Max(end, _ranges[^1].End));
            return;
        }

        int i = 0;
        while (i < _ranges.Count && _ranges[i].End < start)
        {
            i++;
        }

        if (i == _ranges.Count || _ranges[i].Start > end)
        {
            _ranges.Insert(i, (start, end));
            return;
        }

        long newStart = Math.Min(start, _ranges[i].Start);
        long newEnd = Math.Max(end, _ranges[i].End);
        int j = i + 1;
        while (j < _ranges.Count && _ranges[j].Start <= newEnd)
        {
            newEnd = Math.Max(newEnd, _ranges[j].End);
            j++;
        }

        _ranges[i] = (newStart, newEnd);
        if (j > i + 1)
        {
            _ranges.RemoveRange(i + 1, j - i - 1);
        }
    }

    /// <summary>Removes [start, end) from the set.</summary>
    public void Remove(long start, long end)
    {
        if (end <= start)
        {
            return;
        }

        for (int i = 0; i < _ranges.Count; i++)
        {
            (long s, long e) = _ranges[i];
            if (e <= start)
            {
                continue;
            }

            if (s >= end)
            {
                break;
            }

            if (s < start && e > end)
            {
                _ranges[i] = (s, start);
                _ranges.Insert(i + 1, (end, e));
                return;
            }

            if (s < start)
            {
                _ranges[i] = (s, start);
            }
            else if (e > end)
            {
                _ranges[i] = (end, e);
            }
            else
            {
                _ranges.RemoveAt(i);
                i--;
            }
        }
    }

    /// <summary>Removes everything below <paramref name="value"/>.</summary>
    public void RemoveBelow(long value)
    {
        int drop = 0;
        while (drop < _ranges.Count && _ranges[drop].End <= value)
        {
            drop++;
        }

        if (drop > 0)
        {
            _ranges.RemoveRange(0, drop);
        }

        if (_ranges.Count > 0 && _ranges[0].Start < value)
        {
            _ranges[0] = (value, _ranges[0].End);
        }
    }

    /// <summary>Keeps only the <paramref name="count"/> highest ranges.</summary>
    public void KeepHighest(int count)
    {
        if (_ranges.Count > count)
        {
            _ranges.RemoveRange(0, _ranges.Count - count);
        }
    }

    public bool Contains(long value)
    {
        foreach ((long s, long e) in _ranges)
        {
            if (value < s)
            {
                return false;
            }

            if (value < e)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The end of the range that starts at or before <paramref name="from"/> and covers it, or <paramref name="from"/> when none does.</summary>
    public long ContiguousFrom(long from)
    {
        foreach ((long s, long e) in _ranges)
        {
            if (s > from)
            {
                break;
            }

            if (e > from)
            {
                return e;
            }
        }

        return from;
    }
}
