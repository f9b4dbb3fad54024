using System;
using System.Buffers;
using PeerLink.Messaging;
using PeerLink.Sessions;
using Xunit;

namespace PeerLink.Tests.Sessions;

/// <summary>The handshake hello (docs/protocol.md §3): required keys, unknown keys skipped, nothing after the map.</summary>
public sealed class SessionHelloTests
{
    [Fact]
    public void AHelloReadsBackAndUnknownKeysAreSkipped()
    {
        byte[] hello = Write((ref MessagePackWriter w) =>
        {
            w.WriteMapHeader(5);
            w.Write("future");
            w.WriteArrayHeader(1);
            w.Write(7);
            w.Write("max");
            w.Write(4096);
            w.Write("v");
            w.Write(1);
            w.Write("app");
            w.Write("thermostat");
            w.Write("feat");
            w.WriteArrayHeader(0);
        });

        SessionHello read = SessionHello.Read(hello);
        Assert.Equal(new SessionHello(1, "thermostat", 4096), read);

        var writer = new ArrayBufferWriter<byte>();
        new SessionHello(1, "peerlink", 1 << 20).WriteTo(writer);
        Assert.Equal(new SessionHello(1, "peerlink", 1 << 20), SessionHello.Read(writer.WrittenMemory));
    }

    [Fact]
    public void TheSameApplicationIdIsThisSidesInstanceAndAnotherIsThePeers()
    {
        const string Mine = "thermostat-é";   // not ASCII: compared as UTF-8
        var writer = new ArrayBufferWriter<byte>();
        new SessionHello(1, new string(Mine.AsSpan()), 1024).WriteTo(writer);

        SessionHello same = SessionHello.Read(writer.WrittenMemory, Mine);
        Assert.Same(Mine, same.ApplicationId);

        SessionHello other = SessionHello.Read(writer.WrittenMemory, "thermostat-e");
        Assert.Equal(Mine, other.ApplicationId);
        Assert.NotSame(Mine, other.ApplicationId);

        writer.ResetWrittenCount();
        new SessionHello(1, new string('a', 300), 1024).WriteTo(writer);   // longer than the comparison's stack buffer
        Assert.Equal(new string('a', 300), SessionHello.Read(writer.WrittenMemory, new string('a', 300)).ApplicationId);
    }

    [Fact]
    public void TheAesFeatureIsReadAmongOthersOfAnyType()
    {
        var writer = new ArrayBufferWriter<byte>();
        new SessionHello(1, "peerlink", 1024, AesHardware: true).WriteTo(writer);
        Assert.True(SessionHello.Read(writer.WrittenMemory).AesHardware);

        writer.ResetWrittenCount();
        new SessionHello(1, "peerlink", 1024).WriteTo(writer);
        Assert.False(SessionHello.Read(writer.WrittenMemory).AesHardware);

        byte[] mixed = Write((ref MessagePackWriter w) =>
        {
            w.WriteMapHeader(4);
            w.Write("feat");
            w.WriteArrayHeader(4);
            w.WriteMapHeader(1);     // not a string: skipped, whatever it holds
            w.Write("aes-hw");
            w.Write(true);
            w.Write("aes-hw-2");
            w.Write(7);
            w.Write("aes-hw");
            w.Write("v");
            w.Write(1);
            w.Write("app");
            w.Write("x");
            w.Write("max");
            w.Write(1);
        });
        Assert.Equal(new SessionHello(1, "x", 1, AesHardware: true), SessionHello.Read(mixed));
    }

    [Fact]
    public void BytesAfterTheMapAreAProtocolViolation()
    {
        var writer = new ArrayBufferWriter<byte>();
        new SessionHello(1, "peerlink", 1 << 20).WriteTo(writer);
        byte[] padded = [.. writer.WrittenSpan, 0xC0];

        var error = Assert.Throws<PeerLinkException>(() => SessionHello.Read(padded));
        Assert.Equal(PeerLinkError.ProtocolViolation, error.Error);
        Assert.Contains("1 bytes after", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("v")]
    [InlineData("app")]
    [InlineData("max")]
    public void EachRequiredKeyIsRequired(string missing)
    {
        byte[] hello = Write((ref MessagePackWriter w) =>
        {
            w.WriteMapHeader(2);
            foreach (string key in new[] { "v", "app", "max" })
            {
                if (key == missing)
                {
                    continue;
                }

                w.Write(key);
                if (key == "app")
                {
                    w.Write("peerlink");
                }
                else
                {
                    w.Write(1);
                }
            }
        });

        Assert.Equal(PeerLinkError.ProtocolViolation, Assert.Throws<PeerLinkException>(() => SessionHello.Read(hello)).Error);
    }

    [Fact]
    public void NotAMapIsAProtocolViolation()
    {
        Assert.Equal(PeerLinkError.ProtocolViolation, Assert.Throws<PeerLinkException>(() => SessionHello.Read(new byte[] { 0x93, 1, 2, 3 })).Error);
        Assert.Equal(PeerLinkError.ProtocolViolation, Assert.Throws<PeerLinkException>(() => SessionHello.Read(new byte[] { 0x81, 0xA1 })).Error);
    }

    private delegate void WriteAction(ref MessagePackWriter writer);

    private static byte[] Write(WriteAction write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        write(ref writer);
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }
}
