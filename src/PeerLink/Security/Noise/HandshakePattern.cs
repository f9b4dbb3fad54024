// Noise handshake patterns (Noise Protocol Framework revision 34): one-way patterns §7.4, fundamental interactive
// patterns §7.5, deferred patterns §18.1, and the modifiers psk0..psk3 (§9.2) and fallback (§10.2).
// Tokens are written in the spec's Alice/Bob notation: "->" is sent by Alice, "<-" by Bob, and a DH token names
// Alice's key first ("es" = Alice's ephemeral with Bob's static). The initiator is Alice, except in a Bob-initiated
// pattern (after the fallback modifier), where the initiator is Bob.
using System;
using System.Collections.Frozen;
using System.Collections.Generic;
using System.Linq;

namespace PeerLink.Security.Noise;

internal enum NoiseToken : byte
{
    E,
    S,
    EE,
    ES,
    SE,
    SS,
    Psk,
}

/// <summary>One handshake message: who sends it and its tokens.</summary>
internal sealed record NoiseMessagePattern(bool FromAlice, NoiseToken[] Tokens);

/// <summary>A handshake pattern with its modifiers applied.</summary>
internal sealed class HandshakePattern
{
    private static readonly FrozenDictionary<string, string> s_patterns = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        // One-way.
        ["N"] = "<- s | ... | -> e, es",
        ["K"] = "-> s | <- s | ... | -> e, es, ss",
        ["X"] = "<- s | ... | -> e, es, s, ss",

        // Fundamental interactive.
        ["NN"] = "-> e | <- e, ee",
        ["NK"] = "<- s | ... | -> e, es | <- e, ee",
        ["NX"] = "-> e | <- e, ee, s, es",
        ["KN"] = "-> s | ... | -> e | <- e, ee, se",
        ["KK"] = "-> s | <- s | ... | -> e, es, ss | <- e, ee, se",
        ["KX"] = "-> s | ... | -> e | <- e, ee, se, s, es",
        ["XN"] = "-> e | <- e, ee | -> s, se",
        ["XK"] = "<- s | ... | -> e, es | <- e, ee | -> s, se",
        ["XX"] = "-> e | <- e, ee, s, es | -> s, se",
        ["IN"] = "-> e, s | <- e, ee, se",
        ["IK"] = "<- s | ... | -> e, es, s, ss | <- e, ee, se",
        ["IX"] = "-> e, s | <- e, ee, se, s, es",

        // Deferred.
        ["NK1"] = "<- s | ... | -> e | <- e, ee, es",
        ["NX1"] = "-> e | <- e, ee, s | -> es",
        ["X1N"] = "-> e | <- e, ee | -> s | <- se",
        ["X1K"] = "<- s | ... | -> e, es | <- e, ee | -> s | <- se",
        ["XK1"] = "<- s | ... | -> e | <- e, ee, es | -> s, se",
        ["X1K1"] = "<- s | ... | -> e | <- e, ee, es | -> s | <- se",
        ["X1X"] = "-> e | <- e, ee, s, es | -> s | <- se",
        ["XX1"] = "-> e | <- e, ee, s | -> es, s, se",
        ["X1X1"] = "-> e | <- e, ee, s | -> es, s | <- se",
        ["K1N"] = "-> s | ... | -> e | <- e, ee | -> se",
        ["K1K"] = "-> s | <- s | ... | -> e, es | <- e, ee | -> se",
        ["KK1"] = "-> s | <- s | ... | -> e | <- e, ee, se, es",
        ["K1K1"] = "-> s | <- s | ... | -> e | <- e, ee, es | -> se",
        ["K1X"] = "-> s | ... | -> e | <- e, ee, s, es | -> se",
        ["KX1"] = "-> s | ... | -> e | <- e, ee, se, s | -> es",
        ["K1X1"] = "-> s | ... | -> e | <- e, ee, s | -> se, es",
        ["I1N"] = "-> e, s | <- e, ee | -> se",
        ["I1K"] = "<- s | ... | -> e, es, s | <- e, ee | -> se",
        ["IK1"] = "<- s | ... | -> e, s | <- e, ee, se, es",
        ["I1K1"] = "<- s | ... | -> e, s | <- e, ee, es | -> se",
        ["I1X"] = "-> e, s | <- e, ee, s, es | -> se",
        ["IX1"] = "-> e, s | <- e, ee, se, s | -> es",
        ["I1X1"] = "-> e, s | <- e, ee, s | -> se, es",
    }.ToFrozenDictionary(StringComparer.Ordinal);

    private HandshakePattern(string name, bool bobInitiated, NoiseToken[] alicePre, NoiseToken[] bobPre, NoiseMessagePattern[] messages, bool oneWay)
    {
        Name = name;
        BobInitiated = bobInitiated;
        AlicePreMessage = alicePre;
        BobPreMessage = bobPre;
        Messages = messages;
        IsOneWay = oneWay;
        PskCount = messages.Sum(m => m.Tokens.Count(t => t == NoiseToken.Psk));
    }

    /// <summary>The pattern with its modifiers, as in a protocol name ("XXpsk3", "XXfallback").</summary>
    public string Name { get; }

    /// <summary>True after the fallback modifier: Bob sends the first message and is the initiator.</summary>
    public bool BobInitiated { get; }

    public NoiseToken[] AlicePreMessage { get; }

    public NoiseToken[] BobPreMessage { get; }

    public NoiseMessagePattern[] Messages { get; }

    /// <summary>One-way patterns (N, K, X): after the handshake only the initiator sends.</summary>
    public bool IsOneWay { get; }

    /// <summary>How many psk tokens the pattern has: a psk handshake needs exactly that many pre-shared keys.</summary>
    public int PskCount { get; }

    public static IEnumerable<string> BasePatternNames => s_patterns.Keys;

    /// <summary>Builds a pattern from a base name and modifiers, or says what is wrong with them.</summary>
    public static bool TryCreate(string baseName, IReadOnlyList<string> modifiers, out HandshakePattern? pattern, out string? error)
    {
        pattern = null;
        if (!s_patterns.TryGetValue(baseName, out string? text))
        {
            error = $"'{baseName}' is not a known handshake pattern.";
            return false;
        }

        var alicePre = new List<NoiseToken>();
        var bobPre = new List<NoiseToken>();
        var messages = new List<NoiseMessagePattern>();
        string[] parts = text.Split('|', StringSplitOptions.TrimEntries);
        bool hasPre = parts.Contains("...");
        bool inPre = hasPre;
        foreach (string part in parts)
        {
            if (part == "...")
            {
                inPre = false;
                continue;
            }

            bool fromAlice = part.StartsWith("->", StringComparison.Ordinal);
            NoiseToken[] tokens = part[2..].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(ParseToken).ToArray();
            if (inPre)
            {
                (fromAlice ? alicePre : bobPre).AddRange(tokens);
            }
            else
            {
                messages.Add(new NoiseMessagePattern(fromAlice, tokens));
            }
        }

        bool oneWay = baseName.Length == 1;
        bool bobInitiated = false;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string modifier in modifiers)
        {
            if (!seen.Add(modifier))
            {
                error = $"The modifier '{modifier}' appears twice.";
                return false;
            }

            if (modifier == "fallback")
            {
                // §10.2: Alice's first message becomes a pre-message; the rest is a Bob-initiated pattern.
                if (oneWay || bobInitiated || alicePre.Count > 0 || messages.Count < 2 || !messages[0].FromAlice
                    || messages[0].Tokens.Any(t => t is not (NoiseToken.E or NoiseToken.S)))
                {
                    error = $"The fallback modifier cannot be applied to '{baseName}': its first message cannot be a pre-message.";
                    return false;
                }

                alicePre.AddRange(messages[0].Tokens);
                messages.RemoveAt(0);
                bobInitiated = true;
            }
            else if (modifier.Length == 4 && modifier.StartsWith("psk", StringComparison.Ordinal) && char.IsAsciiDigit(modifier[3]))
            {
                int position = modifier[3] - '0';
                if (position > messages.Count)
                {
                    error = $"The modifier '{modifier}' needs a message {position}, but '{baseName}' has {messages.Count}.";
                    return false;
                }

                NoiseMessagePattern target = messages[Math.Max(0, position - 1)];
                NoiseToken[] tokens = position == 0 ? [NoiseToken.Psk, .. target.Tokens] : [.. target.Tokens, NoiseToken.Psk];
                messages[Math.Max(0, position - 1)] = target with { Tokens = tokens };
            }
            else
            {
                error = $"'{modifier}' is not a known pattern modifier (psk0 to psk9, fallback).";
                return false;
            }
        }

        string name = baseName + string.Join('+', modifiers);
        pattern = new HandshakePattern(name, bobInitiated, [.. alicePre], [.. bobPre], [.. messages], oneWay);
        error = null;
        return true;
    }

    private static NoiseToken ParseToken(string token) => token switch
    {
        "e" => NoiseToken.E,
        "s" => NoiseToken.S,
        "ee" => NoiseToken.EE,
        "es" => NoiseToken.ES,
        "se" => NoiseToken.SE,
        "ss" => NoiseToken.SS,
        _ => throw new InvalidOperationException($"Bad token '{token}' in the built-in pattern table."),
    };
}
