using System.Buffers;
using System.IO;
using PeerLink.Nat.Rendezvous;
using PeerLink.Sessions;

namespace PeerLink.Fuzz;

/// <summary>
/// Seeds for the targets whose inputs PeerLink itself writes (the session hello, rendezvous and path messages): one
/// valid message of each kind, as the library encodes it. The other targets' seeds are the public vectors and captured
/// packets of the unit tests (eng/fuzz-seeds.py).
/// </summary>
internal static class Seeds
{
    public static void Write(string directory)
    {
        string hello = Directory.CreateDirectory(Path.Combine(directory, "hello")).FullName;
        for (int i = 0; i < 2; i++)
        {
            var buffer = new ArrayBufferWriter<byte>();
            new SessionHello(1, "peerlink", 1 << 20, AesHardware: i == 1).WriteTo(buffer);
            File.WriteAllBytes(Path.Combine(hello, $"hello-{i}"), buffer.WrittenSpan.ToArray());
        }

        string rendezvous = Directory.CreateDirectory(Path.Combine(directory, "rendezvous")).FullName;
        byte[] id = new byte[32];
        byte[] token = new byte[16];
        byte[][] messages =
        [
            RendezvousWire.Serialize(new Welcome(1, 1_764_000_000_000_000, 25_000, "203.0.113.7:40000", 3478)),
            RendezvousWire.Serialize(new ConnectRequest(id)),
            RendezvousWire.Serialize(new ConnectReply(0, 42, token, null, "203.0.113.10:7400")),
            RendezvousWire.Serialize(new IncomingRelay(42, id, token)),
            RendezvousWire.Serialize(new RelayEnded(42, 3, "byte limit")),
            RendezvousWire.Serialize(new RelayEndedAck(42)),
            PathMessage.Serialize(new PathCandidates(1, token, ["10.0.1.2:40000", "203.0.113.7:40000"], "203.0.113.7:40000", ["host 10.0.1.2:50000 2130706431"], 7, token, "203.0.113.7:50000")),
            PathMessage.Serialize(new PathSync(1, Birthday: true)),
        ];
        for (int i = 0; i < messages.Length; i++)
        {
            File.WriteAllBytes(Path.Combine(rendezvous, $"message-{i}"), messages[i]);
        }

        WriteRecordSeedsAsync(Directory.CreateDirectory(Path.Combine(directory, "records")).FullName).GetAwaiter().GetResult();

        // Datagrams: each message type with its header laid out as docs/protocol.md §11 gives it, and random contents.
        string datagram = Directory.CreateDirectory(Path.Combine(directory, "datagram")).FullName;
        var random = new System.Random(11);
        byte[] Make(int size, params byte[] head)
        {
            byte[] bytes = new byte[size];
            random.NextBytes(bytes);
            head.CopyTo(bytes, 0);
            return bytes;
        }

        File.WriteAllBytes(Path.Combine(datagram, "initiation-ik"), Make(8 + 96 + 48 + 32, 0x81, 1, 1, 0));
        File.WriteAllBytes(Path.Combine(datagram, "initiation-xx"), Make(8 + 32 + 48 + 32, 0x81, 1, 0, 0));
        File.WriteAllBytes(Path.Combine(datagram, "response"), Make(12 + 48 + 48 + 32, 0x82, 0, 0, 0));
        File.WriteAllBytes(Path.Combine(datagram, "cookie-reply"), Make(8 + 12 + 16 + 16, 0x83, 0, 0, 0));
        File.WriteAllBytes(Path.Combine(datagram, "finish"), Make(12 + 64 + 16, 0x84, 0, 0, 0));
        File.WriteAllBytes(Path.Combine(datagram, "transport"), Make(16 + 40 + 16, 0x85, 0, 0, 0));
        File.WriteAllBytes(Path.Combine(datagram, "probe"), Make(16 + 16, 0x86, 0, 0, 0));
        File.WriteAllBytes(Path.Combine(datagram, "stun"), new PeerLink.Nat.Stun.StunMessageBuilder(PeerLink.Nat.Stun.StunClass.Request, PeerLink.Nat.Stun.StunMethod.Binding, PeerLink.Nat.Stun.StunMessageBuilder.NewTransactionId()).ToArray());
    }

    /// <summary>The byte streams a keyless session writes: small messages (coalesced), a fragmented large one, a request, a close.</summary>
    private static async System.Threading.Tasks.Task WriteRecordSeedsAsync(string directory)
    {
        using PeerIdentity identity = PeerIdentity.Generate();
        var options = new SecureSessionOptions { Identity = identity, MaxMessageSize = 64 * 1024 };
        for (int seed = 0; seed < 3; seed++)
        {
            (Transport.PeerConnection sender, Transport.PeerConnection wire) = Transport.PeerConnection.CreatePair();
            SecureSession session = SecureSession.StartKeylessForFuzzing(sender, options);
            switch (seed)
            {
                case 0:
                    await session.SendAsync("one"u8.ToArray());
                    await session.SendAsync("two"u8.ToArray());
                    break;
                case 1:
                    await session.SendAsync(new byte[40_000]);   // fragments
                    break;
                default:
                    _ = session.RequestAsync("ping"u8.ToArray());
                    break;
            }

            await session.CloseAsync().WaitAsync(System.TimeSpan.FromSeconds(2)).ContinueWith(_ => { }, System.Threading.Tasks.TaskScheduler.Default);
            var bytes = new ArrayBufferWriter<byte>();
            while (true)
            {
                using var quiet = new System.Threading.CancellationTokenSource(System.TimeSpan.FromMilliseconds(200));
                System.IO.Pipelines.ReadResult read;
                try
                {
                    read = await wire.Transport.Input.ReadAsync(quiet.Token);
                }
                catch (System.OperationCanceledException)
                {
                    break;   // nothing more was written
                }

                foreach (System.ReadOnlyMemory<byte> segment in read.Buffer)
                {
                    bytes.Write(segment.Span);
                }

                wire.Transport.Input.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted)
                {
                    break;
                }
            }

            File.WriteAllBytes(Path.Combine(directory, $"stream-{seed}"), bytes.WrittenSpan.ToArray());
            session.Abort();
            await session.DisposeAsync();
            await wire.DisposeAsync();
        }
    }
}
