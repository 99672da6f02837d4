using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Dynamo.Tests.Frontend;

/// <summary>A self-signed certificate for 127.0.0.1 and localhost, written to PEM files in <paramref name="Directory"/>, deleted on dispose.</summary>
internal sealed record TempCertificate(X509Certificate2 Certificate, string Directory) : IDisposable
{
    public string CertificateFile => Path.Combine(Directory, "cert.pem");

    public string KeyFile => Path.Combine(Directory, "key.pem");

    public static TempCertificate Create()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=dynamo-test", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        string directory = Path.Combine(Path.GetTempPath(), $"dynamo-tls-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(directory);
        var temp = new TempCertificate(X509CertificateLoader.LoadCertificate(certificate.RawData), directory);
        File.WriteAllText(temp.CertificateFile, certificate.ExportCertificatePem());
        File.WriteAllText(temp.KeyFile, key.ExportPkcs8PrivateKeyPem());
        return temp;
    }

    /// <summary>A client for <paramref name="baseAddress"/> that trusts this certificate (and no other).</summary>
    public HttpClient TrustingClient(Uri baseAddress)
    {
        var handler = new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, certificate, chain, _) =>
            {
                chain!.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(Certificate);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(certificate!);
            },
        };
        return new HttpClient(handler, disposeHandler: true) { BaseAddress = baseAddress };
    }

    public void Dispose()
    {
        Certificate.Dispose();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}
