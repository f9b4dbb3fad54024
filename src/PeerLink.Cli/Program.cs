// peerlink: the PeerLink command-line tool. Every command has --help, prints a one-line error and returns a non-zero
// exit code on failure (1 network or protocol, 2 bad arguments, 130 interrupted). docs/cli.md has examples.
using System.CommandLine;
using PeerLink.Cli;

var root = new RootCommand("peerlink: identities, sessions, discovery, NAT checks and servers of PeerLink.")
{
    IdCommands.Create(),
    DiscoverCommand.Create(),
};
foreach (Command command in SessionCommands.Create())
{
    root.Subcommands.Add(command);
}

foreach (Command command in NatCommands.Create())
{
    root.Subcommands.Add(command);
}

foreach (Command command in ServerCommands.Create())
{
    root.Subcommands.Add(command);
}

return await root.Parse(args).InvokeAsync();
