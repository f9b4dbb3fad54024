// Denial-of-service defence for handshakes over UDP (docs/protocol.md §11.3), after WireGuard's cookie reply
// (whitepaper §5.4.7), with HMAC-SHA256 and ChaCha20-Poly1305 from the base class library in place of BLAKE2s and
// XChaCha20-Poly1305:
// - mac1 = HMAC-SHA256(SHA-256("mac1----" || K), message up to mac1)[..16], where K is the responder's static public key
//   (IK), else the network key (XXpsk3), else a constant. A responder drops an initiation whose mac1 is wrong before any
//   Diffie-Hellman, so a sender that does not even know whom it talks to costs one HMAC.
// - Under load, an initiation also needs mac2 = HMAC-SHA256(cookie, message up to mac2)[..16], where the cookie is
//   HMAC-SHA256(secret, source address)[..16] with a secret that changes every two minutes. Without it the responder
//   answers with a cookie reply and spends no Diffie-Hellman: a flood from spoofed addresses never sees its cookies.
// - The cookie travels sealed with ChaCha20-Poly1305 under SHA-256("cookie--" || K), a random nonce, and the
//   initiation's mac1 as associated data, so a third party cannot plant cookies on an initiator.
using System;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Threading;

namespace PeerLink.Transport.Datagrams;

/// <summary>The mac1 and cookie keys for one responder key (see the file header).</summary>
internal sealed class HandshakeMacKeys
{
    private static ReadOnlySpan<byte> NoKey => "PeerLink datagram handshake v1"u8;

    private HandshakeMacKeys(byte[] mac1Key, byte[] cookieKey)
    {
        Mac1Key = mac1Key;
        CookieKey = cookieKey;
    }

    public byte[] Mac1Key { get; }

    public byte[] CookieKey { get; }

    /// <summary>Keys from <paramref name="material"/>: the responder's static public key, or the network key, or empty.</summary>
    public static HandshakeMacKeys From(ReadOnlySpan<byte> material)
    {
        ReadOnlySpan<byte> k = material.IsEmpty ? NoKey : material;
        return new HandshakeMacKeys(Derive("mac1----"u8, k), Derive("cookie--"u8, k));
    }

    private static byte[] Derive(ReadOnlySpan<byte> label, ReadOnlySpan<byte> material)
    {
        Span<byte> input = stackalloc byte[label.Length + material.Length];
        label.CopyTo(input);
        material.CopyTo(input[label.Length..]);
        return SHA256.HashData(input);
    }

    /// <summary>Writes the 16-byte MAC of <paramref name="data"/> under <paramref name="key"/>.</summary>
    public static void Mac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, Span<byte> destination)
    {
        Span<byte> full = stackalloc byte[32];
        HMACSHA256.HashData(key, data, full);
        full[..DatagramWire.MacSize].CopyTo(destination);
    }

    public static bool VerifyMac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, ReadOnlySpan<byte> mac)
    {
        Span<byte> expected = stackalloc byte[DatagramWire.MacSize];
        Mac(key, data, expected);
        return CryptographicOperations.FixedTimeEquals(expected, mac);
    }

    /// <summary>Opens a cookie reply addressed to an initiation whose mac1 was <paramref name="mac1"/>; false when it does not authenticate.</summary>
    public bool TryOpenCookie(ReadOnlySpan<byte> reply, ReadOnlySpan<byte> mac1, Span<byte> cookie)
    {
        if (reply.Length != DatagramWire.CookieReplySize || reply[0] != DatagramWire.CookieReply)
        {
            return false;
        }

        ReadOnlySpan<byte> nonce = reply.Slice(8, DatagramWire.CookieNonceSize);
        ReadOnlySpan<byte> sealedCookie = reply.Slice(8 + DatagramWire.CookieNonceSize, DatagramWire.CookieSize);
        ReadOnlySpan<byte> tag = reply[^DatagramWire.TagSize..];
        try
        {
            using var aead = new ChaCha20Poly1305(CookieKey);
            aead.Decrypt(nonce, sealedCookie, tag, cookie[..DatagramWire.CookieSize], mac1);
            return true;
        }
        catch (AuthenticationTagMismatchException)
        {
            return false;
        }
    }
}

/// <summary>
/// A responder's side of the cookie mechanism: whether it is under load (a token bucket of handshakes per second), the
/// rotating secret, cookie replies and mac2 checks. Thread-safe.
/// </summary>
internal sealed class CookieChecker
{
    private readonly TimeProvider _time;
    private readonly double _ratePerSecond;
    private readonly object _gate = new();
    private readonly byte[] _secret = new byte[32];
    private readonly byte[] _previousSecret = new byte[32];
    private long _secretAt;
    private double _tokens;
    private long _refilledAt;

    /// <summary>How long a secret lasts, and so a cookie (WireGuard: two minutes).</summary>
    public static readonly TimeSpan SecretLifetime = TimeSpan.FromMinutes(2);

    public CookieChecker(TimeProvider time, int handshakesPerSecond)
    {
        _time = time;
        _ratePerSecond = handshakesPerSecond;
        _tokens = handshakesPerSecond;
        _refilledAt = _secretAt = time.GetTimestamp();
        RandomNumberGenerator.Fill(_secret);
        RandomNumberGenerator.Fill(_previousSecret);
    }

    /// <summary>Cookie replies sent (for tests and diagnostics).</summary>
    public long CookieRepliesSent => Interlocked.Read(ref _cookieReplies);

    private long _cookieReplies;

    /// <summary>
    /// Takes a handshake from the budget: false when the responder is under load (more initiations than the rate allows),
    /// and initiations must then prove their address with a cookie.
    /// </summary>
    public bool TryTakeUnverified()
    {
        lock (_gate)
        {
            long now = _time.GetTimestamp();
            _tokens = Math.Min(_ratePerSecond, _tokens + (_time.GetElapsedTime(_refilledAt, now).TotalSeconds * _ratePerSecond));
            _refilledAt = now;
            if (_tokens >= 1)
            {
                _tokens -= 1;
                return true;
            }

            return false;
        }
    }

    /// <summary>True when <paramref name="mac2"/> is the MAC of <paramref name="data"/> under the cookie of <paramref name="source"/> (this secret or the previous one).</summary>
    public bool VerifyMac2(ReadOnlySpan<byte> source, ReadOnlySpan<byte> data, ReadOnlySpan<byte> mac2)
    {
        Span<byte> cookie = stackalloc byte[DatagramWire.CookieSize];
        lock (_gate)
        {
            Rotate();
            MakeCookie(_secret, source, cookie);
            if (HandshakeMacKeys.VerifyMac(cookie, data, mac2))
            {
                return true;
            }

            MakeCookie(_previousSecret, source, cookie);
        }

        return HandshakeMacKeys.VerifyMac(cookie, data, mac2);
    }

    /// <summary>Writes a cookie reply to an initiation (sender index, mac1) from <paramref name="source"/>; returns its length.</summary>
    public int WriteCookieReply(Span<byte> destination, HandshakeMacKeys keys, uint initiatorIndex, ReadOnlySpan<byte> mac1, ReadOnlySpan<byte> source)
    {
        Span<byte> cookie = stackalloc byte[DatagramWire.CookieSize];
        lock (_gate)
        {
            Rotate();
            MakeCookie(_secret, source, cookie);
        }

        destination[0] = DatagramWire.CookieReply;
        destination[1..4].Clear();
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], initiatorIndex);
        Span<byte> nonce = destination.Slice(8, DatagramWire.CookieNonceSize);
        RandomNumberGenerator.Fill(nonce);
        using (var aead = new ChaCha20Poly1305(keys.CookieKey))
        {
            aead.Encrypt(nonce, cookie, destination.Slice(8 + DatagramWire.CookieNonceSize, DatagramWire.CookieSize),
                destination.Slice(8 + DatagramWire.CookieNonceSize + DatagramWire.CookieSize, DatagramWire.TagSize), mac1);
        }

        Interlocked.Increment(ref _cookieReplies);
        return DatagramWire.CookieReplySize;
    }

    private void Rotate()
    {
        if (_time.GetElapsedTime(_secretAt) >= SecretLifetime)
        {
            _secret.CopyTo(_previousSecret, 0);
            RandomNumberGenerator.Fill(_secret);
            _secretAt = _time.GetTimestamp();
        }
    }

    private static void MakeCookie(ReadOnlySpan<byte> secret, ReadOnlySpan<byte> source, Span<byte> cookie) =>
        HandshakeMacKeys.Mac(secret, source, cookie);
}
