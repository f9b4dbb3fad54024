using System;
using System.IO;
using System.Threading.Tasks;
using Xunit;
using Xunit.Abstractions;

namespace PeerLink.LabTests.NatLab;

/// <summary>
/// The samples as a user runs them, across the lab's NATs: the rendezvous sample on the server host, Chat listening
/// behind router b, and Chat connecting by PeerId behind router a. Both routers are port-restricted cones, the usual
/// home router: the session starts relayed and ends on a punched UDP path, and a typed line arrives.
/// </summary>
public sealed class ChatSampleLabTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    [NatLabFact]
    public async Task ChatConnectThroughTheRendezvousEndsOnDirectUdp()
    {
        NatLabFixture lab = await NatLabFixture.UpAsync("port-restricted", "port-restricted");
        string keys = Directory.CreateTempSubdirectory("peerlink-chat-lab-").FullName;
        try
        {
            LabConversation node = lab.StartProgram("server", NatLabFixture.SampleAssembly("Rendezvous"), "--listen", "203.0.113.10:7400", "--stun-port", "3478", "--identity", Path.Combine(keys, "node.key"));
            string nodeId = (await LineStartingAsync(node, "PeerId ")).Split(' ')[1];
            LabConversation listener = lab.StartProgram("peer-b", NatLabFixture.SampleAssembly("Chat"), "listen", "--rendezvous", "203.0.113.10:7400", "--rendezvous-peer", nodeId, "--identity", Path.Combine(keys, "b.key"));
            string calleeId = (await LineStartingAsync(listener, "PeerId ")).Split(' ')[1];
            await LineStartingAsync(listener, "attached to rendezvous node");

            LabConversation caller = lab.StartProgram("peer-a", NatLabFixture.SampleAssembly("Chat"), "connect", "--peer", calleeId, "--rendezvous", "203.0.113.10:7400", "--rendezvous-peer", nodeId, "--identity", Path.Combine(keys, "a.key"));
            string relayed = await LineStartingAsync(caller, "path: relayed");
            string direct = await LineStartingAsync(caller, "path: direct-");
            await caller.SayAsync("the hall light is on");
            string heard = await LineContainingAsync(listener, "the hall light is on");

            Assert.StartsWith("path: direct-udp ", direct, StringComparison.Ordinal);
            Assert.Contains("203.0.113.102:", direct, StringComparison.Ordinal);
            Assert.Contains("relayed through rendezvous node", relayed, StringComparison.Ordinal);
            Assert.Contains("the hall light is on", heard, StringComparison.Ordinal);
        }
        finally
        {
            await lab.DisposeAsync();
            Directory.Delete(keys, recursive: true);
        }
    }

    private async Task<string> LineStartingAsync(LabConversation program, string start)
    {
        while (true)
        {
            string line = await program.ReadLineAsync(Wait);
            output.WriteLine(line);
            if (line.StartsWith(start, StringComparison.Ordinal))
            {
                return line;
            }
        }
    }

    private async Task<string> LineContainingAsync(LabConversation program, string text)
    {
        while (true)
        {
            string line = await program.ReadLineAsync(Wait);
            output.WriteLine(line);
            if (line.Contains(text, StringComparison.Ordinal))
            {
                return line;
            }
        }
    }
}
