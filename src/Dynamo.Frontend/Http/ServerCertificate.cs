using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Dynamo.Frontend.Http;

/// <summary>
/// The HTTPS certificate of the frontend, read from PEM files: the first certificate of the certificate
/// file is the server's (its private key from the key file), the others its chain, sent to clients as they are.
/// </summary>
/// <param name="Certificate">The server's certificate, with its private key.</param>
/// <param name="Chain">The intermediate certificates that followed it in the file (possibly none).</param>
internal sealed record ServerCertificate(X509Certificate2 Certificate, X509Certificate2Collection Chain) : IDisposable
{
    /// <summary>
    /// Reads both files; null when neither is given. Throws <see cref="ArgumentException"/> naming the flag
    /// (--tls-cert-file, --tls-key-file) when only one is given, a file is missing, or they do not load as a
    /// certificate and its key.
    /// </summary>
    public static ServerCertificate? Load(string? certificateFile, string? keyFile)
    {
        if (certificateFile is null && keyFile is null)
        {
            return null;
        }

        if (certificateFile is null || keyFile is null)
        {
            string missing = certificateFile is null ? "--tls-cert-file" : "--tls-key-file";
            throw new ArgumentException($"{missing}: required with {(certificateFile is null ? "--tls-key-file" : "--tls-cert-file")} (HTTPS needs both)", missing);
        }

        Require(certificateFile, "--tls-cert-file");
        Require(keyFile, "--tls-key-file");
        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"--tls-cert-file: '{certificateFile}' with --tls-key-file '{keyFile}' is not a PEM certificate and its private key: {e.Message}", "--tls-cert-file", e);
        }

        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPemFile(certificateFile);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            certificate.Dispose();
            throw new ArgumentException($"--tls-cert-file: '{certificateFile}': {e.Message}", "--tls-cert-file", e);
        }

        chain.RemoveAt(0);
        return new ServerCertificate(certificate, chain);
    }

    public void Dispose()
    {
        Certificate.Dispose();
        foreach (X509Certificate2 c in Chain)
        {
            c.Dispose();
        }
    }

    private static void Require(string path, string flag)
    {
        if (!File.Exists(path))
        {
            throw new ArgumentException($"{flag}: '{path}' does not exist", flag);
        }
    }
}
