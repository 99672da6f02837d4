using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Dynamo.Runtime.Discovery;

/// <summary>
/// How a process proves who it is to etcd and checks the server: a user name and password (etcd's
/// authentication), and TLS (a CA to trust, optionally a client certificate). Read once from the environment
/// by <see cref="FromEnvironment"/> under the original's variable names; <see cref="ToString"/> never shows
/// the password.
/// </summary>
public sealed record EtcdSecurity
{
    /// <summary>No credentials; https endpoints are checked against the system's CAs.</summary>
    public static EtcdSecurity None { get; } = new();

    /// <summary>etcd user (with <see cref="PasswordVariable"/>).</summary>
    public const string UsernameVariable = "ETCD_AUTH_USERNAME";

    /// <summary>Its password.</summary>
    public const string PasswordVariable = "ETCD_AUTH_PASSWORD";

    /// <summary>The CA that signed etcd's certificate: a PEM file, or the PEM text itself.</summary>
    public const string CaVariable = "ETCD_AUTH_CA";

    /// <summary>A client certificate for etcd's <c>--client-cert-auth</c> (PEM file or text, with <see cref="ClientKeyVariable"/>).</summary>
    public const string ClientCertVariable = "ETCD_AUTH_CLIENT_CERT";

    /// <summary>The client certificate's private key (PEM file or text).</summary>
    public const string ClientKeyVariable = "ETCD_AUTH_CLIENT_KEY";

    public string? Username { get; init; }

    public string? Password { get; init; }

    /// <summary>PEM of the CA certificate(s) to trust (read from <see cref="CaVariable"/>).</summary>
    public string? CaPem { get; init; }

    /// <summary>Where <see cref="CaPem"/> came from, for messages (a path, or "ETCD_AUTH_CA").</summary>
    public string? CaSource { get; init; }

    public string? ClientCertPem { get; init; }

    public string? ClientKeyPem { get; init; }

    /// <summary>True when a user name (and its password) is given.</summary>
    public bool HasCredentials => Username is not null;

    /// <summary>True when TLS settings of our own are given (a CA or a client certificate).</summary>
    public bool HasTls => CaPem is not null || ClientCertPem is not null;

    /// <summary>
    /// Reads the ETCD_AUTH_* variables. The user name needs its password; the client certificate its key; a
    /// certificate variable holds a PEM file's path or the PEM text (the original reads the text). Each is
    /// read and parsed here, so that a wrong one is named at startup.
    /// </summary>
    /// <exception cref="ArgumentException">A variable is inconsistent, names a missing file or holds no PEM certificate; the message names it.</exception>
    public static EtcdSecurity FromEnvironment(Func<string, string?> getVariable)
    {
        ArgumentNullException.ThrowIfNull(getVariable);
        var env = new EnvironmentReader(getVariable);
        (string? user, string? password) = env.Pair(UsernameVariable, PasswordVariable, secondIsSecret: true);
        (string? cert, string? key) = env.Pair(ClientCertVariable, ClientKeyVariable);
        string? ca = env.Value(CaVariable);
        var security = new EtcdSecurity
        {
            Username = user,
            Password = password,
            CaPem = Pem(env, CaVariable),
            CaSource = ca is null ? null : IsPemText(ca) ? CaVariable : $"{CaVariable} {ca}",
            ClientCertPem = Pem(env, ClientCertVariable),
            ClientKeyPem = Pem(env, ClientKeyVariable),
        };
        security.Validate();
        return security;
    }

    /// <summary>Parses the certificates and the key; <see cref="ArgumentException"/> naming the variable of a bad one.</summary>
    public void Validate()
    {
        if ((Username is null) != (Password is null))
        {
            throw new ArgumentException($"{UsernameVariable} and {PasswordVariable} go together");
        }

        if (CaPem is not null && TrustedCertificates().Count == 0)
        {
            throw new ArgumentException($"{CaVariable}: no PEM certificate in {CaSource}");
        }

        if ((ClientCertPem is null) != (ClientKeyPem is null))
        {
            throw new ArgumentException($"{ClientCertVariable} and {ClientKeyVariable} go together: set both for a client certificate, or neither");
        }

        ClientCertificate()?.Dispose();
    }

    /// <summary>The certificates of <see cref="CaPem"/>.</summary>
    internal X509Certificate2Collection TrustedCertificates()
    {
        var certificates = new X509Certificate2Collection();
        if (CaPem is not null)
        {
            try
            {
                certificates.ImportFromPem(CaPem);
            }
            catch (CryptographicException e)
            {
                throw new ArgumentException($"{CaVariable}: {CaSource} holds no readable PEM certificate ({e.Message})");
            }
        }

        return certificates;
    }

    /// <summary>The client certificate with its key, or null.</summary>
    internal X509Certificate2? ClientCertificate()
    {
        if (ClientCertPem is null || ClientKeyPem is null)
        {
            return null;
        }

        try
        {
            // Exported and imported again: TLS on Linux wants the key with the certificate, not an ephemeral handle.
            using X509Certificate2 pem = X509Certificate2.CreateFromPem(ClientCertPem, ClientKeyPem);
            return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (CryptographicException e)
        {
            throw new ArgumentException($"{ClientCertVariable}/{ClientKeyVariable}: not a PEM certificate and its private key ({e.Message})");
        }
    }

    /// <summary>The user and whether a password and TLS files are set, never the password.</summary>
    public override string ToString() =>
        $"EtcdSecurity {{ user: {Username ?? "none"}{(Password is null ? "" : ", password ***")}, CA: {CaSource ?? "system"}, client certificate: {(ClientCertPem is null ? "none" : "set")} }}";

    private static bool IsPemText(string value) => value.Contains("-----BEGIN", StringComparison.Ordinal);

    /// <summary>The PEM text in the variable, or in the file it names.</summary>
    private static string? Pem(EnvironmentReader env, string variable) =>
        env.Value(variable) is { } value && IsPemText(value) ? value
        : env.ExistingFile(variable, "a PEM file, or the PEM text") is { } path ? File.ReadAllText(path) : null;
}
