using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;

namespace Dynamo.Runtime.Discovery;

/// <content>Credentials and TLS: the start's authentication, the certificate check, refusals named by the variable to fix.</content>
internal sealed partial class EtcdDiscovery
{
    /// <summary>
    /// With credentials: authenticates once (wrong ones fail here, named), then lets every call carry the token
    /// (dotnet-etcd's handler fetches it, caches it and fetches it again after etcd rejects it). If etcd's
    /// authentication is off, the credentials are not used, as etcd's own client does. Without credentials: reads
    /// one key, so that an etcd requiring authentication is reported here rather than at the first write (etcd
    /// grants leases without checking the user).
    /// </summary>
    private async Task CheckAuthenticationAsync(dotnet_etcd.EtcdClient client, DateTime deadline, CancellationToken cancellationToken)
    {
        EtcdSecurity security = _options.Security;
        if (!security.HasCredentials)
        {
            await client.GetAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("health"), CountOnly = true }, deadline: deadline, cancellationToken: cancellationToken).ConfigureAwait(false);
            return;
        }

        try
        {
            await client.AuthenticateAsync(new AuthenticateRequest { Name = security.Username, Password = security.Password }, deadline: deadline, cancellationToken: cancellationToken).ConfigureAwait(false);
            client.SetCredentials(security.Username!, security.Password!);
        }
        catch (RpcException e) when (EtcdRefusals.Classify(e) == EtcdRefusal.AuthenticationDisabled)
        {
            Log.AuthenticationOff(_logger, Address, EtcdSecurity.UsernameVariable);
        }
    }

    /// <summary>
    /// Whether etcd's certificate is trusted: by the system's CAs, or else by the ETCD_AUTH_CA certificates; and issued
    /// for one of the endpoints' hosts. The name is checked here, not by the TLS layer: the gRPC channel balances over
    /// the endpoints under one made-up authority, so the name TLS would compare with is none of them.
    /// </summary>
    private static bool IsTrusted(X509Certificate? certificate, SslPolicyErrors errors, X509Certificate2Collection trusted, string[] hosts)
    {
        if (certificate is null || (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
        {
            return false;
        }

        using X509Certificate2 leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
        {
            if (trusted.Count == 0)
            {
                return false;
            }

            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            if (!chain.Build(leaf))
            {
                return false;
            }
        }

        return hosts.Any(host => leaf.MatchesHostname(host));
    }

    /// <summary>The failure as a refusal the settings must fix, naming the variable (never a secret); null when it is none.</summary>
    private DiscoveryUnavailableException? Refused(Exception? cause)
    {
        string user = $"user '{_options.Security.Username}' ({EtcdSecurity.UsernameVariable})";
        string? message = EtcdRefusals.Classify(cause) switch
        {
            EtcdRefusal.CredentialsRequired => $"etcd at {Address} requires authentication: set {EtcdSecurity.UsernameVariable} and {EtcdSecurity.PasswordVariable}",
            EtcdRefusal.CredentialsRejected => $"etcd at {Address} refused the credentials of {EtcdSecurity.UsernameVariable}/{EtcdSecurity.PasswordVariable}: wrong user name or password for {user}",
            EtcdRefusal.PermissionDenied => $"etcd at {Address}: permission denied to {user}; grant its role read and write access to the keys (etcdctl role grant-permission)",
            EtcdRefusal.TokenInvalid => $"etcd at {Address} rejected the authentication token of {user} again after a new one was fetched",
            EtcdRefusal.TlsHandshake => $"etcd at {Address}: the TLS handshake failed ({TlsHint}): {Innermost(cause!).Message}",
            _ => null,
        };
        return message is null ? null : new DiscoveryUnavailableException(message, cause);
    }

    private string TlsHint => _options.Security.CaSource
        ?? $"the certificate is checked against the system's CAs; set {EtcdSecurity.CaVariable} to trust another CA";

    private static Exception Innermost(Exception e)
    {
        Exception inner = e;
        while ((inner is RpcException { Status.DebugException: { } debug } ? debug : inner.InnerException) is { } next)
        {
            inner = next;
        }

        return inner;
    }
}
