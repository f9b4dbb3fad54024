using PolyType;

namespace PeerLink.Samples.Worker;

/// <summary>What a switch asks of the light.</summary>
[GenerateShape]
internal sealed partial record Command(bool On, int Brightness);

/// <summary>What the light answers: its state after the command.</summary>
[GenerateShape]
internal sealed partial record LightState(bool On, int Brightness);
