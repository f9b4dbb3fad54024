// RFC 1035 §4.1 (message format) and §4.1.4 (name compression).
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;

namespace PeerLink.Discovery.Dns;

/// <summary>
/// Writes DNS wire data into a growing buffer, compressing names against every name already written (when enabled).
/// A <see cref="Mark"/> and <see cref="Rewind"/> pair undoes a partly written item, compression entries included, so
/// that a packet builder can try a record and take it back when it does not fit.
/// </summary>
internal sealed class DnsWriter
{
    private readonly bool _compress;
    private readonly Dictionary<string, int> _names = new(StringComparer.Ordinal);
    private readonly List<string> _added = [];
    private byte[] _buffer = new byte[512];
    private int _position;

    public DnsWriter(bool compress = true)
    {
        _compress = compress;
    }

    public int Position => _position;

    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _position);

    public (int Position, int NamesAdded) Mark() => (_position, _added.Count);

    public void Rewind((int Position, int NamesAdded) mark)
    {
        _position = mark.Position;
        for (int i = _added.Count - 1; i >= mark.NamesAdded; i--)
        {
            _names.Remove(_added[i]);
        }

        _added.RemoveRange(mark.NamesAdded, _added.Count - mark.NamesAdded);
    }

    public void Reset() => Rewind((0, 0));

    public void WriteByte(byte value) => Reserve(1)[0] = value;

    public void WriteUInt16(ushort value) => BinaryPrimitives.WriteUInt16BigEndian(Reserve(2), value);

    public void WriteUInt32(uint value) => BinaryPrimitives.WriteUInt32BigEndian(Reserve(4), value);

    public void WriteBytes(ReadOnlySpan<byte> value) => value.CopyTo(Reserve(value.Length));

    public void PatchUInt16(int position, ushort value) => BinaryPrimitives.WriteUInt16BigEndian(_buffer.AsSpan(position, 2), value);

    /// <summary>Writes a name, ending it with a pointer to an earlier copy of its longest known suffix.</summary>
    public void WriteName(DnsName name)
    {
        for (int i = 0; i < name.LabelCount; i++)
        {
            if (_compress)
            {
                string key = name.SuffixKey(i);
                if (_names.TryGetValue(key, out int offset))
                {
                    WriteUInt16((ushort)(0xC000 | offset));
                    return;
                }

                if (_position <= 0x3FFF)
                {
                    _names.Add(key, _position);
                    _added.Add(key);
                }
            }

            string label = name.Labels[i];
            int length = Encoding.UTF8.GetByteCount(label);
            WriteByte((byte)length);
            Encoding.UTF8.GetBytes(label, Reserve(length));
        }

        WriteByte(0);
    }

    /// <summary>Writes a whole record: name, type, class with the cache-flush bit, TTL, rdlength and data.</summary>
    public void WriteRecord(DnsRecord record)
    {
        WriteName(record.Name);
        WriteUInt16((ushort)record.Type);
        WriteUInt16(record.Type == DnsRecordType.Opt ? record.Class : (ushort)(record.Class | (record.CacheFlush ? DnsClass.TopBit : 0)));
        WriteUInt32(record.Ttl);
        int lengthAt = _position;
        WriteUInt16(0);
        record.WriteData(this);
        int length = _position - lengthAt - 2;
        if (length > ushort.MaxValue)
        {
            throw new InvalidOperationException($"The data of {record.Name} {record.Type} has {length} bytes; at most 65535 fit.");
        }

        PatchUInt16(lengthAt, (ushort)length);
    }

    public void WriteQuestion(DnsQuestion question)
    {
        WriteName(question.Name);
        WriteUInt16((ushort)question.Type);
        WriteUInt16((ushort)(question.Class | (question.UnicastResponse ? DnsClass.TopBit : 0)));
    }

    private Span<byte> Reserve(int count)
    {
        if (_position + count > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _position + count));
        }

        Span<byte> span = _buffer.AsSpan(_position, count);
        _position += count;
        return span;
    }
}
