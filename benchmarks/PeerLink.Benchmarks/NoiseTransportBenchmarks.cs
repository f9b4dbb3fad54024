using System;
using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;
using PeerLink.Security.Noise;

namespace PeerLink.Benchmarks;

/// <summary>
/// One Noise transport message, encrypted and decrypted, beside the BCL's ChaCha20Poly1305 called directly on the same
/// sizes with a reused object (the cheapest way to use the primitive). 65519 B is the largest Noise plaintext.
/// </summary>
[CategoriesColumn]
public class NoiseTransportBenchmarks
{
    private readonly byte[] _key = RandomNumberGenerator.GetBytes(32);
    private byte[] _plaintext = [];
    private byte[] _ciphertext = [];
    private byte[] _output = [];
    private ChaCha20Poly1305 _raw = null!;
    private NoiseCipherState _send = null!;
    private NoiseCipherState _receive = null!;
    private ulong _rawNonce;

    [Params(64, 1024, 16384, 65519)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _plaintext = RandomNumberGenerator.GetBytes(Size);
        _ciphertext = new byte[Size + NoiseCipherState.TagSize];
        _output = new byte[Size + NoiseCipherState.TagSize];
        _raw = new ChaCha20Poly1305(_key);
        _send = new NoiseCipherState(PeerLink.Security.NoiseCipherKind.ChaChaPoly);
        _receive = new NoiseCipherState(PeerLink.Security.NoiseCipherKind.ChaChaPoly);
        _send.InitializeKey(_key);
        _receive.InitializeKey(_key);
        _send.EncryptWithAd(default, _plaintext, _ciphertext);   // nonce 0: what DecryptNoise reads every time
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _raw.Dispose();
        _send.Dispose();
        _receive.Dispose();
    }

    [BenchmarkCategory("Encrypt"), Benchmark(Baseline = true)]
    public void EncryptRawAead()
    {
        Span<byte> nonce = stackalloc byte[12];
        BitConverter.TryWriteBytes(nonce[4..], _rawNonce++);
        _raw.Encrypt(nonce, _plaintext, _output.AsSpan(0, Size), _output.AsSpan(Size), default);
    }

    [BenchmarkCategory("Encrypt"), Benchmark]
    public int EncryptNoise() => _send.EncryptWithAd(default, _plaintext, _output);

    [BenchmarkCategory("Decrypt"), Benchmark(Baseline = true)]
    public void DecryptRawAead()
    {
        Span<byte> nonce = stackalloc byte[12];
        _raw.Decrypt(nonce, _ciphertext.AsSpan(0, Size), _ciphertext.AsSpan(Size), _output.AsSpan(0, Size), default);
    }

    [BenchmarkCategory("Decrypt"), Benchmark]
    public bool DecryptNoise()
    {
        _receive.Nonce = 0;
        return _receive.TryDecryptWithAd(default, _ciphertext, _output, out _);
    }
}
