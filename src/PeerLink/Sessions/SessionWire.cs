// The PeerLink session wire format (docs/protocol.md): preamble, u16be-length Noise messages, and inside each transport
// message one or more records `type:u8 flags:u8 length:u16be body`.
using System;
using System.Threading;
using PeerLink.Security.Noise;

namespace PeerLink.Sessions;

internal static class SessionWire
{
    public const byte Version = 1;
    public const int PreambleSize = 6;
    public const int RecordHeaderSize = 4;

    /// <summary>Largest plaintext of one transport message.</summary>
    public const int MaxPlaintext = NoiseCipherState.MaxPlaintextLength;

    /// <summary>Room kept free in every batch for a trailing REKEY record.</summary>
    public const int BatchCapacity = MaxPlaintext - RecordHeaderSize;

    // Record types. Types with the high bit set may be ignored by a receiver that does not know them.
    public const byte Data = 0x01;
    public const byte Ping = 0x02;
    public const byte Pong = 0x03;
    public const byte Close = 0x04;
    public const byte Accept = 0x05;
    public const byte Rekey = 0x06;
    public const byte IgnorableBit = 0x80;

    /// <summary>Path signalling between the two ends (candidates, punch timing: docs/nat-traversal.md); ignorable, so a peer without it stays on its path.</summary>
    public const byte PathSignal = 0x81;
    public const int MaxPathSignal = 2048;

    // DATA flags.
    public const byte More = 0x01;       // the message continues in the next DATA record
    public const byte Request = 0x02;    // the first fragment starts with a u32be request id
    public const byte Response = 0x04;   // the first fragment starts with the u32be id of the request it answers

    public static ReadOnlySpan<byte> Magic => "PLNK"u8;

    /// <summary>The pattern byte of the preamble: 1 XX, 2 IK, 3 XXpsk3, 4 IKpsk2; plus 0x10 for AES-GCM instead of ChaChaPoly.</summary>
    /// <summary>
    /// Whether this machine has AES instructions, so that AES-256-GCM costs less than ChaCha20-Poly1305 (measured 12 %
    /// faster for 16 KiB messages on x64, docs/benchmarks.md). Announced in the hello as feature "aes-hw".
    /// </summary>
    public static readonly bool HasAesHardware = System.Security.Cryptography.AesGcm.IsSupported
        && (System.Runtime.Intrinsics.X86.Aes.IsSupported || System.Runtime.Intrinsics.Arm.Aes.IsSupported);

    public static byte PatternByte(bool ik, bool psk, bool aesGcm) => (byte)((ik ? 2 : 1) + (psk ? 2 : 0) + (aesGcm ? 0x10 : 0));

    public static bool TryParsePattern(byte value, out bool ik, out bool psk, out bool aesGcm)
    {
        int pattern = value & 0x0F;
        aesGcm = (value & 0x10) != 0;
        ik = pattern is 2 or 4;
        psk = pattern is 3 or 4;
        return pattern is >= 1 and <= 4 && (value & 0xE0) == 0;
    }

    // The eight protocols a session can use, parsed once: a NoiseProtocol is immutable, and every live session holds
    // one (a parsed pattern and its names are about 400 bytes that an idle session would otherwise carry).
    private static readonly NoiseProtocol?[] s_protocols = new NoiseProtocol?[8];

    public static NoiseProtocol Protocol(bool ik, bool psk, bool aesGcm)
    {
        int index = (ik ? 1 : 0) | (psk ? 2 : 0) | (aesGcm ? 4 : 0);
        NoiseProtocol? protocol = Volatile.Read(ref s_protocols[index]);
        if (protocol is null)
        {
            protocol = NoiseProtocol.Parse($"Noise_{(ik ? "IK" : "XX")}{(psk ? (ik ? "psk2" : "psk3") : "")}_25519_{(aesGcm ? "AESGCM" : "ChaChaPoly")}_SHA256");
            Volatile.Write(ref s_protocols[index], protocol);   // a race parses twice; either result is the same
        }

        return protocol;
    }
}

/// <summary>Why a session ended, as carried by a CLOSE record.</summary>
public enum SessionCloseCode : byte
{
    /// <summary>An orderly close by the application.</summary>
    Normal = 0,

    /// <summary>The peer was not authorized, or it runs another application or network key.</summary>
    Refused = 1,

    /// <summary>The peer broke the protocol.</summary>
    ProtocolViolation = 2,

    /// <summary>A message exceeded the receiver's maximum size.</summary>
    MessageTooLarge = 3,

    /// <summary>The node is shutting down.</summary>
    Shutdown = 4,

    /// <summary>The peer stopped answering.</summary>
    Timeout = 5,

    /// <summary>A newer session of the same peer replaced this one (a rendezvous attachment from a device that moved).</summary>
    Replaced = 6,
}
