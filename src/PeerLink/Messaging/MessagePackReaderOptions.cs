using System;

namespace PeerLink.Messaging;

/// <summary>Limits that protect a reader from hostile MessagePack data.</summary>
internal sealed class MessagePackReaderOptions
{
    /// <summary>The options used when none are given.</summary>
    public static MessagePackReaderOptions Default { get; } = new();

    /// <summary>How deeply arrays, maps and nested values may nest.</summary>
    /// <remarks>Defaults to 64. Deeper data is rejected with <see cref="PeerLinkError.InvalidMessagePack"/>, so that a
    /// small message cannot exhaust the stack. Must be between 1 and 1000.</remarks>
    public int MaxDepth
    {
        get;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxDepth));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, 1000, nameof(MaxDepth));
            field = value;
        }
    } = 64;
}
