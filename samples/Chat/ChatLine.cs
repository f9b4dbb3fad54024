using System;
using PolyType;

namespace PeerLink.Samples.Chat;

/// <summary>One chat line. <c>[GenerateShape]</c> lets PeerLink serialize it as MessagePack without reflection.</summary>
[GenerateShape]
internal sealed partial record ChatLine(string Text, DateTimeOffset Sent);
