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

    [NatLabFact]
    public async Task ChatThroughATierOfTwoNodesOnNatsEndsOnDirectUdp()
    {
        // The devices attach to different nodes of a tier joined by a NATS server on the server host; the caller's node
        // routes the connect through NATS to the callee's, which relays until the devices punch through.
        NatLabFixture lab = await NatLabFixture.UpAsync("port-restricted", "port-restricted");
        string keys = Directory.CreateTempSubdirectory("peerlink-tier-lab-").FullName;
        try
        {
            LabConversation nats = lab.StartCommand("server", "nats-server -a 203.0.113.10 -p 4222");
            await LineContainingAsync(nats, "Server is ready");
            string[] ids = new string[2];
            var nodes = new LabConversation[2];
            for (int n = 0; n < 2; n++)
            {
                nodes[n] = lab.StartProgram("server", NatLabFixture.SampleAssembly("Rendezvous"), "--listen", $"203.0.113.10:740{n + 1}", "--stun-port", $"347{8 + n}", "--identity", Path.Combine(keys, $"node-{n + 1}.key"), "--nats", "nats://203.0.113.10:4222");
                ids[n] = (await LineStartingAsync(nodes[n], "PeerId ")).Split(' ')[1];
            }

            LabConversation listener = lab.StartProgram("peer-b", NatLabFixture.SampleAssembly("Chat"), "listen", "--rendezvous", "203.0.113.10:7402", "--rendezvous-peer", ids[1], "--identity", Path.Combine(keys, "b.key"));
            string calleeId = (await LineStartingAsync(listener, "PeerId ")).Split(' ')[1];
            await LineStartingAsync(listener, "attached to rendezvous node");
            LabConversation caller = lab.StartProgram("peer-a", NatLabFixture.SampleAssembly("Chat"), "connect", "--peer", calleeId, "--rendezvous", "203.0.113.10:7401", "--rendezvous-peer", ids[0], "--identity", Path.Combine(keys, "a.key"));
            string relayed = await LineStartingAsync(caller, "path: relayed");
            string direct = await LineStartingAsync(caller, "path: direct-");
            await caller.SayAsync("the porch light is on");
            string heard = await LineContainingAsync(listener, "the porch light is on");
            string routed = await LineContainingAsync(nodes[0], "routed through the tier");

            Assert.Contains("relayed through rendezvous node 203.0.113.10:7402 (the peer's node of the tier)", relayed, StringComparison.Ordinal);
            Assert.StartsWith("path: direct-udp ", direct, StringComparison.Ordinal);
            Assert.Contains("203.0.113.102:", direct, StringComparison.Ordinal);
            Assert.Contains("relay at 203.0.113.10:7402, ready", routed, StringComparison.Ordinal);
            Assert.Contains("the porch light is on", heard, StringComparison.Ordinal);
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
