using System;
using System.CommandLine;
using System.IO;
using System.Threading.Tasks;

namespace PeerLink.Cli;

/// <summary><c>peerlink id new|show</c>.</summary>
internal static class IdCommands
{
    public static Command Create()
    {
        var file = new Option<string?>("--file", "-f") { Description = "The key file. Default: as --identity of the other commands." };
        var force = new Option<bool>("--force") { Description = "Replace an existing key file (its identity is lost)." };
        var create = new Command("new", "Create an identity: a new X25519 key pair in an owner-only file; prints its PeerId.") { file, force };
        create.SetAction((result, _) => Cli.RunAsync(() =>
        {
            string path = Path.GetFullPath(result.GetValue(file) ?? Cli.DefaultIdentityPath());
            if (File.Exists(path) && !result.GetValue(force))
            {
                throw new ArgumentException($"{path} exists; --force replaces it.", "--file");
            }

            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using PeerIdentity identity = PeerIdentity.Generate();
            identity.Save(path, overwrite: result.GetValue(force));
            Print(identity, path);
            return Task.FromResult(0);
        }));

        var showFile = new Option<string?>("--file", "-f") { Description = "The key file. Default: as --identity of the other commands." };
        var show = new Command("show", "Show an identity: its PeerId, fingerprint, file and the file's permissions.") { showFile };
        show.SetAction((result, _) => Cli.RunAsync(() =>
        {
            string path = Path.GetFullPath(result.GetValue(showFile) ?? Cli.DefaultIdentityPath());
            if (!File.Exists(path))
            {
                throw new ArgumentException($"{path} does not exist; 'peerlink id new' creates it.", "--file");
            }

            using PeerIdentity identity = PeerIdentity.Load(path);
            Print(identity, path);
            return Task.FromResult(0);
        }));

        return new Command("id", "Create or show an identity (a PeerId and its key file).") { create, show };
    }

    private static void Print(PeerIdentity identity, string path)
    {
        Console.WriteLine($"peer id:     {identity.PeerId}");
        Console.WriteLine($"fingerprint: {identity.PeerId.ToFingerprint()}");
        Console.WriteLine($"file:        {path}");
        if (!OperatingSystem.IsWindows())
        {
            UnixFileMode mode = File.GetUnixFileMode(path);
            bool ownerOnly = (mode & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) == 0;
            Console.WriteLine($"permissions: {Convert.ToString((int)mode, 8).PadLeft(4, '0')} ({(ownerOnly ? "owner only" : "readable by others: chmod 600 it")})");
        }
    }
}
