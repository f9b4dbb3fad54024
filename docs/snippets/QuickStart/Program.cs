using System.Net;
using PeerLink;
using PeerLink.Sessions;
using PolyType;

// Two devices, each its own identity (a PeerId is its public key): a light that listens and a switch.
using PeerIdentity lightId = PeerIdentity.Generate(), switchId = PeerIdentity.Generate();
await using PeerNode light = await new PeerNodeBuilder(lightId).ListenOn(new IPEndPoint(IPAddress.Loopback, 0)).StartAsync();
await using PeerNode lightSwitch = await new PeerNodeBuilder(switchId).StartAsync();

// A Noise IK session, mutually authenticated and encrypted, in one round trip.
SecureSession toLight = await lightSwitch.ConnectAsync(light.LocalEndPoints[0], light.PeerId);
SecureSession fromSwitch = (await light.AcceptAsync())!;

await toLight.SendAsync(new Switch(On: true, Brightness: 80));
Switch command = (await fromSwitch.ReceiveAsync())!.Value.Deserialize<Switch>();
Console.WriteLine($"light {light.PeerId.ToFingerprint()} <- {fromSwitch.RemotePeerId.ToFingerprint()}: {command}");
await toLight.CloseAsync();

[GenerateShape]
partial record Switch(bool On, int Brightness);
