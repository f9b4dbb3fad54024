using System;
using PolyType;

namespace PeerLink.Samples.SmartHome;

/// <summary>What the light is told: a union (MessagePack [tag, value]) so that one session carries every kind.</summary>
[GenerateShape]
[DerivedTypeShape(typeof(MotionDetected), Tag = 1)]
[DerivedTypeShape(typeof(LightCommand), Tag = 2)]
internal abstract partial record LightRequest;

/// <summary>Sensor → light: motion seen in a room.</summary>
internal sealed partial record MotionDetected(string Room, DateTimeOffset At) : LightRequest;

/// <summary>Phone → light: "on", "off", or "status" to just report.</summary>
internal sealed partial record LightCommand(string Action, int Brightness = 0) : LightRequest;

/// <summary>Light → anyone: its state after a request.</summary>
[GenerateShape]
internal sealed partial record LightState(bool On, int Brightness, string Reason);

/// <summary>What the thermostat is asked: the air conditioner's answer, or a phone's query.</summary>
[GenerateShape]
internal sealed partial record ClimateQuery(string Action);

/// <summary>Thermostat → air conditioner.</summary>
[GenerateShape]
internal sealed partial record AcCommand(string Mode, double TargetCelsius);

/// <summary>Air conditioner → thermostat, and thermostat → phone.</summary>
[GenerateShape]
internal sealed partial record ClimateState(string Mode, double TargetCelsius, double MeasuredCelsius);
