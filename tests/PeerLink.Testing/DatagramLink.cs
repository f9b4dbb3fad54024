using System;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging.Abstractions;
using PeerLink.Security;
using PeerLink.Security.Noise;
using PeerLink.Transport.Datagrams;

namespace PeerLink.Testing;

/// <summary>
/// One direction of an in-memory datagram link with the impairments of a bad network: loss, duplication, and a delay
/// drawn per datagram from a range (which reorders). Delivery is always asynchronous, as on a real network.
/// </summary>
internal sealed class ImpairedDatagramLink : IDatagramSender
{
    private readonly Random _random;
    private readonly object _gate = new();
    private static readonly SocketAddress From = new IPEndPoint(IPAddress.Loopback, 1).Serialize();

    public ImpairedDatagramLink(int seed) => _random = new Random(seed);

    internal DatagramConnection? Target { get; set; }

    /// <summary>Probability that a datagram is dropped.</summary>
    public double Loss { get; set; }

    /// <summary>Probability that a datagram arrives twice.</summary>
    public double Duplication { get; set; }

    public TimeSpan MinDelay { get; set; }

    public TimeSpan MaxDelay { get; set; }

    /// <summary>Datagrams larger than this are dropped (a path MTU); no limit when 0.</summary>
    public int MaxDatagramSize { get; set; }

    /// <summary>When set, every datagram is dropped (the link is dead).</summary>
    public bool Dead { get; set; }

    public long Sent => Interlocked.Read(ref _sent);

    public long Dropped => Interlocked.Read(ref _dropped);

    private long _sent;
    private long _dropped;

    void IDatagramSender.Send(ReadOnlySpan<byte> datagram, SocketAddress remote)
    {
        Interlocked.Increment(ref _sent);
        int copies;
        TimeSpan delay;
        lock (_gate)
        {
            if (Dead || (MaxDatagramSize > 0 && datagram.Length > MaxDatagramSize) || _random.NextDouble() < Loss)
            {
                Interlocked.Increment(ref _dropped);
                return;
            }

            copies = _random.NextDouble() < Duplication ? 2 : 1;
            delay = MinDelay + ((MaxDelay - MinDelay) * _random.NextDouble());
        }

        byte[] copy = datagram.ToArray();
        for (int i = 0; i < copies; i++)
        {
            if (delay <= TimeSpan.Zero)
            {
                ThreadPool.UnsafeQueueUserWorkItem(static s => s.Link.Deliver(s.Copy), (Link: this, Copy: copy), preferLocal: false);
            }
            else
            {
                _ = DeliverLaterAsync(copy, delay);
            }
        }
    }

    private async Task DeliverLaterAsync(byte[] datagram, TimeSpan delay)
    {
        await Task.Delay(delay).ConfigureAwait(false);   // the link's own latency, not synchronisation
        Deliver(datagram);
    }

    private void Deliver(byte[] datagram) => Target?.OnDatagram(datagram, From);

    /// <summary>Two connections joined by two impaired links (a→b and b→a), started.</summary>
    internal static (DatagramConnection A, DatagramConnection B, ImpairedDatagramLink AtoB, ImpairedDatagramLink BtoA) Pair(
        DatagramConnectionSettings settings, int seed = 1, Action<ImpairedDatagramLink>? impair = null)
    {
        byte[] k1 = RandomNumberGenerator.GetBytes(32);
        byte[] k2 = RandomNumberGenerator.GetBytes(32);
        var toB = new ImpairedDatagramLink(seed);
        var toA = new ImpairedDatagramLink(seed + 1);
        impair?.Invoke(toB);
        impair?.Invoke(toA);
        var a = new DatagramConnection(Keys(k1, k2, settings.Time), 1, 2, From, toB, settings, "mem-a", null, NullLogger.Instance, _ => { });
        var b = new DatagramConnection(Keys(k2, k1, settings.Time), 2, 1, From, toA, settings, "mem-b", null, NullLogger.Instance, _ => { });
        toB.Target = b;
        toA.Target = a;
        a.Start();
        b.Start();
        return (a, b, toB, toA);
    }

    internal static DatagramKeys Keys(byte[] send, byte[] receive, TimeProvider time, ulong rekeyAfter = ulong.MaxValue) =>
        new(State(send), State(receive), time, TimeSpan.FromHours(1), rekeyAfter, TimeSpan.FromSeconds(10));

    private static NoiseCipherState State(byte[] key)
    {
        var state = new NoiseCipherState(NoiseCipherKind.ChaChaPoly);
        state.InitializeKey(key);
        return state;
    }
}
