// Fuzzing harnesses: `PeerLink.Fuzz TARGET` reads inputs from AFL++ (persistent mode through SharpFuzz) and feeds each
// to one parser that reads the network. What the parser may answer to hostile input is caught per target (its
// documented failure); anything else escaping is a finding, and so is a hang or a crash. `PeerLink.Fuzz TARGET FILE…`
// runs inputs once without AFL (to reproduce a finding or check the seed corpus).
using System;
using System.Collections.Generic;
using System.IO;
using PeerLink.Fuzz;
using SharpFuzz;

var targets = new Dictionary<string, Action<byte[]>>(StringComparer.Ordinal)
{
    ["dns"] = Targets.Dns,
    ["mdns"] = Targets.Mdns,
    ["stun"] = Targets.Stun,
    ["stun-server"] = Targets.StunServer,
    ["noise-xx"] = Targets.NoiseXx,
    ["noise-ik"] = Targets.NoiseIk,
    ["hello"] = Targets.Hello,
    ["rendezvous"] = Targets.Rendezvous,
    ["records"] = Targets.Records,
    ["datagram"] = Targets.Datagram,
};

if (args is ["seeds", var directory])
{
    Seeds.Write(directory);
    return 0;
}

if (args.Length == 0 || !targets.TryGetValue(args[0], out Action<byte[]>? target))
{
    Console.Error.WriteLine($"usage: PeerLink.Fuzz TARGET [FILE…] | PeerLink.Fuzz seeds DIR; targets: {string.Join(", ", targets.Keys)}");
    return 2;
}

if (args.Length > 1)
{
    foreach (string file in args[1..])
    {
        target(File.ReadAllBytes(file));
    }

    Console.WriteLine($"{args.Length - 1} input(s) ran without a finding");
    return 0;
}

Fuzzer.Run(stream =>
{
    using var buffer = new MemoryStream();
    stream.CopyTo(buffer);
    target(buffer.ToArray());
});
return 0;
