using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Threading.Tasks;
using PeerLink.Sessions.Framing;
using PeerLink.Testing;
using Xunit;

namespace PeerLink.Tests.Sessions;

/// <summary>The length-prefixed framing the handshake and the session share (docs/protocol.md §2).</summary>
public sealed class NoiseFrameTests
{
    [Fact]
    public async Task FramesRoundTripOnAnySegmentation()
    {
        byte[][] messages = [[], [1], new byte[300], new byte[NoiseFrame.MaxLength]];
        new Random(7).NextBytes(messages[3]);
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));    // the test reads only after writing everything
        foreach (byte[] message in messages)
        {
            NoiseFrame.Write(pipe.Writer, message);
        }

        await pipe.Writer.FlushAsync();
        ReadResult read = await pipe.Reader.ReadAsync();
        byte[] stream = read.Buffer.ToArray();
        Assert.Equal(messages.Length * 2 + 301 + NoiseFrame.MaxLength, stream.Length);

        foreach (int segmentSize in new[] { 1, 3, 4096, 65_536 })
        {
            ReadOnlySequence<byte> buffer = TestSequence.Create(stream, segmentSize);
            var seen = new List<byte[]>();
            while (NoiseFrame.TryRead(ref buffer, out ReadOnlySequence<byte> frame))
            {
                seen.Add(frame.ToArray());
            }

            Assert.True(buffer.IsEmpty);
            Assert.Equal(messages, seen);
        }
    }

    [Fact]
    public void AnIncompleteFrameLeavesTheBufferAsItWas()
    {
        byte[] stream = [0x01, 0x00, .. new byte[255]];     // claims 256 bytes, holds 255
        foreach (int cut in new[] { 0, 1, 2, 100, stream.Length })
        {
            ReadOnlySequence<byte> buffer = TestSequence.Create(stream.AsSpan(0, cut), 1);
            Assert.False(NoiseFrame.TryRead(ref buffer, out _));
            Assert.Equal(cut, buffer.Length);
        }
    }

    [Fact]
    public void AFrameLongerThanNoiseAllowsCannotBeWritten()
    {
        var pipe = new Pipe();
        Assert.Throws<ArgumentOutOfRangeException>("length", () => NoiseFrame.Begin(pipe.Writer, NoiseFrame.MaxLength + 1));
    }
}
