using System;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Tasks;

namespace PeerLink.Benchmarks;

/// <summary>
/// What a user would pick instead of PeerLink, set up the way they would: plain TCP with NoDelay, and SslStream with
/// TLS 1.3 and mutual authentication with ECDSA P-256 certificates, each side pinning the other's certificate.
/// </summary>
internal static class Loopback
{
    public static readonly X509Certificate2 ServerCertificate = CreateCertificate("CN=peerlink-bench-server");
    public static readonly X509Certificate2 ClientCertificate = CreateCertificate("CN=peerlink-bench-client");

    public static Socket Listen()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(512);
        return listener;
    }

    /// <summary>A connected TCP pair: (client, server).</summary>
    public static async Task<(Socket Client, Socket Server)> ConnectAsync(Socket listener)
    {
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Task<Socket> accept = listener.AcceptAsync();
        await client.ConnectAsync(listener.LocalEndPoint!);
        Socket server = await accept;
        server.NoDelay = true;
        return (client, server);
    }

    /// <summary>A mutually authenticated TLS 1.3 pair over a fresh TCP pair: (client, server).</summary>
    public static async Task<(SslStream Client, SslStream Server)> ConnectTlsAsync(Socket listener)
    {
        (Socket clientSocket, Socket serverSocket) = await ConnectAsync(listener);
        var client = new SslStream(new NetworkStream(clientSocket, ownsSocket: true), leaveInnerStreamOpen: false);
        var server = new SslStream(new NetworkStream(serverSocket, ownsSocket: true), leaveInnerStreamOpen: false);
        Task serverSide = server.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
        {
            ServerCertificate = ServerCertificate,
            ClientCertificateRequired = true,
            EnabledSslProtocols = SslProtocols.Tls13,
            RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null && certificate.GetCertHashString() == ClientCertificate.GetCertHashString(),
        });
        Task clientSide = client.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "peerlink-bench-server",
            ClientCertificates = [ClientCertificate],
            EnabledSslProtocols = SslProtocols.Tls13,
            RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null && certificate.GetCertHashString() == ServerCertificate.GetCertHashString(),
        });
        await Task.WhenAll(serverSide, clientSide);
        return (client, server);
    }

    private static X509Certificate2 CreateCertificate(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        // Through PKCS#12, so that the private key is usable by the TLS stack on every platform.
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }
}
