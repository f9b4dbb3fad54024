using System;
using System.Diagnostics.CodeAnalysis;

namespace PeerLink.Internal;

/// <summary>Throw helpers, kept out of line so that hot methods stay small.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowPeerLink(PeerLinkError error, string message) => throw new PeerLinkException(error, message);

    public static PeerLinkException MessagePack(string message) => new(PeerLinkError.InvalidMessagePack, message);

    [DoesNotReturn]
    public static void ThrowMessagePack(string message) => throw MessagePack(message);

    [DoesNotReturn]
    public static void ThrowMessagePackTruncated() =>
        throw new PeerLinkException(PeerLinkError.InvalidMessagePack, "MessagePack data ends before the value is complete (truncated).");

    [DoesNotReturn]
    public static void ThrowArgument(string paramName, string message) => throw new ArgumentException(message, paramName);

    [DoesNotReturn]
    public static void ThrowDestinationTooSmall(string paramName) =>
        throw new ArgumentException("The destination buffer is too small.", paramName);
}
