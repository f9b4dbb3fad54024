// The server side of the long-term credential mechanism (RFC 8489 §9.2): a stateless NONCE that carries the RFC 8489
// nonce cookie, PASSWORD-ALGORITHMS (MD5 and SHA-256), USERHASH, and the checks of §9.2.4 in their order.
using System;
using System.Buffers.Binary;
using System.Buffers.Text;
using System.Collections.Generic;
using System.Net;
using System.Security.Cryptography;

namespace PeerLink.Nat.Stun;

/// <summary>What a request's credentials came to: its answer is either an error or a success protected with this key.</summary>
internal readonly record struct StunAuthOutcome(int ErrorCode, string? Reason, bool Challenge, byte[]? Key, bool Sha256)
{
    public static StunAuthOutcome Error(int code, string reason, bool challenge = false) => new(code, reason, challenge, null, false);

    public static StunAuthOutcome Success(byte[] key, bool sha256) => new(0, null, false, key, sha256);
}

internal sealed class StunLongTermAuth
{
    /// <summary>RFC 8489 §9.2: every nonce of a server that supports the new security features starts with this.</summary>
    public const string NonceCookie = "obMatJos2";

    // The 24-bit security feature set, base64 in four characters: bit 0 "password algorithms", bit 1 "username anonymity".
    private const string FeatureSet = "wAAA";   // 0xC0 0x00 0x00

    private static readonly ushort[] Algorithms = [StunConstants.PasswordAlgorithmSha256, StunConstants.PasswordAlgorithmMd5];

    private readonly string _username;
    private readonly byte[] _md5Key;
    private readonly byte[] _sha256Key;
    private readonly byte[] _userHash;
    private readonly byte[] _secret = RandomNumberGenerator.GetBytes(32);
    private readonly TimeSpan _lifetime;
    private readonly TimeProvider _time;

    public StunLongTermAuth(string realm, string username, string password, TimeSpan nonceLifetime, TimeProvider time)
    {
        Realm = realm;
        _username = username;
        _md5Key = StunCredentials.LongTermKey(username, realm, password, StunConstants.PasswordAlgorithmMd5);
        _sha256Key = StunCredentials.LongTermKey(username, realm, password, StunConstants.PasswordAlgorithmSha256);
        _userHash = StunCredentials.UserHash(username, realm);
        _lifetime = nonceLifetime;
        _time = time;
    }

    public string Realm { get; }

    /// <summary>The attributes of a 401 or 438: REALM, a fresh NONCE for this client, and PASSWORD-ALGORITHMS.</summary>
    public void AddChallenge(StunMessageBuilder response, IPAddress client)
    {
        response.AddString(StunAttributeType.Realm, Realm)
            .AddString(StunAttributeType.Nonce, MintNonce(client))
            .AddPasswordAlgorithms(Algorithms);
    }

    /// <summary>The checks of RFC 8489 §9.2.4, in its order.</summary>
    public StunAuthOutcome Check(StunMessage request, IPAddress client)
    {
        bool sha256 = request.Has(StunAttributeType.MessageIntegritySha256);
        if (!sha256 && !request.Has(StunAttributeType.MessageIntegrity))
        {
            return StunAuthOutcome.Error(401, "Unauthenticated", challenge: true);
        }

        bool hasUser = request.Has(StunAttributeType.Username) || request.Has(StunAttributeType.UserHash);
        if (!hasUser || request.GetRealm() is not { } realm || request.GetNonce() is not { } nonce)
        {
            return StunAuthOutcome.Error(400, "Bad Request: USERNAME or USERHASH, REALM and NONCE are required");
        }

        if (!IsValidNonce(nonce, client))
        {
            return StunAuthOutcome.Error(438, "Stale Nonce", challenge: true);
        }

        // The nonce is ours, so it announced the password algorithms: both attributes, consistent, or neither (MD5).
        ushort algorithm = StunConstants.PasswordAlgorithmMd5;
        IReadOnlyList<ushort> offered = request.GetPasswordAlgorithms();
        ushort? chosen = request.GetPasswordAlgorithm();
        if (offered.Count > 0 || chosen is not null || request.Has(StunAttributeType.PasswordAlgorithms))
        {
            if (chosen is not { } c || !SameList(offered, Algorithms) || Array.IndexOf(Algorithms, c) < 0)
            {
                return StunAuthOutcome.Error(400, "Bad Request: PASSWORD-ALGORITHMS does not match the server's, or PASSWORD-ALGORITHM is missing");
            }

            algorithm = c;
        }

        if (!IsOurUser(request) || realm != Realm)
        {
            return StunAuthOutcome.Error(401, "Unauthenticated", challenge: true);
        }

        byte[] key = algorithm == StunConstants.PasswordAlgorithmSha256 ? _sha256Key : _md5Key;
        bool valid = sha256 ? request.VerifyMessageIntegritySha256(key) : request.VerifyMessageIntegrity(key);
        return valid ? StunAuthOutcome.Success(key, sha256) : StunAuthOutcome.Error(401, "Unauthenticated", challenge: true);
    }

    private bool IsOurUser(StunMessage request)
    {
        if (request.TryGetValue(StunAttributeType.UserHash, out ReadOnlySpan<byte> hash))
        {
            return CryptographicOperations.FixedTimeEquals(hash, _userHash);
        }

        return request.GetUsername() == _username;
    }

    private static bool SameList(IReadOnlyList<ushort> a, ushort[] b)
    {
        if (a.Count != b.Length)
        {
            return false;
        }

        for (int i = 0; i < b.Length; i++)
        {
            if (a[i] != b[i])
            {
                return false;
            }
        }

        return true;
    }

    // NONCE = cookie, feature set, then base64url(expiry in Unix seconds, 8 bytes | HMAC-SHA256(secret, expiry | client address)[..16]).
    // Stateless: any nonce this server minted for this client address verifies until it expires, and none can be forged.
    private string MintNonce(IPAddress client)
    {
        Span<byte> body = stackalloc byte[24];
        long expiry = (_time.GetUtcNow() + _lifetime).ToUnixTimeSeconds();
        BinaryPrimitives.WriteInt64BigEndian(body, expiry);
        Mac(expiry, client, body[8..]);
        return NonceCookie + FeatureSet + Base64Url.EncodeToString(body);
    }

    private bool IsValidNonce(string nonce, IPAddress client)
    {
        int prefix = NonceCookie.Length + FeatureSet.Length;
        if (nonce.Length != prefix + 32 || !nonce.StartsWith(NonceCookie + FeatureSet, StringComparison.Ordinal))
        {
            return false;
        }

        Span<byte> body = stackalloc byte[24];
        if (!Base64Url.TryDecodeFromChars(nonce.AsSpan(prefix), body, out int written) || written != body.Length)
        {
            return false;
        }

        long expiry = BinaryPrimitives.ReadInt64BigEndian(body);
        Span<byte> expected = stackalloc byte[16];
        Mac(expiry, client, expected);
        return CryptographicOperations.FixedTimeEquals(expected, body[8..]) && _time.GetUtcNow().ToUnixTimeSeconds() < expiry;
    }

    private void Mac(long expiry, IPAddress client, Span<byte> destination)
    {
        IPAddress address = client.IsIPv4MappedToIPv6 ? client.MapToIPv4() : client;
        Span<byte> input = stackalloc byte[8 + 16];
        BinaryPrimitives.WriteInt64BigEndian(input, expiry);
        address.TryWriteBytes(input[8..], out int length);
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(_secret, input[..(8 + length)], mac);
        mac[..destination.Length].CopyTo(destination);
    }

    /// <summary>Whether a NONCE comes from an RFC 8489 server (which then understands MESSAGE-INTEGRITY-SHA256).</summary>
    public static bool HasNonceCookie(string nonce) => nonce.StartsWith(NonceCookie, StringComparison.Ordinal);

    /// <summary>Whether a NONCE starts with the nonce cookie and announces the password-algorithms feature (bit 0).</summary>
    public static bool AnnouncesPasswordAlgorithms(string nonce)
    {
        Span<byte> features = stackalloc byte[3];
        return nonce.Length >= NonceCookie.Length + 4 && nonce.StartsWith(NonceCookie, StringComparison.Ordinal)
            && Convert.TryFromBase64Chars(nonce.AsSpan(NonceCookie.Length, 4), features, out int written) && written == 3
            && (features[0] & 0x80) != 0;
    }
}
