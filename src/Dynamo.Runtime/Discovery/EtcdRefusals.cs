using System.Security.Authentication;
using Grpc.Core;

namespace Dynamo.Runtime.Discovery;

/// <summary>
/// Classifies etcd's failures. etcd's gRPC API carries the kind of an authentication error only in the status
/// description (its own Go client compares those strings, <c>rpctypes.Error</c>); the descriptions matched here are
/// etcd's published error values, stable across its v3 releases. A failure of the token fetch that dotnet-etcd's
/// handler makes before a call reaches us as the call's status <c>Internal</c> with etcd's error as its debug exception.
/// </summary>
internal static class EtcdRefusals
{
    public static EtcdRefusal Classify(Exception? e)
    {
        for (Exception? x = e; x is not null; x = x is RpcException { Status.DebugException: { } debug } ? debug : x.InnerException)
        {
            if (x is AuthenticationException)
            {
                return EtcdRefusal.TlsHandshake;
            }

            if (x is RpcException rpc && Of(rpc.StatusCode, rpc.Status.Detail) is var refusal and not EtcdRefusal.None)
            {
                return refusal;
            }
        }

        return EtcdRefusal.None;
    }

    private static EtcdRefusal Of(StatusCode code, string detail) => code switch
    {
        StatusCode.InvalidArgument when detail.Contains("user name is empty", StringComparison.Ordinal) => EtcdRefusal.CredentialsRequired,
        StatusCode.InvalidArgument when detail.Contains("authentication failed", StringComparison.Ordinal) => EtcdRefusal.CredentialsRejected,
        StatusCode.PermissionDenied => EtcdRefusal.PermissionDenied,
        StatusCode.Unauthenticated => EtcdRefusal.TokenInvalid,
        StatusCode.FailedPrecondition when detail.Contains("authentication is not enabled", StringComparison.Ordinal) => EtcdRefusal.AuthenticationDisabled,
        _ => EtcdRefusal.None,
    };
}
