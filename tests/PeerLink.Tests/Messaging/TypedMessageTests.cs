using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading.Tasks;
using Nerdbank.MessagePack;
using PeerLink.Messaging;
using PeerLink.Sessions;
using PeerLink.Testing;
using PolyType;
using PolyType.Abstractions;
using Xunit;

namespace PeerLink.Tests.Messaging;

/// <summary>Typed messages on Nerdbank.MessagePack, with PeerLink's stricter rules for what comes from the network.</summary>
public sealed partial class TypedMessageTests : PeerIdentities
{
    private static readonly MessagePackSerializer Serializer = TypedMessages.DefaultSerializer;

    [Fact]
    public void ARecordRoundTripsAndUnknownKeysFromANewerPeerAreSkipped()
    {
        var original = new Reading("porch", -12.25, [1, 2, 3], new DateTimeOffset(2026, 11, 21, 9, 30, 15, 123, TimeSpan.FromHours(2)));
        Reading copy = RoundTrip(original);
        Assert.Equal(original.Sensor, copy.Sensor);
        Assert.Equal(original.Value, copy.Value);
        Assert.Equal(original.Raw, copy.Raw);
        Assert.Equal(original.Time, copy.Time);
        Assert.Equal(original.Time.Offset, copy.Time.Offset);

        // A newer peer's message: the same record with a key this version does not know.
        byte[] newer = Serializer.Serialize(new ReadingV2("attic", 3.5, null, DateTimeOffset.UnixEpoch, new Dictionary<string, int> { ["battery"] = 80 }));
        Reading older = TypedMessages.Deserialize(Serializer, newer, TypeShapeResolver.Resolve<Reading>());
        Assert.Equal("attic", older.Sensor);
        Assert.Null(older.Raw);
    }

    [Fact]
    public void ADateTimeOffsetIsATimestampAndAnOffsetInMinutes()
    {
        // Documented in docs/messagepack.md: [timestamp extension (-1) of the UTC instant, offset in minutes].
        byte[] bytes = Serializer.Serialize(new Stamp(new DateTimeOffset(1970, 1, 1, 2, 0, 1, TimeSpan.FromHours(2))));
        Assert.Equal("81A454696D6592D6FF0000000178", Convert.ToHexString(bytes));
    }

    [Fact]
    public void BytesAfterTheValueAreRejected()
    {
        byte[] bytes = [.. Serializer.Serialize(new Stamp(DateTimeOffset.UnixEpoch)), 0xC0];
        var error = Assert.Throws<PeerLinkException>(() => TypedMessages.Deserialize(Serializer, bytes, TypeShapeResolver.Resolve<Stamp>()));
        Assert.Equal(PeerLinkError.InvalidMessagePack, error.Error);
        Assert.Contains("1 byte(s) follow the value", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NilIsRejectedUnlessTheTypeIsANullableValueType()
    {
        byte[] nil = [0xC0];
        Assert.Equal(PeerLinkError.InvalidMessagePack, Assert.Throws<PeerLinkException>(() => TypedMessages.Deserialize(Serializer, nil, TypeShapeResolver.Resolve<Stamp>())).Error);
        Assert.Equal(PeerLinkError.InvalidMessagePack, Assert.Throws<PeerLinkException>(() => TypedMessages.Deserialize(Serializer, nil, TypeShapeResolver.Resolve<int, Witness>())).Error);
        Assert.Null(TypedMessages.Deserialize(Serializer, nil, TypeShapeResolver.Resolve<int?, Witness>()));
        Assert.Equal(PeerLinkError.InvalidMessagePack, Assert.Throws<PeerLinkException>(() => TypedMessages.Deserialize(Serializer, ReadOnlyMemory<byte>.Empty, TypeShapeResolver.Resolve<Stamp>())).Error);
    }

    [Fact]
    public void InvalidUtf8IsRejected()
    {
        // {"Sensor": <2-byte string C3 28, not UTF-8>, ...}
        byte[] bytes = Convert.FromHexString("84A653656E736F72A2C328A556616C7565CB0000000000000000A3526177C0A454696D6592D6FF0000000000");
        var error = Assert.Throws<PeerLinkException>(() => TypedMessages.Deserialize(Serializer, bytes, TypeShapeResolver.Resolve<Reading>()));
        Assert.Equal(PeerLinkError.InvalidMessagePack, error.Error);
    }

    [Fact]
    public void NonAsciiStringsPassAndTheReservedCodeIsRefused()
    {
        var original = new Reading("Küche 🌡 " + new string('x', 300), 1, [1, 70_000, -5], DateTimeOffset.UnixEpoch);   // str16, uint32, negative
        Assert.Equal(original.Sensor, RoundTrip(original).Sensor);

        byte[] bytes = Serializer.Serialize(original);
        int at = Array.IndexOf(bytes, (byte)0xCB);      // the double's float64 code
        bytes[at] = 0xC1;
        var error = Assert.Throws<PeerLinkException>(() => TypedMessages.Deserialize(Serializer, bytes, TypeShapeResolver.Resolve<Reading>()));
        Assert.Equal(PeerLinkError.InvalidMessagePack, error.Error);
        Assert.Contains("reserved code 0xc1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DeepNestingIsRejectedNotAStackOverflow()
    {
        // 10,000 nested one-element arrays where the message expects a Node tree: the library's depth limit stops it.
        byte[] bytes = new byte[10_001];
        bytes.AsSpan(0, 10_000).Fill(0x91);
        bytes[^1] = 0xC0;
        var error = Assert.Throws<PeerLinkException>(() => TypedMessages.Deserialize(Serializer, bytes, TypeShapeResolver.Resolve<Node>()));
        Assert.Equal(PeerLinkError.InvalidMessagePack, error.Error);

        byte[] deepMaps = new byte[2 * 5000 + 1];
        for (int i = 0; i < 5000; i++)
        {
            deepMaps[2 * i] = 0x81;       // {"Next": {"Next": ...
            deepMaps[(2 * i) + 1] = 0xA0;  // key "" (unknown: skipped, which recurses too)
        }

        deepMaps[^1] = 0xC0;
        Assert.Equal(PeerLinkError.InvalidMessagePack, Assert.Throws<PeerLinkException>(() => TypedMessages.Deserialize(Serializer, deepMaps, TypeShapeResolver.Resolve<Node>())).Error);
    }

    [Fact]
    public void TruncationAnywhereIsAClearError()
    {
        byte[] bytes = Serializer.Serialize(new Reading("kitchen", 21.5, [9, 8, 7], DateTimeOffset.UnixEpoch));
        for (int cut = 0; cut < bytes.Length; cut++)
        {
            var error = Assert.Throws<PeerLinkException>(() => TypedMessages.Deserialize(Serializer, bytes.AsMemory(0, cut), TypeShapeResolver.Resolve<Reading>()));
            Assert.Equal(PeerLinkError.InvalidMessagePack, error.Error);
        }
    }

    [Fact]
    public void CorruptBytesNeverEscapeAsAnotherException()
    {
        byte[] bytes = Serializer.Serialize(new Reading("kitchen", 21.5, [9, 8, 7], DateTimeOffset.UnixEpoch));
        var random = new Random(1234);
        for (int i = 0; i < 5000; i++)
        {
            byte[] corrupt = (byte[])bytes.Clone();
            corrupt[random.Next(corrupt.Length)] = (byte)random.Next(256);
            try
            {
                TypedMessages.Deserialize(Serializer, corrupt, TypeShapeResolver.Resolve<Reading>());
            }
            catch (PeerLinkException e)
            {
                Assert.Equal(PeerLinkError.InvalidMessagePack, e.Error);
            }
        }
    }

    [Fact]
    public void SerializingASmallRecordAllocatesNothing()
    {
        var output = new ArrayBufferWriter<byte>(1024);
        var stamp = new Stamp(DateTimeOffset.UnixEpoch);
        for (int i = 0; i < 100; i++)
        {
            output.ResetWrittenCount();
            TypedMessages.Serialize(Serializer, output, stamp, TypeShapeResolver.Resolve<Stamp>());
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            output.ResetWrittenCount();
            TypedMessages.Serialize(Serializer, output, stamp, TypeShapeResolver.Resolve<Stamp>());
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public async Task PeersExchangeTypedMessagesWithTheirOwnSerializerAndForeignTypes()
    {
        MessagePackSerializer camel = Serializer with { PropertyNamingPolicy = MessagePackNamingPolicy.CamelCase };
        await using SessionPair pair = await SessionPair.OpenAsync(Alice, Bob, ik: true, o => o.Serializer = camel, o => o.Serializer = camel);

        var reading = new Reading("hall", 19.0, null, DateTimeOffset.UnixEpoch);
        await pair.Initiator.SendAsync(reading);
        await pair.Initiator.SendAsync(new Version(1, 2, 3), TypeShapeResolver.Resolve<Version, Witness>());
        await pair.Initiator.SendAsync(reading.Time, TypeShapeResolver.Resolve<DateTimeOffset, Witness>());

        PeerMessage first = (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(SessionPair.Limit))!.Value;
        Assert.Contains("sensor"u8.ToArray(), Split(first.Payload));      // camelCase on the wire
        Assert.Equal(reading, first.Deserialize<Reading>() with { Raw = null });
        PeerMessage second = (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(SessionPair.Limit))!.Value;
        Assert.Equal(new Version(1, 2, 3), second.Deserialize(TypeShapeResolver.Resolve<Version, Witness>()));
        PeerMessage third = (await pair.Responder.ReceiveAsync().AsTask().WaitAsync(SessionPair.Limit))!.Value;
        var wrong = Assert.Throws<PeerLinkException>(() => third.Deserialize<Reading>());
        Assert.Equal(PeerLinkError.InvalidMessagePack, wrong.Error);
    }

    private static List<byte[]> Split(ReadOnlyMemory<byte> payload)
    {
        // The strings of a flat map, to look for a key without depending on the library's key order.
        var keys = new List<byte[]>();
        ReadOnlySpan<byte> span = payload.Span;
        for (int i = 0; i < span.Length; i++)
        {
            if (span[i] is >= 0xA1 and <= 0xBF && i + 1 + (span[i] - 0xA0) <= span.Length)
            {
                keys.Add(span.Slice(i + 1, span[i] - 0xA0).ToArray());
            }
        }

        return keys;
    }

    private static Reading RoundTrip(Reading value)
    {
        var output = new ArrayBufferWriter<byte>();
        TypedMessages.Serialize(Serializer, output, value, TypeShapeResolver.Resolve<Reading>());
        return TypedMessages.Deserialize(Serializer, output.WrittenMemory, TypeShapeResolver.Resolve<Reading>());
    }

    [GenerateShape]
    internal sealed partial record Reading(string Sensor, double Value, int[]? Raw, DateTimeOffset Time);

    [GenerateShape]
    internal sealed partial record ReadingV2(string Sensor, double Value, int[]? Raw, DateTimeOffset Time, Dictionary<string, int> Extra);

    [GenerateShape]
    internal sealed partial record Stamp(DateTimeOffset Time);

    [GenerateShape]
    internal sealed partial record Node(int Value, Node? Next);

    [GenerateShapeFor<Version>]
    [GenerateShapeFor<DateTimeOffset>]
    [GenerateShapeFor<int>]
    [GenerateShapeFor<int?>]
    internal sealed partial class Witness;
}
