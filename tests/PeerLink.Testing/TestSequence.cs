using System;
using System.Buffers;

namespace PeerLink.Testing;

/// <summary>Builds multi-segment <see cref="ReadOnlySequence{T}"/>s, so that codecs are tested on data split anywhere.</summary>
internal static class TestSequence
{
    /// <summary>Segment sizes every codec test runs with: byte at a time, odd splits, and whole.</summary>
    public static readonly int[] SegmentSizes = [1, 3, 4096];

    public static ReadOnlySequence<byte> Create(ReadOnlySpan<byte> data, int segmentSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentSize, 1);
        if (data.Length <= segmentSize)
        {
            return new ReadOnlySequence<byte>(data.ToArray());
        }

        var first = new Segment(data[..segmentSize].ToArray(), 0);
        Segment last = first;
        for (int offset = segmentSize; offset < data.Length; offset += segmentSize)
        {
            last = last.Append(data.Slice(offset, Math.Min(segmentSize, data.Length - offset)).ToArray());
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] data, long runningIndex)
        {
            Memory = data;
            RunningIndex = runningIndex;
        }

        public Segment Append(byte[] data)
        {
            var next = new Segment(data, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
