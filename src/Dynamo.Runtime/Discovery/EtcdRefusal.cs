namespace Dynamo.Runtime.Discovery;

/// <summary>Why etcd refused a call, when the fix is in the process's credentials or TLS settings.</summary>
internal enum EtcdRefusal
{
    /// <summary>Not a refusal of ours to fix (unreachable, or another error).</summary>
    None,

    /// <summary>Authentication is enabled and the call carried no user ("user name is empty").</summary>
    CredentialsRequired,

    /// <summary>The user name or password is wrong.</summary>
    CredentialsRejected,

    /// <summary>The user may not do this (its roles lack the permission).</summary>
    PermissionDenied,

    /// <summary>The token was unknown or expired (etcd restarted, or the token's TTL passed): authenticate again.</summary>
    TokenInvalid,

    /// <summary>Credentials were given but etcd's authentication is off.</summary>
    AuthenticationDisabled,

    /// <summary>The TLS handshake failed: the server's certificate is not trusted, or it wanted a client certificate.</summary>
    TlsHandshake,
}
