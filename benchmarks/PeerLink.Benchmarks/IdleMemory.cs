using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Threading.Tasks;
using PeerLink.Sessions;

namespace PeerLink.Benchmarks;

/// <summary>
/// Managed memory held by idle established connections: 1000 of each kind over loopback, both ends in this process,
/// measured as the growth of the GC heap after full collections, divided by the number of ends (2000). Not a
/// BenchmarkDotNet benchmark (it measures a state, not an operation): run with <c>-- --idle-memory</c>.
/// </summary>
internal static class IdleMemory
{
    private const int Connections = 1000;

    public static async Task RunAsync()
    {
        Console.WriteLine($"Idle connections: {Connections}, both ends in-process; managed heap growth per end (median of 3 runs).");
        Console.WriteLine($"{"kind",-28} {"bytes per end",14}");
        foreach ((string name, Func<Task<Func<Task>>> open) in new (string, Func<Task<Func<Task>>>)[]
        {
            ("plain TCP (NetworkStream)", OpenTcpAsync),
            ("SslStream TLS 1.3 mutual", OpenTlsAsync),
            ("PeerLink session (IK)", OpenPeerLinkAsync),
        })
        {
            var results = new List<double>();
            for (int run = 0; run < 3; run++)
            {
                long before = Measure();
                Func<Task> close = await open();
                long after = Measure();
                results.Add((after - before) / (2.0 * Connections));
                await close();
            }

            results.Sort();
            Console.WriteLine($"{name,-28} {results[1],14:N0}");
        }
    }

    private static long Measure()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }

        return GC.GetTotalMemory(forceFullCollection: true);
    }

    private static async Task<Func<Task>> OpenTcpAsync()
    {
        Socket listener = Loopback.Listen();
        var streams = new List<NetworkStream>();
        for (int i = 0; i < Connections; i++)
        {
            (Socket client, Socket server) = await Loopback.ConnectAsync(listener);
            streams.Add(new NetworkStream(client, ownsSocket: true));
            streams.Add(new NetworkStream(server, ownsSocket: true));
        }

        return async () =>
        {
            foreach (NetworkStream stream in streams)
            {
                await stream.DisposeAsync();
            }

            listener.Dispose();
        };
    }

    private static async Task<Func<Task>> OpenTlsAsync()
    {
        Socket listener = Loopback.Listen();
        var streams = new List<SslStream>();
        for (int i = 0; i < Connections; i++)
        {
            (SslStream client, SslStream server) = await Loopback.ConnectTlsAsync(listener);
            streams.Add(client);
            streams.Add(server);
        }

        return async () =>
        {
            foreach (SslStream stream in streams)
            {
                await stream.DisposeAsync();
            }

            listener.Dispose();
        };
    }

    private static async Task<Func<Task>> OpenPeerLinkAsync()
    {
        var serverIdentity = PeerIdentity.Generate();
        var clientIdentity = PeerIdentity.Generate();
        PeerNode server = await new PeerNodeBuilder(serverIdentity).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
        PeerNode client = await new PeerNodeBuilder(clientIdentity).StartAsync();
        var sessions = new List<SecureSession>();
        for (int i = 0; i < Connections; i++)
        {
            sessions.Add(await client.ConnectAsync(server.LocalEndPoints[0], server.PeerId));
            sessions.Add((await server.AcceptAsync())!);
        }

        return async () =>
        {
            await client.DisposeAsync();
            await server.DisposeAsync();
            clientIdentity.Dispose();
            serverIdentity.Dispose();
            GC.KeepAlive(sessions);
        };
    }
}
