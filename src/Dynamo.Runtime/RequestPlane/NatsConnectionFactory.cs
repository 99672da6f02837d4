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
        NatsOpts opts = options.ToNatsOpts();
        var connection = new NatsConnection(opts);
        try
        {
            await connection.ConnectAsync().AsTask().WaitAsync(options.ConnectTimeout, cancellationToken).ConfigureAwait(false);
            return connection;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            string why = e is TimeoutException ? $"no answer within {options.ConnectTimeout.TotalSeconds:0.###} s" : Describe(e);
            throw new NatsUnavailableException($"NATS at {opts.Url} is unreachable (NATS_SERVER): {why}", e);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
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
