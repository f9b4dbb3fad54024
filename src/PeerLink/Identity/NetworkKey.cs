using System;
using System.Security.Cryptography;

namespace PeerLink;

/// <summary>
/// A 32-byte secret shared by all devices of one installation (the Noise pre-shared key of XXpsk3 and IKpsk2). Devices
/// without it cannot complete a handshake with devices that have it.
/// </summary>
/// <remarks>
/// The key lives in a pinned array that <see cref="Dispose"/> erases; it never appears in <see cref="ToString"/>, logs or
/// exception messages. Options that use it borrow it: dispose it after the sessions and nodes that use it. Each handshake
/// copies it into its own pinned state and erases that copy when the handshake ends. Thread-safe for reading.
/// </remarks>
public sealed class NetworkKey : IDisposable
{
    /// <summary>The size of a network key in bytes.</summary>
    public const int Size = 32;

    private readonly byte[] _key = GC.AllocateArray<byte>(Size, pinned: true);
    private volatile bool _disposed;

    /// <summary>Creates a network key from its 32 bytes (for example read from a secret store); erase your copy.</summary>
    /// <param name="key">The key.</param>
    /// <exception cref="ArgumentException"><paramref name="key"/> is not 32 bytes.</exception>
    public NetworkKey(ReadOnlySpan<byte> key)
    {
        if (key.Length != Size)
        {
            throw new ArgumentException($"A network key is {Size} bytes; got {key.Length}.", nameof(key));
        }

        key.CopyTo(_key);
    }

    private NetworkKey()
    {
    }

    /// <summary>Generates a new network key from the system's cryptographic random number generator.</summary>
    public static NetworkKey Generate()
    {
        var key = new NetworkKey();
        RandomNumberGenerator.Fill(key._key);
        return key;
    }

    /// <summary>Copies the key out, to store it where the other devices of the installation can get it.</summary>
    /// <param name="destination">At least 32 bytes; erase it when done.</param>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than 32 bytes.</exception>
    /// <exception cref="ObjectDisposedException">The key was disposed.</exception>
    public void CopyTo(Span<byte> destination)
    {
        if (destination.Length < Size)
        {
            throw new ArgumentException($"The destination must hold {Size} bytes.", nameof(destination));
        }

        Bytes.CopyTo(destination);
    }

    /// <summary>The key for a handshake, which copies it. Throws <see cref="ObjectDisposedException"/> once disposed.</summary>
    internal byte[] Bytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _key;
        }
    }

    /// <summary>Erases the key from memory.</summary>
    public void Dispose()
    {
        _disposed = true;
        CryptographicOperations.ZeroMemory(_key);
    }

    /// <summary>Names the type only; never the key.</summary>
    public override string ToString() => "NetworkKey (hidden)";
}
