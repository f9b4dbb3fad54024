// The smart-home scene PeerLink exists for, on one machine and loopback only. A motion sensor, a hallway light, a
// thermostat and an air conditioner, each its own process with its own identity, find each other over mDNS (on the
// loopback interface) and talk in typed MessagePack messages with no server and no internet; a phone away from home
// reaches the light and the thermostat by PeerId through the home's rendezvous node. All share the home's network key.
//
//   dotnet run --project samples/SmartHome            the whole scene (the default role)
//   SmartHome <role> …                                one device; the scene starts them like this
using System;
using System.Threading.Tasks;
using PeerLink.Samples.SmartHome;

string role = args.Length > 0 ? args[0] : "scene";
string[] rest = args.Length > 0 ? args[1..] : [];
return role switch
{
    "scene" => await Scene.RunAsync(),
    "rendezvous" => await Devices.RendezvousAsync(),
    "light" => await Devices.LightAsync(rest),
    "sensor" => await Devices.SensorAsync(),
    "ac" => await Devices.AirConditionerAsync(),
    "thermostat" => await Devices.ThermostatAsync(rest),
    "phone" => await Devices.PhoneAsync(rest),
    "footprint" => await Footprint.RunAsync(),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: SmartHome [scene | rendezvous | light | sensor | ac | thermostat | phone …]");
    return 2;
}
