using System;
using System.IO;
using PeerLink.Security;
using Xunit;

namespace PeerLink.Tests.Identity;

public sealed class PeerIdentityTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("peerlink-identity-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void SavedIdentityLoadsWithTheSameKeyAndOwnerOnlyPermissions()
    {
        string path = Path.Combine(_directory, "device.key");
        using PeerIdentity identity = PeerIdentity.Generate();

        identity.Save(path);
        using PeerIdentity loaded = PeerIdentity.Load(path);

        Assert.Equal(identity.PeerId, loaded.PeerId);
        Assert.Equal(PeerIdentity.FileSize, new FileInfo(path).Length);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }

        Assert.Single(Directory.GetFiles(_directory));   // no temporary file left behind
    }

    [Fact]
    public void PublicKeyIsDerivedFromThePrivateKey()
    {
        // RFC 7748 §6.1: Alice's private key and the public key it must give.
        using PeerIdentity alice = PeerIdentity.FromPrivateKey(Convert.FromHexString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
        Assert.Equal("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", Convert.ToHexStringLower(alice.PeerId.ToArray()));

        using PeerIdentity identity = PeerIdentity.Generate();
        byte[] privateKey = new byte[32];
        identity.ExportPrivateKey(privateKey);
        using PeerIdentity again = PeerIdentity.FromPrivateKey(privateKey);
        Assert.Equal(identity.PeerId, again.PeerId);
    }

    [Fact]
    public void SaveDoesNotOverwriteUnlessAsked()
    {
        string path = Path.Combine(_directory, "device.key");
        using PeerIdentity first = PeerIdentity.Generate();
        using PeerIdentity second = PeerIdentity.Generate();
        first.Save(path);

        Assert.Throws<IOException>(() => second.Save(path));
        using (PeerIdentity loaded = PeerIdentity.Load(path))
        {
            Assert.Equal(first.PeerId, loaded.PeerId);
        }

        second.Save(path, overwrite: true);
        using PeerIdentity replaced = PeerIdentity.Load(path);
        Assert.Equal(second.PeerId, replaced.PeerId);
    }

    [Fact]
    public void LoadOrCreateCreatesOnceThenLoads()
    {
        string path = Path.Combine(_directory, "auto.key");
        using PeerIdentity created = PeerIdentity.LoadOrCreate(path);
        using PeerIdentity loaded = PeerIdentity.LoadOrCreate(path);
        Assert.Equal(created.PeerId, loaded.PeerId);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(71)]
    [InlineData(73)]
    [InlineData(4096)]
    public void WrongSizeIsAClearError(int size)
    {
        string path = WriteOwnerOnly("bad.key", new byte[size]);
        var e = Assert.Throws<PeerLinkException>(() => PeerIdentity.Load(path));
        Assert.Equal(PeerLinkError.InvalidIdentityFile, e.Error);
        Assert.Contains("72", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, "signature")]     // magic
    [InlineData(4, "version")]       // format version
    [InlineData(5, "version")]       // key type
    [InlineData(45, "corrupt")]      // public key does not match the private key
    [InlineData(10, "corrupt")]      // private key changed
    public void WrongFormatIsAClearError(int offset, string expectedWord)
    {
        string path = Path.Combine(_directory, "device.key");
        using (PeerIdentity identity = PeerIdentity.Generate())
        {
            identity.Save(path);
        }

        byte[] data = File.ReadAllBytes(path);
        data[offset] ^= 0x40;
        File.WriteAllBytes(path, data);

        var e = Assert.Throws<PeerLinkException>(() => PeerIdentity.Load(path));
        Assert.Equal(PeerLinkError.InvalidIdentityFile, e.Error);
        Assert.Contains(expectedWord, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TooOpenPermissionsAreRefused()
    {
        if (OperatingSystem.IsWindows())
        {
            return;   // Unix permission bits do not exist there; ACLs are the user's business.
        }

        string path = Path.Combine(_directory, "device.key");
        using (PeerIdentity identity = PeerIdentity.Generate())
        {
            identity.Save(path);
        }

        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        var e = Assert.Throws<PeerLinkException>(() => PeerIdentity.Load(path));
        Assert.Equal(PeerLinkError.InsecureIdentityFile, e.Error);
        Assert.Contains("644", e.Message, StringComparison.Ordinal);
        Assert.Contains("chmod 600", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheTextFormsNeverShowThePrivateKey()
    {
        using PeerIdentity identity = PeerIdentity.Generate();
        byte[] privateKey = new byte[32];
        identity.ExportPrivateKey(privateKey);

        string text = identity.ToString();

        Assert.Contains(identity.PeerId.ToFingerprint(), text, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToHexString(privateKey), text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(Convert.ToBase64String(privateKey), text, StringComparison.Ordinal);
        Assert.DoesNotContain(new PeerId(privateKey).ToString(), text, StringComparison.Ordinal);
    }

    [Fact]
    public void BadArgumentsNameTheArgument()
    {
        Assert.Throws<ArgumentException>("privateKey", () => PeerIdentity.FromPrivateKey(new byte[16]));
        Assert.Throws<ArgumentNullException>("path", () => PeerIdentity.Load(null!));
        Assert.Throws<ArgumentException>("path", () => PeerIdentity.Load(""));
        using PeerIdentity identity = PeerIdentity.Generate();
        Assert.Throws<ArgumentException>("destination", () => identity.ExportPrivateKey(new byte[31]));
    }

    private string WriteOwnerOnly(string name, byte[] data)
    {
        string path = Path.Combine(_directory, name);
        File.WriteAllBytes(path, data);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        return path;
    }
}
