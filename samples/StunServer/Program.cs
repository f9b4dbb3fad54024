// A STUN server: dotnet run --project samples/StunServer -- --listen 0.0.0.0:3478 [--alternate 192.0.2.2:3479]
//     [--user NAME --password PASSWORD [--realm REALM]]
// With --alternate (a second address of this host, and a second port) it supports RFC 5780 behaviour discovery.
// With --user and --password every request needs short-term credentials; with --realm too, long-term ones.
// Ctrl+C or SIGTERM stops it.
using System;
using System.Net;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.Logging;
using PeerLink.Nat;

var options = new StunServerOptions();
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--listen" when i + 1 < args.Length:
            options.PrimaryEndPoint = IPEndPoint.Parse(args[++i]);
            break;
        case "--alternate" when i + 1 < args.Length:
            IPEndPoint alternate = IPEndPoint.Parse(args[++i]);
            options.AlternateAddress = alternate.Address;
            options.AlternatePort = alternate.Port;
            break;
        case "--user" when i + 1 < args.Length:
            options.Username = args[++i];
            break;
        case "--password" when i + 1 < args.Length:
            options.Password = args[++i];
            break;
        case "--realm" when i + 1 < args.Length:
            options.Realm = args[++i];
            break;
        case "--trace":
            break;
        default:
            Console.Error.WriteLine("usage: StunServer [--listen ADDRESS:PORT] [--alternate ADDRESS:PORT] [--user NAME --password PASSWORD [--realm REALM]] [--trace]");
            return 2;
    }
}

using ILoggerFactory loggerFactory = LoggerFactory.Create(builder => builder
    .AddSimpleConsole(o => o.SingleLine = true)
    .SetMinimumLevel(Array.IndexOf(args, "--trace") >= 0 ? LogLevel.Debug : LogLevel.Information));

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};

// A service manager stops it with SIGTERM: stop just as cleanly.
using PosixSignalRegistration terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    stop.Cancel();
});

StunServer server;
try
{
    server = await StunServer.StartAsync(options, loggerFactory);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}

await using (server)
{
    Console.WriteLine($"STUN server on {string.Join(", ", server.LocalEndPoints)}. Ctrl+C to stop.");
    try
    {
        await Task.Delay(Timeout.Infinite, stop.Token);
    }
    catch (OperationCanceledException)
    {
    }
}

Console.WriteLine("stopped");
return 0;
