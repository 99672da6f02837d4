using NATS.Client.Core;
using NATS.NKeys;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// How a process proves who it is to NATS and checks the server: one kind of credentials (user and
/// password, a token, or an NKey seed) and TLS (a CA file to trust, optionally a client certificate).
/// Read once from the environment by <see cref="FromEnvironment"/> under the original's variable names;
/// <see cref="ToString"/> never shows a secret.
/// </summary>
public sealed record NatsSecurity
{
    /// <summary>No credentials, TLS only if the server asks for it (then verified against the system's CAs).</summary>
    public static NatsSecurity None { get; } = new();

    /// <summary>User name (with <see cref="PasswordVariable"/>).</summary>
    public const string UsernameVariable = "NATS_AUTH_USERNAME";

    /// <summary>Password (with <see cref="UsernameVariable"/>).</summary>
    public const string PasswordVariable = "NATS_AUTH_PASSWORD";

    /// <summary>A token (the server's <c>authorization { token: ... }</c>).</summary>
    public const string TokenVariable = "NATS_AUTH_TOKEN";

    /// <summary>An NKey seed (<c>SU...</c>); the server lists its public key.</summary>
    public const string NKeyVariable = "NATS_AUTH_NKEY";

    /// <summary>A JWT credentials file (operator mode): refused here, see <see cref="FromEnvironment"/>.</summary>
    public const string CredentialsFileVariable = "NATS_AUTH_CREDENTIALS_FILE";

    /// <summary>PEM file of the CA that signed the server's certificate.</summary>
    public const string CaFileVariable = "NATS_TLS_CA_CERT_PATH";

    /// <summary>PEM client certificate for mutual TLS (with <see cref="ClientKeyFileVariable"/>).</summary>
    public const string ClientCertFileVariable = "NATS_TLS_CLIENT_CERT_PATH";

    /// <summary>PEM private key of the client certificate.</summary>
    public const string ClientKeyFileVariable = "NATS_TLS_CLIENT_KEY_PATH";

    public string? Username { get; init; }

    public string? Password { get; init; }

    public string? Token { get; init; }

    /// <summary>An NKey user seed; the client signs the server's nonce with it.</summary>
    public string? NKeySeed { get; init; }

    /// <summary>Where the credentials came from, for messages: the variables' names (never their values).</summary>
    public string? CredentialsSource { get; init; }

    /// <summary>CA certificate(s) to trust, PEM; setting it requires TLS.</summary>
    public string? CaFile { get; init; }

    public string? ClientCertFile { get; init; }

    public string? ClientKeyFile { get; init; }

    /// <summary>True when some credentials are given.</summary>
    public bool HasCredentials => Username is not null || Token is not null || NKeySeed is not null;

    /// <summary>
    /// Reads the NATS_AUTH_* and NATS_TLS_* variables, and the <c>user:password@</c> (or <c>token@</c>) of
    /// <paramref name="serverUserInfo"/> (taken out of NATS_SERVER). Exactly one kind of credentials may be
    /// given; a user name needs its password; a client certificate needs its key; files must exist.
    /// NATS_AUTH_CREDENTIALS_FILE is refused: its operator-mode JWT setup is not supported or tested here.
    /// </summary>
    /// <exception cref="ArgumentException">A variable is inconsistent or names a missing file; the message names it.</exception>
    public static NatsSecurity FromEnvironment(Func<string, string?> getVariable, string? serverUserInfo = null)
    {
        ArgumentNullException.ThrowIfNull(getVariable);
        var env = new EnvironmentReader(getVariable);
        if (env.Value(CredentialsFileVariable) is not null)
        {
            throw new ArgumentException($"{CredentialsFileVariable}: JWT credentials files are not supported here; use {UsernameVariable}/{PasswordVariable}, {TokenVariable} or {NKeyVariable}");
        }

        (string? user, string? password) = env.Pair(UsernameVariable, PasswordVariable, secondIsSecret: true);
        string? token = env.Secret(TokenVariable);
        string? seed = env.Value(NKeyVariable);
        var kinds = new List<string>();
        if (user is not null)
        {
            kinds.Add($"{UsernameVariable}/{PasswordVariable}");
        }

        if (token is not null)
        {
            kinds.Add(TokenVariable);
        }

        if (seed is not null)
        {
            kinds.Add(NKeyVariable);
        }

        if (serverUserInfo is not null)
        {
            kinds.Add($"the user:password@ in {RuntimeOptions.NatsServerVariable}");
        }

        if (kinds.Count > 1)
        {
            throw new ArgumentException($"NATS credentials are given more than once ({string.Join(", ", kinds)}): give one kind");
        }

        if (seed is not null)
        {
            PublicKeyOf(seed);
        }

        env.Pair(ClientCertFileVariable, ClientKeyFileVariable);
        NatsSecurity security = new()
        {
            Username = user,
            Password = password,
            Token = token,
            NKeySeed = seed,
            CredentialsSource = kinds.Count == 1 ? kinds[0] : null,
            CaFile = env.ExistingFile(CaFileVariable),
            ClientCertFile = env.ExistingFile(ClientCertFileVariable),
            ClientKeyFile = env.ExistingFile(ClientKeyFileVariable),
        };
        return serverUserInfo is null ? security : security.WithUserInfo(serverUserInfo);
    }

    /// <summary>These settings with the credentials of a URL's user info: <c>user:password</c>, or a lone token.</summary>
    internal NatsSecurity WithUserInfo(string userInfo)
    {
        int colon = userInfo.IndexOf(':', StringComparison.Ordinal);
        string source = $"the user info in {RuntimeOptions.NatsServerVariable}";
        return colon < 0
            ? this with { Token = Uri.UnescapeDataString(userInfo), CredentialsSource = source }
            : this with { Username = Uri.UnescapeDataString(userInfo[..colon]), Password = Uri.UnescapeDataString(userInfo[(colon + 1)..]), CredentialsSource = source };
    }

    /// <summary>The client's authentication options.</summary>
    internal NatsAuthOpts ToAuthOpts() => this switch
    {
        { Username: { } user } => NatsAuthOpts.Default with { Username = user, Password = Password },
        { Token: { } token } => NatsAuthOpts.Default with { Token = token },
        { NKeySeed: { } seed } => NatsAuthOpts.Default with { Seed = seed, NKey = PublicKeyOf(seed) },
        _ => NatsAuthOpts.Default,
    };

    /// <summary>The client's TLS options: with a CA or a client certificate, TLS is required (nats:// upgrades in-band).</summary>
    internal NatsTlsOpts ToTlsOpts() => CaFile is null && ClientCertFile is null
        ? NatsTlsOpts.Default
        : NatsTlsOpts.Default with { CaFile = CaFile, CertFile = ClientCertFile, KeyFile = ClientKeyFile, Mode = TlsMode.Require };

    /// <summary>Which variable to fix when the server refuses the connection's credentials (or wants some).</summary>
    internal string CredentialsHint => CredentialsSource
        ?? $"none given; set {UsernameVariable} and {PasswordVariable}, {TokenVariable}, {NKeyVariable}, or user:password@ in {RuntimeOptions.NatsServerVariable}";

    /// <summary>Which variable to fix when the TLS handshake fails.</summary>
    internal string TlsHint => CaFile is null ? $"the server's certificate is checked against the system's CAs; set {CaFileVariable} to trust another CA" : CaFileVariable;

    /// <summary>The kind of credentials and the TLS files, never a secret.</summary>
    public override string ToString()
    {
        string credentials = Username is not null ? $"user {Username}, password ***" : Token is not null ? "token ***" : NKeySeed is not null ? "nkey seed ***" : "none";
        return $"NatsSecurity {{ credentials: {credentials}, CA: {CaFile ?? "system"}, client certificate: {ClientCertFile ?? "none"} }}";
    }

    private static string PublicKeyOf(string seed)
    {
        try
        {
            using KeyPair pair = KeyPair.FromSeed(seed);
            return pair.GetPublicKey();
        }
        catch (Exception e) when (e is NKeysException or ArgumentException or FormatException or IndexOutOfRangeException)
        {
            throw new ArgumentException($"{NKeyVariable} is not an NKey seed (SU...)");
        }
    }
}
