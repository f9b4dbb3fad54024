using System;
using System.IO;
using System.Security.Cryptography;
using PeerLink.Security.Noise;

namespace PeerLink;

/// <summary>
/// This device's identity: a static X25519 key pair. Its public half is the <see cref="PeerId"/> others know it by.
/// </summary>
/// <remarks>
/// <para>The private key stays inside: it leaves only through <see cref="Save"/> (to a file only its owner can read) or an
/// explicit <see cref="ExportPrivateKey"/>. It never appears in <see cref="ToString"/>, logs or exception messages, and
/// <see cref="Dispose"/> erases it from memory.</para>
/// <para>The file holds 72 bytes: "PLID", format version 1, key type 1 (X25519), two reserved zero bytes, the private key,
/// and the public key (checked on load). Thread-safe for reading.</para>
/// </remarks>
public sealed class PeerIdentity : IDisposable
{
    /// <summary>The size of an identity file.</summary>
    public const int FileSize = 72;

    private static ReadOnlySpan<byte> Magic => "PLID"u8;

    private const byte FormatVersion = 1;
    private const byte KeyTypeX25519 = 1;
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    private readonly NoiseKeyPair _keyPair;

    private PeerIdentity(NoiseKeyPair keyPair)
    {
        _keyPair = keyPair;
        PeerId = new PeerId(keyPair.PublicKey);
    }

    /// <summary>The public identity.</summary>
    public PeerId PeerId { get; }

    /// <summary>
    /// The key pair as the Noise core takes it (<see cref="NoiseHandshakeState"/>'s static key). It belongs to this identity:
    /// do not dispose it, and keep the identity alive while a handshake uses it.
    /// </summary>
    public NoiseKeyPair KeyPair => _keyPair;

    /// <summary>Generates a new identity from the system's cryptographic random number generator.</summary>
    public static PeerIdentity Generate() => new(NoiseKeyPair.Generate(exportable: true));

    /// <summary>Creates an identity from a 32-byte X25519 private key.</summary>
    /// <param name="privateKey">The private key; the caller should erase its copy.</param>
    /// <exception cref="ArgumentException"><paramref name="privateKey"/> is not 32 bytes.</exception>
    public static PeerIdentity FromPrivateKey(ReadOnlySpan<byte> privateKey)
    {
        if (privateKey.Length != NoiseKeyPair.KeySize)
        {
            throw new ArgumentException($"An X25519 private key is {NoiseKeyPair.KeySize} bytes; got {privateKey.Length}.", nameof(privateKey));
        }

        return new(NoiseKeyPair.Import(privateKey));
    }

    /// <summary>Loads an identity saved with <see cref="Save"/>.</summary>
    /// <param name="path">The file.</param>
    /// <exception cref="ArgumentException"><paramref name="path"/> is null or empty.</exception>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="PeerLinkException">
    /// <see cref="PeerLinkError.InsecureIdentityFile"/>: on Unix, the file can be read or written by its group or others.
    /// <see cref="PeerLinkError.InvalidIdentityFile"/>: the file has the wrong size or format, or its keys do not match.
    /// </exception>
    public static PeerIdentity Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!OperatingSystem.IsWindows())
        {
            UnixFileMode mode = File.GetUnixFileMode(path);
            if ((mode & GroupOrOther) != 0)
            {
                throw new PeerLinkException(
                    PeerLinkError.InsecureIdentityFile,
                    $"The identity file '{path}' has permissions {Convert.ToString((int)mode, 8)}, which let other users read or change it. Make it readable by its owner only (chmod 600).");
            }
        }

        byte[] data = GC.AllocateArray<byte>(FileSize + 1, pinned: true);
        try
        {
            int length;
            using (FileStream stream = File.OpenRead(path))
            {
                length = stream.ReadAtLeast(data, data.Length, throwOnEndOfStream: false);
            }

            if (length != FileSize)
            {
                throw Invalid(path, length > FileSize ? $"it is larger than {FileSize} bytes" : $"it is {length} bytes, not {FileSize}");
            }

            ReadOnlySpan<byte> file = data.AsSpan(0, FileSize);
            if (!file[..4].SequenceEqual(Magic))
            {
                throw Invalid(path, "it does not start with the PLID signature");
            }

            if (file[4] != FormatVersion || file[5] != KeyTypeX25519 || file[6] != 0 || file[7] != 0)
            {
                throw Invalid(path, $"format version {file[4]}, key type {file[5]} is not supported (expected version {FormatVersion}, key type {KeyTypeX25519})");
            }

            NoiseKeyPair keyPair = NoiseKeyPair.Import(file.Slice(8, 32));
            if (!CryptographicOperations.FixedTimeEquals(keyPair.PublicKey, file.Slice(40, 32)))
            {
                keyPair.Dispose();
                throw Invalid(path, "its public key does not belong to its private key (the file is corrupt)");
            }

            return new PeerIdentity(keyPair);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(data);
        }
    }

    /// <summary>Loads the identity in <paramref name="path"/>, or generates one and saves it there if the file does not exist.</summary>
    /// <param name="path">The file.</param>
    /// <exception cref="PeerLinkException">The file exists but is insecure or invalid (see <see cref="Load"/>).</exception>
    public static PeerIdentity LoadOrCreate(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path))
        {
            return Load(path);
        }

        PeerIdentity identity = Generate();
        try
        {
            identity.Save(path);
            return identity;
        }
        catch (IOException) when (File.Exists(path))
        {
            // Another process created it first: use theirs.
            identity.Dispose();
            return Load(path);
        }
    }

    /// <summary>
    /// Saves the identity, private key included, to a file that only the current user can read and write (mode 0600 on Unix).
    /// The file is written completely under a temporary name and then moved into place.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="overwrite">Whether to replace an existing file.</param>
    /// <exception cref="ArgumentException"><paramref name="path"/> is null or empty.</exception>
    /// <exception cref="IOException">The file exists and <paramref name="overwrite"/> is false, or it cannot be written.</exception>
    public void Save(string path, bool overwrite = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!overwrite && File.Exists(path))
        {
            throw new IOException($"The identity file '{path}' already exists.");
        }

        string fullPath = Path.GetFullPath(path);
        string temporary = Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        byte[] data = GC.AllocateArray<byte>(FileSize, pinned: true);
        try
        {
            Magic.CopyTo(data);
            data[4] = FormatVersion;
            data[5] = KeyTypeX25519;
            _keyPair.ExportPrivateKey(data.AsSpan(8, NoiseKeyPair.KeySize));
            _keyPair.PublicKey.CopyTo(data.AsSpan(40));

            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = OwnerOnly;
            }

            using (var stream = new FileStream(temporary, options))
            {
                stream.Write(data);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, fullPath, overwrite);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(data);
        }
    }

    /// <summary>Copies the 32-byte private key out. Only for callers that must move the key elsewhere (a secure element, a key vault).</summary>
    /// <param name="destination">At least 32 bytes; erase it when done.</param>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than 32 bytes.</exception>
    public void ExportPrivateKey(Span<byte> destination)
    {
        if (destination.Length < NoiseKeyPair.KeySize)
        {
            throw new ArgumentException($"The destination must hold {NoiseKeyPair.KeySize} bytes.", nameof(destination));
        }

        _keyPair.ExportPrivateKey(destination[..NoiseKeyPair.KeySize]);
    }

    /// <summary>Erases the private key from memory.</summary>
    public void Dispose() => _keyPair.Dispose();

    /// <summary>The PeerId's fingerprint; never the private key.</summary>
    public override string ToString() => $"PeerIdentity {PeerId.ToFingerprint()}";

    private static PeerLinkException Invalid(string path, string why) =>
        new(PeerLinkError.InvalidIdentityFile, $"'{path}' is not a valid PeerLink identity file: {why}.");
}
