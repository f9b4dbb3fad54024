// STUN (RFC 8489 §5, §14, §18) and the NAT behaviour discovery attributes of RFC 5780 §7.
namespace PeerLink.Nat.Stun;

/// <summary>The class of a STUN message (RFC 8489 §5).</summary>
internal enum StunClass
{
    Request = 0,
    Indication = 1,
    SuccessResponse = 2,
    ErrorResponse = 3,
}

/// <summary>STUN methods (RFC 8489 §18.2). Only Binding is STUN proper; the others belong to TURN.</summary>
internal static class StunMethod
{
    public const ushort Binding = 0x001;
}

/// <summary>STUN attribute types (RFC 8489 §18.3, RFC 5780 §9.1, RFC 8445 for the ICE ones kept as opaque data).</summary>
internal static class StunAttributeType
{
    public const ushort MappedAddress = 0x0001;

    /// <summary>RFC 3489 §11.2.2, answered to classic clients only: the address the response was sent from.</summary>
    public const ushort SourceAddress = 0x0004;

    /// <summary>RFC 3489 §11.2.3, answered to classic clients only: the server's other address and port.</summary>
    public const ushort ChangedAddress = 0x0005;
    public const ushort ChangeRequest = 0x0003;
    public const ushort Username = 0x0006;
    public const ushort MessageIntegrity = 0x0008;
    public const ushort ErrorCode = 0x0009;
    public const ushort UnknownAttributes = 0x000A;
    public const ushort Realm = 0x0014;
    public const ushort Nonce = 0x0015;
    public const ushort MessageIntegritySha256 = 0x001C;
    public const ushort PasswordAlgorithm = 0x001D;
    public const ushort UserHash = 0x001E;
    public const ushort XorMappedAddress = 0x0020;
    public const ushort Padding = 0x0026;
    public const ushort ResponsePort = 0x0027;
    public const ushort PasswordAlgorithms = 0x8002;
    public const ushort AlternateDomain = 0x8003;
    public const ushort Software = 0x8022;
    public const ushort AlternateServer = 0x8023;
    public const ushort Fingerprint = 0x8028;
    public const ushort ResponseOrigin = 0x802B;
    public const ushort OtherAddress = 0x802C;

    /// <summary>Types below 0x8000 are comprehension-required: a receiver that does not know one must reject the message (§14).</summary>
    public static bool IsComprehensionRequired(ushort type) => type < 0x8000;

    /// <summary>The attributes PeerLink understands; an unknown comprehension-required one is reported, never silently accepted.</summary>
    public static bool IsKnown(ushort type) => type switch
    {
        MappedAddress or ChangeRequest or Username or MessageIntegrity or ErrorCode or UnknownAttributes or Realm or Nonce
            or MessageIntegritySha256 or PasswordAlgorithm or UserHash or XorMappedAddress or Padding or ResponsePort
            or PasswordAlgorithms or AlternateDomain or Software or AlternateServer or Fingerprint or ResponseOrigin or OtherAddress => true,
        _ => false,
    };
}

internal static class StunConstants
{
    public const uint MagicCookie = 0x2112A442;
    public const int HeaderSize = 20;
    public const int TransactionIdSize = 12;
    public const int AttributeHeaderSize = 4;

    /// <summary>XORed into FINGERPRINT's CRC-32 (§14.7): the ASCII of "STUN".</summary>
    public const uint FingerprintXor = 0x5354554E;

    /// <summary>PASSWORD-ALGORITHM values (§18.5).</summary>
    public const ushort PasswordAlgorithmMd5 = 0x0001;
    public const ushort PasswordAlgorithmSha256 = 0x0002;

    /// <summary>CHANGE-REQUEST flags (RFC 5780 §7.2).</summary>
    public const uint ChangeIp = 0x4;
    public const uint ChangePort = 0x2;
}
