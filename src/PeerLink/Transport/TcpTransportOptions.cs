using System;

namespace PeerLink.Transport;

/// <summary>Settings of TCP connections. Validated and copied when a listener or connector is created.</summary>
public sealed class TcpTransportOptions
{
    /// <summary>Received bytes buffered ahead of the reader before the socket stops reading (TCP then slows the peer).</summary>
    /// <remarks>Defaults to 256 KiB.</remarks>
    public long MaxReadBufferSize { get; set; } = 256 * 1024;

    /// <summary>Bytes written but not yet sent before writers wait.</summary>
    /// <remarks>Defaults to 256 KiB.</remarks>
    public long MaxWriteBufferSize { get; set; } = 256 * 1024;

    /// <summary>Whether to disable Nagle's algorithm. PeerLink coalesces small messages itself.</summary>
    /// <remarks>Defaults to true.</remarks>
    public bool NoDelay { get; set; } = true;

    /// <summary>How long a connect attempt may take.</summary>
    /// <remarks>Defaults to 10 seconds.</remarks>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The listen backlog.</summary>
    /// <remarks>Defaults to 512.</remarks>
    public int Backlog { get; set; } = 512;

    internal TcpTransportOptions Validate(string paramName)
    {
        if (MaxReadBufferSize < 4096 || MaxWriteBufferSize < 4096)
        {
            throw new ArgumentOutOfRangeException(paramName, "MaxReadBufferSize and MaxWriteBufferSize must be at least 4096 bytes.");
        }

        if (ConnectTimeout <= TimeSpan.Zero || Backlog < 1)
        {
            throw new ArgumentOutOfRangeException(paramName, "ConnectTimeout must be positive and Backlog at least 1.");
        }

        return new TcpTransportOptions
        {
            MaxReadBufferSize = MaxReadBufferSize,
            MaxWriteBufferSize = MaxWriteBufferSize,
            NoDelay = NoDelay,
            ConnectTimeout = ConnectTimeout,
            Backlog = Backlog,
        };
    }
}
