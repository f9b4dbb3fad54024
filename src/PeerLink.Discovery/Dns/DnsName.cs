// RFC 1035 §3.1 and §4.1.4 (names and compression); RFC 6762 §16 (names are UTF-8 in mDNS) and §16 (case-insensitive ASCII matching).
using System;
using System.Collections.Generic;
using System.Text;

namespace PeerLink.Discovery.Dns;

/// <summary>
/// A domain name as its labels. Labels may hold any byte (DNS-SD instance names carry spaces and dots), so the name is
/// kept as labels, never as one dotted string; <see cref="ToString"/> escapes dots and backslashes inside labels.
/// Comparison ignores ASCII case only (RFC 6762 §16).
/// </summary>
internal sealed class DnsName : IEquatable<DnsName>
{
    /// <summary>The most bytes a label may have on the wire.</summary>
    public const int MaxLabelLength = 63;

    /// <summary>The most bytes a whole name may have on the wire, length bytes and the final zero included.</summary>
    public const int MaxWireLength = 255;

    private readonly string[] _labels;
    private string? _key;

    public static readonly DnsName Root = new([]);

    private DnsName(string[] labels)
    {
        _labels = labels;
    }

    public IReadOnlyList<string> Labels => _labels;

    public int LabelCount => _labels.Length;

    /// <summary>The name's length on the wire without compression.</summary>
    public int WireLength
    {
        get
        {
            int length = 1;
            foreach (string label in _labels)
            {
                length += 1 + Encoding.UTF8.GetByteCount(label);
            }

            return length;
        }
    }

    /// <summary>The lowercase (ASCII) form used for comparison and as a compression key.</summary>
    internal string Key => _key ??= BuildKey(_labels, 0);

    /// <summary>A name from labels; each must be 1–63 bytes in UTF-8 and the whole at most 255 bytes on the wire.</summary>
    /// <exception cref="ArgumentException">A label or the name is empty or too long.</exception>
    public static DnsName FromLabels(IEnumerable<string> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        string[] array = [.. labels];
        var name = new DnsName(array);
        foreach (string label in array)
        {
            ArgumentNullException.ThrowIfNull(label, nameof(labels));
            int bytes = Encoding.UTF8.GetByteCount(label);
            if (bytes is 0 or > MaxLabelLength)
            {
                throw new ArgumentException($"The label '{label}' has {bytes} bytes; a label has 1 to {MaxLabelLength}.", nameof(labels));
            }
        }

        if (name.WireLength > MaxWireLength)
        {
            throw new ArgumentException($"The name has {name.WireLength} bytes on the wire; at most {MaxWireLength} are allowed.", nameof(labels));
        }

        return name;
    }

    /// <summary>Parses a dotted name; "\." and "\\" escape a dot or backslash inside a label. A final dot is optional.</summary>
    /// <exception cref="ArgumentException">The text is not a valid name.</exception>
    public static DnsName Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text is "" or ".")
        {
            return Root;
        }

        var labels = new List<string>();
        var current = new StringBuilder();
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c == '\\' && i + 1 < text.Length)
            {
                current.Append(text[++i]);
            }
            else if (c == '.')
            {
                if (current.Length == 0)
                {
                    throw new ArgumentException($"'{text}' has an empty label.", nameof(text));
                }

                labels.Add(current.ToString());
                current.Clear();
            }
            else
            {
                current.Append(c);
            }
        }

        if (current.Length > 0)
        {
            labels.Add(current.ToString());
        }

        try
        {
            return FromLabels(labels);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"'{text}' is not a valid DNS name: {e.Message}", nameof(text), e);
        }
    }

    /// <summary>A name decoded from the wire; the reader has checked the lengths already.</summary>
    internal static DnsName FromWire(List<string> labels) => new([.. labels]);

    /// <summary>This name with <paramref name="label"/> in front (an instance name before a service type).</summary>
    public DnsName Prepend(string label) => FromLabels([label, .. _labels]);

    /// <summary>This name followed by <paramref name="suffix"/>.</summary>
    public DnsName Append(DnsName suffix) => FromLabels([.. _labels, .. suffix._labels]);

    /// <summary>The name without its first <paramref name="count"/> labels.</summary>
    public DnsName Skip(int count) => count == 0 ? this : new DnsName(_labels[count..]);

    /// <summary>Whether this name ends with <paramref name="suffix"/> (or equals it).</summary>
    public bool EndsWith(DnsName suffix)
    {
        if (suffix._labels.Length > _labels.Length)
        {
            return false;
        }

        int offset = _labels.Length - suffix._labels.Length;
        for (int i = 0; i < suffix._labels.Length; i++)
        {
            if (!LabelEquals(_labels[offset + i], suffix._labels[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The key of the suffix that starts at label <paramref name="index"/> (for compression).</summary>
    internal string SuffixKey(int index) => index == 0 ? Key : BuildKey(_labels, index);

    public bool Equals(DnsName? other) => other is not null && (ReferenceEquals(this, other) || Key == other.Key);

    public override bool Equals(object? obj) => Equals(obj as DnsName);

    public override int GetHashCode() => Key.GetHashCode(StringComparison.Ordinal);

    public override string ToString()
    {
        if (_labels.Length == 0)
        {
            return ".";
        }

        var builder = new StringBuilder();
        foreach (string label in _labels)
        {
            if (builder.Length > 0)
            {
                builder.Append('.');
            }

            foreach (char c in label)
            {
                if (c is '.' or '\\')
                {
                    builder.Append('\\');
                }

                builder.Append(c);
            }
        }

        return builder.ToString();
    }

    public static bool LabelEquals(string a, string b) => a.Length == b.Length && ToLowerAscii(a) == ToLowerAscii(b);

    private static string BuildKey(string[] labels, int start)
    {
        var builder = new StringBuilder();
        for (int i = start; i < labels.Length; i++)
        {
            // A dot inside a label must not collide with a label boundary: escape it as ToString does.
            foreach (char c in labels[i])
            {
                if (c is '.' or '\\')
                {
                    builder.Append('\\');
                }

                builder.Append(c is >= 'A' and <= 'Z' ? (char)(c + 32) : c);
            }

            builder.Append('.');
        }

        return builder.ToString();
    }

    private static string ToLowerAscii(string s)
    {
        foreach (char c in s)
        {
            if (c is >= 'A' and <= 'Z')
            {
                return string.Create(s.Length, s, static (span, source) =>
                {
                    for (int i = 0; i < span.Length; i++)
                    {
                        char ch = source[i];
                        span[i] = ch is >= 'A' and <= 'Z' ? (char)(ch + 32) : ch;
                    }
                });
            }
        }

        return s;
    }
}
