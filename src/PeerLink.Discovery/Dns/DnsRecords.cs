// RFC 1035 §3.2–3.4 (RR format, A, PTR, TXT), RFC 3596 (AAAA), RFC 2782 (SRV), RFC 4034 §4 and RFC 6762 §6.1 (NSEC in
// mDNS), RFC 6891 (OPT), RFC 6762 §10.2 (the cache-flush bit) and RFC 6763 §6 (TXT strings).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;

namespace PeerLink.Discovery.Dns;

/// <summary>Resource record types that PeerLink reads and writes; any other value is kept as opaque data.</summary>
internal enum DnsRecordType : ushort
{
    A = 1,
    Ptr = 12,
    Txt = 16,
    Aaaa = 28,
    Srv = 33,
    Opt = 41,
    Nsec = 47,
    Any = 255,
}

/// <summary>DNS classes; mDNS uses the top bit of the class field for QU (questions) and cache flush (records).</summary>
internal static class DnsClass
{
    public const ushort Internet = 1;
    public const ushort Any = 255;
    public const ushort TopBit = 0x8000;
}

/// <summary>A question: a name, a type and a class; <see cref="UnicastResponse"/> is the mDNS QU bit (RFC 6762 §5.4).</summary>
internal sealed record DnsQuestion(DnsName Name, DnsRecordType Type, ushort Class = DnsClass.Internet, bool UnicastResponse = false)
{
    /// <summary>Whether <paramref name="record"/> answers this question (name, type or ANY, class or ANY).</summary>
    public bool IsAnsweredBy(DnsRecord record) =>
        (Type == DnsRecordType.Any || Type == record.Type) &&
        (Class == DnsClass.Any || Class == record.Class) &&
        record.Name.Equals(Name);

    public override string ToString() => $"{Name} {Type}{(UnicastResponse ? " QU" : string.Empty)}";
}

/// <summary>A resource record. The record data is in the derived types; <see cref="DataEquals"/> compares it.</summary>
internal abstract record DnsRecord
{
    protected DnsRecord(DnsName name, uint ttl)
    {
        Name = name;
        Ttl = ttl;
    }

    public DnsName Name { get; init; }

    public abstract DnsRecordType Type { get; }

    /// <summary>The class without the cache-flush bit.</summary>
    public ushort Class { get; init; } = DnsClass.Internet;

    /// <summary>The mDNS cache-flush bit: this record replaces every other record of its name, type and class (RFC 6762 §10.2).</summary>
    public bool CacheFlush { get; init; }

    /// <summary>Time to live in seconds; 0 is a goodbye in mDNS.</summary>
    public uint Ttl { get; init; }

    /// <summary>Writes the record data (without the rdlength).</summary>
    internal abstract void WriteData(DnsWriter writer);

    /// <summary>Whether the record data is the same (names compared without case).</summary>
    public abstract bool DataEquals(DnsRecord other);

    /// <summary>Same name, type, class and data: the same record whatever its TTL.</summary>
    public bool IsSameRecord(DnsRecord other) =>
        Type == other.Type && Class == other.Class && Name.Equals(other.Name) && DataEquals(other);

    /// <summary>The record data on the wire without compression, for the lexicographic comparison of RFC 6762 §8.2.</summary>
    public byte[] CanonicalData()
    {
        var writer = new DnsWriter(compress: false);
        WriteData(writer);
        return writer.WrittenSpan.ToArray();
    }

    protected virtual string DataText => string.Empty;

    public override string ToString() => $"{Name} {Type} ttl={Ttl}{(CacheFlush ? " flush" : string.Empty)} {DataText}";
}

/// <summary>An A (IPv4) or AAAA (IPv6) record.</summary>
internal sealed record DnsAddressRecord : DnsRecord
{
    public DnsAddressRecord(DnsName name, uint ttl, IPAddress address)
        : base(name, ttl)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
        {
            throw new ArgumentException("An address record holds an IPv4 or IPv6 address.", nameof(address));
        }

        // The scope (interface index) of a link-local address is not part of the record.
        Address = address.AddressFamily == AddressFamily.InterNetworkV6 && address.ScopeId != 0 ? new IPAddress(address.GetAddressBytes()) : address;
    }

    public IPAddress Address { get; }

    public override DnsRecordType Type => Address.AddressFamily == AddressFamily.InterNetwork ? DnsRecordType.A : DnsRecordType.Aaaa;

    internal override void WriteData(DnsWriter writer)
    {
        Span<byte> bytes = stackalloc byte[16];
        Address.TryWriteBytes(bytes, out int written);
        writer.WriteBytes(bytes[..written]);
    }

    public override bool DataEquals(DnsRecord other) => other is DnsAddressRecord a && a.Address.Equals(Address);

    protected override string DataText => Address.ToString();
}

/// <summary>A PTR record (in DNS-SD: service type → instance).</summary>
internal sealed record DnsPtrRecord(DnsName name, uint ttl, DnsName Target) : DnsRecord(name, ttl)
{
    public override DnsRecordType Type => DnsRecordType.Ptr;

    internal override void WriteData(DnsWriter writer) => writer.WriteName(Target);

    public override bool DataEquals(DnsRecord other) => other is DnsPtrRecord p && p.Target.Equals(Target);

    protected override string DataText => Target.ToString();
}

/// <summary>An SRV record: where an instance runs.</summary>
internal sealed record DnsSrvRecord(DnsName name, uint ttl, ushort Priority, ushort Weight, ushort Port, DnsName Target) : DnsRecord(name, ttl)
{
    public override DnsRecordType Type => DnsRecordType.Srv;

    internal override void WriteData(DnsWriter writer)
    {
        writer.WriteUInt16(Priority);
        writer.WriteUInt16(Weight);
        writer.WriteUInt16(Port);
        writer.WriteName(Target);
    }

    public override bool DataEquals(DnsRecord other) =>
        other is DnsSrvRecord s && s.Priority == Priority && s.Weight == Weight && s.Port == Port && s.Target.Equals(Target);

    protected override string DataText => $"{Priority} {Weight} {Port} {Target}";
}

/// <summary>A TXT record: character strings of 0–255 bytes each. An empty list is written as one empty string (RFC 6763 §6.1).</summary>
internal sealed record DnsTxtRecord : DnsRecord
{
    public DnsTxtRecord(DnsName name, uint ttl, IReadOnlyList<byte[]> strings)
        : base(name, ttl)
    {
        ArgumentNullException.ThrowIfNull(strings);
        foreach (byte[] s in strings)
        {
            if (s is null || s.Length > 255)
            {
                throw new ArgumentException("A TXT string has at most 255 bytes.", nameof(strings));
            }
        }

        Strings = strings;
    }

    public IReadOnlyList<byte[]> Strings { get; }

    public override DnsRecordType Type => DnsRecordType.Txt;

    internal override void WriteData(DnsWriter writer)
    {
        if (Strings.Count == 0)
        {
            writer.WriteByte(0);
            return;
        }

        foreach (byte[] s in Strings)
        {
            writer.WriteByte((byte)s.Length);
            writer.WriteBytes(s);
        }
    }

    public override bool DataEquals(DnsRecord other)
    {
        if (other is not DnsTxtRecord t)
        {
            return false;
        }

        // An empty TXT and one empty string are the same data (RFC 6763 §6.1).
        IReadOnlyList<byte[]> a = Normalize(Strings), b = Normalize(t.Strings);
        return a.Count == b.Count && a.Zip(b).All(pair => pair.First.AsSpan().SequenceEqual(pair.Second));
    }

    protected override string DataText => string.Join(' ', Strings.Select(s => '"' + System.Text.Encoding.UTF8.GetString(s) + '"'));

    private static IReadOnlyList<byte[]> Normalize(IReadOnlyList<byte[]> strings) => strings.Count == 0 ? [[]] : strings;
}

/// <summary>An NSEC record in the restricted mDNS form: which types exist for a name (RFC 6762 §6.1).</summary>
internal sealed record DnsNsecRecord(DnsName name, uint ttl, DnsName NextName, IReadOnlyList<DnsRecordType> Types) : DnsRecord(name, ttl)
{
    public override DnsRecordType Type => DnsRecordType.Nsec;

    internal override void WriteData(DnsWriter writer)
    {
        writer.WriteName(NextName);

        // Type bitmap: one window per high byte in use, each as long as its highest bit needs.
        Span<byte> buffer = stackalloc byte[32];
        foreach (IGrouping<int, DnsRecordType> window in Types.Distinct().GroupBy(t => (ushort)t >> 8).OrderBy(g => g.Key))
        {
            int length = window.Max(t => ((ushort)t & 0xFF) / 8) + 1;
            Span<byte> bitmap = buffer[..length];
            bitmap.Clear();
            foreach (DnsRecordType type in window)
            {
                int bit = (ushort)type & 0xFF;
                bitmap[bit / 8] |= (byte)(0x80 >> (bit % 8));
            }

            writer.WriteByte((byte)window.Key);
            writer.WriteByte((byte)length);
            writer.WriteBytes(bitmap);
        }
    }

    public override bool DataEquals(DnsRecord other) =>
        other is DnsNsecRecord n && n.NextName.Equals(NextName) && n.Types.Order().SequenceEqual(Types.Order());

    protected override string DataText => $"{NextName} [{string.Join(' ', Types)}]";
}

/// <summary>An OPT pseudo-record (EDNS0, RFC 6891): the class is the sender's UDP payload size; options are kept raw.</summary>
internal sealed record DnsOptRecord(uint ttl, byte[] Options) : DnsRecord(DnsName.Root, ttl)
{
    public override DnsRecordType Type => DnsRecordType.Opt;

    internal override void WriteData(DnsWriter writer) => writer.WriteBytes(Options);

    public override bool DataEquals(DnsRecord other) => other is DnsOptRecord o && o.Options.AsSpan().SequenceEqual(Options);
}

/// <summary>A record of a type PeerLink does not interpret; its data is kept as it came.</summary>
internal sealed record DnsUnknownRecord(DnsName name, uint ttl, ushort RawType, byte[] Data) : DnsRecord(name, ttl)
{
    public override DnsRecordType Type => (DnsRecordType)RawType;

    internal override void WriteData(DnsWriter writer) => writer.WriteBytes(Data);

    public override bool DataEquals(DnsRecord other) => other is DnsUnknownRecord u && u.RawType == RawType && u.Data.AsSpan().SequenceEqual(Data);

    protected override string DataText => Convert.ToHexString(Data);
}
