using Dynamo.Runtime;

namespace Dynamo.Cli.Commands;

/// <summary>Connecting a command to etcd and NATS (NATS_SERVER / ETCD_ENDPOINTS), with errors a user can act on.</summary>
internal static class RuntimeConnection
{
    /// <summary>The connection settings from NATS_SERVER and ETCD_ENDPOINTS (localhost when unset), read once at startup; a malformed value names its variable.</summary>
    public static RuntimeOptions FromEnvironment() => RuntimeOptions.FromEnvironment(defaultToLocalhost: true);

    /// <summary>Connects to etcd and NATS; one-line errors name the address.</summary>
    public static async Task<DistributedRuntime> ConnectAsync(RuntimeOptions options, CancellationToken cancellationToken = default)
    {
        try
        {
            return await DistributedRuntime.ConnectAsync(options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is Runtime.Discovery.DiscoveryUnavailableException or Runtime.RequestPlane.NatsUnavailableException)
        {
            throw new CliUsageException(e.Message);
        }
    }

    // Kept alive for the life of the process: a collected registration stops handling the signal.
    private static readonly CancellationTokenSource s_forced = new();
    private static System.Runtime.InteropServices.PosixSignalRegistration? s_sigterm;

    /// <summary>
    /// A token cancelled by Ctrl-C or SIGTERM, or with <paramref name="cancellationToken"/> (the invocation's):
    /// the process then shuts down cleanly (deregisters, revokes its lease) instead of being killed.
    /// </summary>
    public static CancellationTokenSource ShutdownSignal(CancellationToken cancellationToken = default)
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            Signal(cts);
        };
        s_sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            Signal(cts);
        });
        return cts;
    }

    /// <summary>Cancelled by a second Ctrl-C or SIGTERM: a drain in progress stops waiting.</summary>
    public static CancellationToken ForcedShutdown => s_forced.Token;

    private static void Signal(CancellationTokenSource shutdown)
    {
        if (shutdown.IsCancellationRequested)
        {
            s_forced.Cancel();
        }
        else
        {
            shutdown.Cancel();
        }
    }
}
