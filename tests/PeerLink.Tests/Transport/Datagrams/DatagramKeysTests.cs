using System;
using System.Collections.Generic;
using System.Security.Cryptography;
using Microsoft.Extensions.Time.Testing;
using PeerLink.Security;
using PeerLink.Security.Noise;
using PeerLink.Transport.Datagrams;
using Xunit;

namespace PeerLink.Tests.Transport.Datagrams;

/// <summary>Sealed datagrams: the counter as nonce, the replay window, tampering, and key updates without a pause.</summary>
public sealed class DatagramKeysTests
{
    private static (DatagramKeys Sender, DatagramKeys Receiver) Pair(TimeProvider time, ulong rekeyAfter = ulong.MaxValue, TimeSpan? interval = null)
    {
        byte[] k1 = RandomNumberGenerator.GetBytes(32);
        byte[] k2 = RandomNumberGenerator.GetBytes(32);
        TimeSpan every = interval ?? TimeSpan.FromHours(1);
        var sender = new DatagramKeys(State(k1), State(k2), time, every, rekeyAfter, TimeSpan.FromSeconds(10));
        var receiver = new DatagramKeys(State(k2), State(k1), time, every, rekeyAfter, TimeSpan.FromSeconds(10));
        return (sender, receiver);
    }

    private static NoiseCipherState State(byte[] key)
    {
        var state = new NoiseCipherState(NoiseCipherKind.ChaChaPoly);
        state.InitializeKey(key);
        return state;
    }

    private static byte[] Seal(DatagramKeys keys, int i)
    {
        var buffer = new byte[DatagramWire.MaxDatagramSize];
        int length = keys.Seal(buffer, 0xA1B2C3D4, BitConverter.GetBytes(i), out _);
        return buffer.AsSpan(0, length).ToArray();
    }

    private static bool Open(DatagramKeys keys, byte[] datagram, out int value)
    {
        var plaintext = new byte[DatagramWire.MaxDatagramSize];
        bool ok = keys.TryOpen(datagram, plaintext, out _, out int length);
        value = ok && length == 4 ? BitConverter.ToInt32(plaintext) : -1;
        return ok;
    }

    [Fact]
    public void DatagramsOpenOnceAndTheHeaderIsAuthenticated()
    {
        (DatagramKeys a, DatagramKeys b) = Pair(TimeProvider.System);
        byte[] datagram = Seal(a, 42);
        Assert.Equal(DatagramWire.Transport, datagram[0]);
        Assert.Equal(DatagramWire.TransportHeaderSize + 4 + DatagramWire.TagSize, datagram.Length);
        Assert.True(Open(b, datagram, out int value));
        Assert.Equal(42, value);
        Assert.False(Open(b, datagram, out _));        // replayed

        byte[] next = Seal(a, 43);
        for (int i = 0; i < next.Length; i++)
        {
            byte[] tampered = (byte[])next.Clone();
            tampered[i] ^= 0x40;
            Assert.False(Open(b, tampered, out _));    // header, ciphertext and tag are all covered
        }

        Assert.False(Open(b, next[..(DatagramWire.TransportHeaderSize + DatagramWire.TagSize - 1)], out _));   // truncated
        Assert.False(Open(b, [], out _));
        Assert.True(Open(b, next, out value));        // the forgeries did not burn the counter
        Assert.Equal(43, value);
    }

    [Fact]
    public void ReorderedDatagramsOpenAcrossKeyUpdates()
    {
        (DatagramKeys a, DatagramKeys b) = Pair(TimeProvider.System, rekeyAfter: 100);
        var datagrams = new List<byte[]>();
        for (int i = 0; i < 1000; i++)
        {
            datagrams.Add(Seal(a, i));
        }

        // Swap neighbours across every key change (datagram 100 is the first of phase 1, and so on).
        for (int i = 99; i < 1000; i += 100)
        {
            (datagrams[i], datagrams[i + 1 < 1000 ? i + 1 : i]) = (datagrams[i + 1 < 1000 ? i + 1 : i], datagrams[i]);
        }

        var seen = new HashSet<int>();
        foreach (byte[] datagram in datagrams)
        {
            Assert.True(Open(b, datagram, out int value));
            Assert.True(seen.Add(value));
        }

        Assert.Equal(1000, seen.Count);
        Assert.Equal(9, a.SendUpdates);
        Assert.Equal(9, b.ReceiveUpdates);
    }

    [Fact]
    public void TheKeyChangesWithTimeAndThePreviousKeyLastsOnlyTheGracePeriod()
    {
        var time = new FakeTimeProvider();
        (DatagramKeys a, DatagramKeys b) = Pair(time, interval: TimeSpan.FromMinutes(2));
        byte[] old = Seal(a, 1);
        byte[] late = Seal(a, 2);
        time.Advance(TimeSpan.FromMinutes(2));
        byte[] fresh = Seal(a, 3);
        Assert.Equal(1, a.SendUpdates);
        Assert.NotEqual(old[1], fresh[1]);   // the key phase bit flipped

        Assert.True(Open(b, old, out _));
        Assert.True(Open(b, fresh, out _));
        Assert.Equal(1, b.ReceiveUpdates);
        time.Advance(TimeSpan.FromSeconds(11));
        Assert.False(Open(b, late, out _));   // the previous key is gone after the grace period
    }

    [Fact]
    public void ADatagramFromAnotherKeyDoesNotMoveTheReceiverToTheNextPhase()
    {
        (DatagramKeys a, DatagramKeys b) = Pair(TimeProvider.System);
        (DatagramKeys stranger, _) = Pair(TimeProvider.System, rekeyAfter: 1);
        Seal(stranger, 0);
        byte[] forged = Seal(stranger, 1);       // phase 1, wrong key
        Assert.False(Open(b, forged, out _));
        Assert.Equal(0, b.ReceiveUpdates);
        Assert.True(Open(b, Seal(a, 5), out int value));
        Assert.Equal(5, value);
    }
}
