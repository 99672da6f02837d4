using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>Opens the one NATS connection a process shares between its request and event planes.</summary>
internal static class NatsConnectionFactory
{
    /// <summary>
    /// Connects to <see cref="NatsPlaneOptions.Url"/>. After this first connection the client reconnects by
    /// itself forever (subscriptions are restored); the first one is not retried, so a wrong address fails
    /// fast: within <see cref="NatsPlaneOptions.ConnectTimeout"/> for all seed URLs together.
    /// </summary>
    /// <exception cref="NatsUnavailableException">No server answered in time.</exception>
    /// <exception cref="ArgumentException">The options are invalid (the message names the setting).</exception>
    public static async Task<NatsConnection> ConnectAsync(NatsPlaneOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        (NatsOpts opts, NatsSecurity security) = options.Resolve();
        var connection = new NatsConnection(opts);
        try
        {
            await connection.ConnectAsync().AsTask().WaitAsync(options.ConnectTimeout, cancellationToken).ConfigureAwait(false);
            return connection;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw Failure(e, opts.Url, security, options.ConnectTimeout);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// One line saying what to fix: the credentials when the server refused them (or wanted some), the CA when the
    /// TLS handshake failed, else the address. <paramref name="url"/> carries no user info (see
    /// <see cref="NatsPlaneOptions.SplitUserInfo"/>), and no secret is ever part of the message.
    /// </summary>
    private static NatsUnavailableException Failure(Exception e, string url, NatsSecurity security, TimeSpan connectTimeout)
    {
        if (Find<NatsServerException>(e) is { IsAuthError: true } refused)
        {
            return new NatsUnavailableException(security.HasCredentials
                ? $"NATS at {url} refused the credentials ({security.CredentialsHint}): {refused.Error}"
                : $"NATS at {url} requires credentials ({security.CredentialsHint}): {refused.Error}", e);
        }

        if (Find<System.Security.Authentication.AuthenticationException>(e) is { } tls)
        {
            return new NatsUnavailableException($"NATS at {url}: the TLS handshake failed ({security.TlsHint}): {tls.Message}", e);
        }

        string why = e is TimeoutException ? $"no answer within {connectTimeout.TotalSeconds:0.###} s" : Describe(e);
        return new NatsUnavailableException($"NATS at {url} is unreachable (NATS_SERVER): {why}", e) { IsUnreachable = true };
    }

    private static T? Find<T>(Exception e)
        where T : Exception
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is T found)
            {
                return found;
            }
        }

        return null;
    }

    private static string Describe(Exception e)
    {
        // NatsException wraps the socket error; the innermost message says "Connection refused" and the like.
        Exception inner = e;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        return ReferenceEquals(inner, e) ? e.Message : $"{e.Message} ({inner.Message})";
    }
}
