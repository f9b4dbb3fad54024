// Two devices in one process: a motion sensor and a light. Each has its own identity; the sensor knows the light's
// PeerId (as it would after discovery), opens a one-round-trip Noise IK session to it, and the two exchange typed
// MessagePack messages. Bytes travel through an in-memory pipe per direction, framed as on the wire
// (length:u16be noise-message); nothing touches the network.
using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO;
using System.IO.Pipelines;
using System.Threading.Tasks;
using PeerLink;
using PeerLink.Security.Noise;
using PeerLink.Samples.Hello;

string directory = Directory.CreateTempSubdirectory("peerlink-hello-").FullName;
try
{
    // Identities: generated once and kept in owner-only files, as a device would.
    using PeerIdentity sensor = PeerIdentity.LoadOrCreate(Path.Combine(directory, "sensor.key"));
    using PeerIdentity light = PeerIdentity.LoadOrCreate(Path.Combine(directory, "light.key"));
    Console.WriteLine($"sensor  {sensor.PeerId}");
    Console.WriteLine($"light   {light.PeerId}");

    NoiseProtocol protocol = NoiseProtocol.Parse("Noise_IK_25519_ChaChaPoly_SHA256");
    byte[] prologue = "PLNK hello sample v1"u8.ToArray();
    var toLight = new Pipe();
    var toSensor = new Pipe();

    Task<int> lightSide = RunLightAsync(light, protocol, prologue, toLight.Reader, toSensor.Writer);
    await RunSensorAsync(sensor, light.PeerId, protocol, prologue, toSensor.Reader, toLight.Writer);
    int received = await lightSide;
    Console.WriteLine($"done: the light handled {received} events over {protocol.Name}");
}
finally
{
    Directory.Delete(directory, recursive: true);
}

static async Task RunSensorAsync(PeerIdentity me, PeerId lightId, NoiseProtocol protocol, byte[] prologue, PipeReader input, PipeWriter output)
{
    byte[] buffer = new byte[65535];
    using var handshake = new NoiseHandshakeState(protocol, initiator: true, prologue, localStatic: me.KeyPair, remoteStatic: lightId.ToArray());

    int length = handshake.WriteMessage(Wire.Serializer.Serialize(new Hello("motion-sensor", 1)), buffer);
    await Frames.WriteAsync(output, buffer.AsMemory(0, length));

    byte[] reply = await Frames.ReadAsync(input);
    length = handshake.ReadMessage(reply, buffer);
    Hello greeting = Wire.Read<Hello>(buffer.AsMemory(0, length));
    Console.WriteLine($"sensor: authenticated {new PeerId(handshake.RemoteStaticPublicKey).ToFingerprint()}… ({greeting.Device}), handshake hash {Convert.ToHexString(handshake.HandshakeHash)[..16]}…");

    using NoiseTransport transport = handshake.Split();
    var message = new ArrayBufferWriter<byte>();
    for (int i = 1; i <= 3; i++)
    {
        message.ResetWrittenCount();
        Wire.Serializer.Serialize(message, new MotionEvent("hallway", DateTimeOffset.UtcNow, i * 40));
        length = transport.Send!.EncryptWithAd(default, message.WrittenSpan, buffer);
        await Frames.WriteAsync(output, buffer.AsMemory(0, length));

        byte[] answer = await Frames.ReadAsync(input);
        if (!transport.Receive!.TryDecryptWithAd(default, answer, buffer, out length))
        {
            throw new InvalidDataException("The light's answer failed authentication.");
        }

        LightState state = Wire.Read<LightState>(buffer.AsMemory(0, length));
        Console.WriteLine($"sensor: light is {(state.On ? "on" : "off")} at {state.Brightness}%");
    }

    await output.CompleteAsync();
}

static async Task<int> RunLightAsync(PeerIdentity me, NoiseProtocol protocol, byte[] prologue, PipeReader input, PipeWriter output)
{
    byte[] buffer = new byte[65535];
    using var handshake = new NoiseHandshakeState(protocol, initiator: false, prologue, localStatic: me.KeyPair);

    int length = handshake.ReadMessage(await Frames.ReadAsync(input), buffer);
    Hello hello = Wire.Read<Hello>(buffer.AsMemory(0, length));
    Console.WriteLine($"light:  {new PeerId(handshake.RemoteStaticPublicKey).ToFingerprint()}… says it is {hello.Device} (protocol version {hello.Version})");

    length = handshake.WriteMessage(Wire.Serializer.Serialize(new Hello("ceiling-light", 1)), buffer);
    await Frames.WriteAsync(output, buffer.AsMemory(0, length));

    using NoiseTransport transport = handshake.Split();
    int handled = 0;
    var message = new ArrayBufferWriter<byte>();
    while (await Frames.TryReadAsync(input) is { } frame)
    {
        if (!transport.Receive!.TryDecryptWithAd(default, frame, buffer, out length))
        {
            throw new InvalidDataException("A sensor message failed authentication.");
        }

        MotionEvent motion = Wire.Read<MotionEvent>(buffer.AsMemory(0, length));
        handled++;
        Console.WriteLine($"light:  motion in {motion.Room} (strength {motion.Strength}) at {motion.Time:HH:mm:ss.fff}");

        message.ResetWrittenCount();
        Wire.Serializer.Serialize(message, new LightState(true, Math.Min(100, motion.Strength)));
        length = transport.Send!.EncryptWithAd(default, message.WrittenSpan, buffer);
        await Frames.WriteAsync(output, buffer.AsMemory(0, length));
    }

    await output.CompleteAsync();
    return handled;
}
