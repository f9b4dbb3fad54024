// CRC-32 as used by STUN's FINGERPRINT (RFC 8489 §14.7, which refers to ITU V.42 / ISO 3309: the CRC of zlib and
// Ethernet): reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF.
using System;

namespace PeerLink.Nat.Stun;

internal static class Crc32
{
    private static readonly uint[] s_table = CreateTable();

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc = s_table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return ~crc;
    }

    private static uint[] CreateTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            }

            table[i] = c;
        }

        return table;
    }
}
