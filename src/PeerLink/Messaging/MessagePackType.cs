namespace PeerLink.Messaging;

/// <summary>The family of the next MessagePack value.</summary>
internal enum MessagePackType
{
    /// <summary>The reserved code 0xc1, which no valid data contains.</summary>
    Unknown = 0,

    /// <summary>nil.</summary>
    Nil,

    /// <summary>true or false.</summary>
    Boolean,

    /// <summary>A signed or unsigned integer of any width.</summary>
    Integer,

    /// <summary>float32 or float64.</summary>
    Float,

    /// <summary>A UTF-8 string.</summary>
    String,

    /// <summary>A byte array.</summary>
    Binary,

    /// <summary>An array header, followed by its elements.</summary>
    Array,

    /// <summary>A map header, followed by its keys and values.</summary>
    Map,

    /// <summary>An extension (including the timestamp extension, type -1).</summary>
    Extension,
}
