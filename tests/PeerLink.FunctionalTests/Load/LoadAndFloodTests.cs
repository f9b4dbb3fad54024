using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using PeerLink.Nat;
using PeerLink.Nat.Stun;
using PeerLink.Sessions;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.FunctionalTests.Load;

/// <summary>Heavy tests that must not share the two cores with others: they run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LoadCollection
{
    public const string Name = "Load and floods (alone)";
}

/// <summary>
/// CI-sized versions of the load and flood measurements of docs/benchmarks.md (issue 15 §4): many sessions exchanging
/// messages with nothing dropped, legitimate connects through a handshake flood from many addresses, and a STUN server
/// that keeps answering under a datagram flood.
/// </summary>
[Collection(LoadCollection.Name)]
public sealed class LoadAndFloodTests : PeerIdentities
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task AThousandSessionsOnOneNodeExchangeMessagesWithNothingDropped()
    {
        const int Sessions = 1000, Rounds = 3;
        await using PeerNode node = await new PeerNodeBuilder(Alice)
            .ListenOn(new IPEndPoint(IPAddress.Loopback, 0))
            .Configure(o =>
            {
                o.MaxPendingHandshakes = 256;
                o.MaxPendingHandshakesPerAddress = 256;   // every client comes from 127.0.0.1
            })
            .StartAsync();
        _ = Task.Run(async () =>
        {
            await foreach (SecureSession session in node.AcceptAllAsync())
            {
                _ = Task.Run(async () =>
                {
                    try
                    {
                        while (await session.ReceiveAsync() is { } message)
                        {
                            await session.SendAsync(message.Payload);
                        }
                    }
                    catch (PeerLinkException)
                    {
                    }
                });
            }
        });

        await using PeerNode client = await new PeerNodeBuilder(Bob).StartAsync();
        var sessions = new SecureSession[Sessions];
        using (var gate = new SemaphoreSlim(64))
        {
            await Task.WhenAll(Enumerable.Range(0, Sessions).Select(async i =>
            {
                await gate.WaitAsync();
                try
                {
                    sessions[i] = await client.ConnectAsync(node.LocalEndPoints[0], Alice.PeerId);
                }
                finally
                {
                    gate.Release();
                }
            })).WaitAsync(Limit);
        }

        for (int round = 0; round < Rounds; round++)
        {
            await Task.WhenAll(sessions.Select(async (session, i) =>
            {
                byte[] sent = BitConverter.GetBytes((round * Sessions) + i);
                await session.SendAsync(sent);
                PeerMessage echo = (await session.ReceiveAsync())!.Value;
                Assert.Equal(sent, echo.Payload.ToArray());
            })).WaitAsync(Limit);
        }

        foreach (SecureSession session in sessions)
        {
            await session.CloseAsync();
        }
    }

    [Fact]
    public async Task LegitimatePeersConnectThroughAHandshakeFloodFromSixteenAddresses()
    {
        await using PeerNode node = await new PeerNodeBuilder(Alice).ListenOn(new IPEndPoint(IPAddress.Any, 0)).StartAsync();   // default limits
        var target = new IPEndPoint(IPAddress.Loopback, ((IPEndPoint)node.LocalEndPoints[0]).Port);
        _ = Task.Run(async () =>
        {
            await foreach (SecureSession session in node.AcceptAllAsync())
            {
                session.Abort();
            }
        });

        // A valid IK first message for this node, replayed: each copy holds a pending-handshake slot until its timeout.
        byte[] replay = await HandshakeReplay.CaptureFirstMessageAsync(Mallory, Alice.PeerId);
        using var stop = new CancellationTokenSource();
        var attackers = new List<Task>();
        for (int address = 1; address <= 16; address++)
        {
            var from = IPAddress.Parse($"127.0.1.{address}");
            for (int c = 0; c < 32; c++)
            {
                attackers.Add(Task.Run(() => HandshakeReplay.ReplayLoopAsync(from, target, replay, null, stop.Token)));
            }
        }

        // The slots are full once the node starts shedding: then the legitimate peer connects, twenty times.
        while (node.ShedConnections < 1000)
        {
            await Task.Yield();
        }

        await using PeerNode legit = await new PeerNodeBuilder(Bob).StartAsync();
        for (int i = 0; i < 20; i++)
        {
            SecureSession session = await legit.ConnectAsync(target, Alice.PeerId).WaitAsync(Limit);
            session.Abort();
            await session.DisposeAsync();
        }

        await stop.CancelAsync();
        await Task.WhenAll(attackers).WaitAsync(Limit);
    }

    [Fact]
    public async Task AStunServerKeepsAnsweringUnderADatagramFlood()
    {
        await using StunServer server = await StunServer.StartAsync(new StunServerOptions { PrimaryEndPoint = new IPEndPoint(IPAddress.Loopback, 0), EnableTcp = false });
        using var stop = new CancellationTokenSource();
        long sent = 0;
        var flooding = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task flood = Task.Run(() =>
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            byte[] valid = new StunMessageBuilder(StunClass.Request, StunMethod.Binding, StunMessageBuilder.NewTransactionId()).ToArray();
            byte[] garbage = new byte[100];
            var random = new Random(3489);
            while (!stop.IsCancellationRequested)
            {
                random.NextBytes(garbage);
                long n = Interlocked.Increment(ref sent);
                socket.SendTo((n & 1) == 0 ? valid : garbage, server.LocalEndPoints[0]);
                if (n == 1000)
                {
                    flooding.TrySetResult();
                }
            }
        });

        // The bindings start once the flood is under way (1,000 datagrams sent), so that they are asked during it.
        await flooding.Task.WaitAsync(Limit);
        long before = Interlocked.Read(ref sent);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        client.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var options = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(100), MaxTransmissions = 7 };

        // At least 50 bindings, and as many more as it takes for the flood to send another 1,000 datagrams meanwhile (on
        // two busy cores the flood's thread can sit out 50 quick bindings; then they would not have been under it).
        int bindings = 0;
        while (bindings < 50 || (Interlocked.Read(ref sent) - before < 1000 && !flood.IsCompleted))
        {
            StunBindingResult result = await StunClient.BindingAsync(client, server.LocalEndPoints[0], options).WaitAsync(Limit);
            Assert.Equal(client.LocalEndPoint, result.MappedAddress);
            bindings++;
        }

        Assert.False(flood.IsCompleted, "the flood ended before the bindings did");
        await stop.CancelAsync();
        await flood.WaitAsync(Limit);
    }
}
