// The MessagePack timestamp extension (type -1) in its 32, 64 and 96-bit forms.
using System;

namespace PeerLink.Messaging;

/// <summary>
/// A point in time as MessagePack's timestamp extension carries it: seconds since 1970-01-01T00:00:00Z and nanoseconds.
/// It covers a wider range and finer precision than <see cref="DateTimeOffset"/>.
/// </summary>
internal readonly struct MessagePackTimestamp : IEquatable<MessagePackTimestamp>, IComparable<MessagePackTimestamp>
{
    private const long UnixEpochTicks = 621355968000000000;

    /// <summary>Creates a timestamp.</summary>
    /// <param name="seconds">Seconds since the Unix epoch; negative before 1970.</param>
    /// <param name="nanoseconds">Nanoseconds added to <paramref name="seconds"/>, from 0 to 999,999,999.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nanoseconds"/> is 1e9 or more.</exception>
    public MessagePackTimestamp(long seconds, uint nanoseconds)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(nanoseconds, 999_999_999u);
        Seconds = seconds;
        Nanoseconds = nanoseconds;
    }

    /// <summary>Seconds since 1970-01-01T00:00:00Z.</summary>
    public long Seconds { get; }

    /// <summary>Nanoseconds within the second, from 0 to 999,999,999.</summary>
    public uint Nanoseconds { get; }

    /// <summary>Converts a <see cref="DateTimeOffset"/> (exact: ticks are 100 ns).</summary>
    public static MessagePackTimestamp FromDateTimeOffset(DateTimeOffset value)
    {
        long ticks = value.UtcTicks - UnixEpochTicks;
        long seconds = Math.DivRem(ticks, TimeSpan.TicksPerSecond, out long remainder);
        if (remainder < 0)
        {
            seconds--;
            remainder += TimeSpan.TicksPerSecond;
        }

        return new MessagePackTimestamp(seconds, (uint)(remainder * 100));
    }

    /// <summary>Converts to a <see cref="DateTimeOffset"/> in UTC, truncating to 100 ns.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The timestamp is outside the range of <see cref="DateTimeOffset"/>.</exception>
    public DateTimeOffset ToDateTimeOffset()
    {
        const long MinSeconds = -62135596800;   // 0001-01-01T00:00:00Z
        const long MaxSeconds = 253402300799;   // 9999-12-31T23:59:59Z
        if (Seconds < MinSeconds || Seconds > MaxSeconds)
        {
            throw new ArgumentOutOfRangeException(nameof(Seconds), Seconds, "The timestamp is outside the range of DateTimeOffset.");
        }

        return new DateTimeOffset(UnixEpochTicks + (Seconds * TimeSpan.TicksPerSecond) + (Nanoseconds / 100), TimeSpan.Zero);
    }

    /// <inheritdoc />
    public bool Equals(MessagePackTimestamp other) => Seconds == other.Seconds && Nanoseconds == other.Nanoseconds;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is MessagePackTimestamp other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Seconds, Nanoseconds);

    /// <inheritdoc />
    public int CompareTo(MessagePackTimestamp other) =>
        Seconds != other.Seconds ? Seconds.CompareTo(other.Seconds) : Nanoseconds.CompareTo(other.Nanoseconds);

    /// <summary>Seconds and nanoseconds since the Unix epoch, for example "1514862245.678901234".</summary>
    public override string ToString() => $"{Seconds}.{Nanoseconds:D9}";

    /// <summary>Equality.</summary>
    public static bool operator ==(MessagePackTimestamp left, MessagePackTimestamp right) => left.Equals(right);

    /// <summary>Inequality.</summary>
    public static bool operator !=(MessagePackTimestamp left, MessagePackTimestamp right) => !left.Equals(right);

    /// <summary>Ordering.</summary>
    public static bool operator <(MessagePackTimestamp left, MessagePackTimestamp right) => left.CompareTo(right) < 0;

    /// <summary>Ordering.</summary>
    public static bool operator >(MessagePackTimestamp left, MessagePackTimestamp right) => left.CompareTo(right) > 0;

    /// <summary>Ordering.</summary>
    public static bool operator <=(MessagePackTimestamp left, MessagePackTimestamp right) => left.CompareTo(right) <= 0;

    /// <summary>Ordering.</summary>
    public static bool operator >=(MessagePackTimestamp left, MessagePackTimestamp right) => left.CompareTo(right) >= 0;
}
