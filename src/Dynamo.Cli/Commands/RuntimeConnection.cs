using System.CommandLine;
using System.Diagnostics;
using Dynamo.Runtime;
using Dynamo.Runtime.Discovery;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Cli.Commands;

/// <summary>Connecting a command to etcd and NATS (NATS_SERVER / ETCD_ENDPOINTS), with errors a user can act on.</summary>
internal static class RuntimeConnection
{
    /// <summary>The connection settings from NATS_SERVER and ETCD_ENDPOINTS (localhost when unset), read once at startup; a malformed value names its variable.</summary>
    public static RuntimeOptions FromEnvironment() => RuntimeOptions.FromEnvironment(defaultToLocalhost: true);

    /// <summary>Connects to etcd and NATS; one-line errors name the address.</summary>
    public static Task<DistributedRuntime> ConnectAsync(RuntimeOptions options, CancellationToken cancellationToken = default) =>
        ConnectAsync(options, waitForInfra: null, who: "dynamo", cancellationToken);

    /// <summary>
    /// Connects to etcd and NATS; with <paramref name="waitForInfra"/> (--wait-for-infra), one that does not answer yet
    /// (not started, as when a whole deployment starts at once) is tried again until the bound: one progress line when
    /// the wait starts and one every 5 s, then one line when connected, or the error naming the address and the bound.
    /// A refusal (credentials, TLS) is never waited for.
    /// </summary>
    public static async Task<DistributedRuntime> ConnectAsync(RuntimeOptions options, TimeSpan? waitForInfra, string who, CancellationToken cancellationToken = default)
    {
        long start = Stopwatch.GetTimestamp();
        TimeSpan nextProgress = TimeSpan.Zero;
        bool waited = false;
        while (true)
        {
            try
            {
                DistributedRuntime runtime = await DistributedRuntime.ConnectAsync(options, cancellationToken).ConfigureAwait(false);
                if (waited)
                {
                    Console.Error.WriteLine($"{who}: NATS and etcd answered after {Stopwatch.GetElapsedTime(start).TotalSeconds:0.0} s");
                }

                return runtime;
            }
            catch (Exception e) when (e is DiscoveryUnavailableException { IsUnreachable: true } or NatsUnavailableException { IsUnreachable: true } && waitForInfra is TimeSpan bound)
            {
                TimeSpan elapsed = Stopwatch.GetElapsedTime(start);
                if (elapsed >= bound)
                {
                    throw new CliUsageException($"{e.Message}; gave up after waiting {bound.TotalSeconds:0.#} s (--wait-for-infra {bound.TotalSeconds:0.#})");
                }

                if (elapsed >= nextProgress)
                {
                    Console.Error.WriteLine($"{who}: waiting for NATS and etcd ({elapsed.TotalSeconds:0} of {bound.TotalSeconds:0.#} s, --wait-for-infra): {e.Message}");
                    nextProgress = elapsed + ProgressInterval;
                }

                waited = true;
                await Task.Delay(RetryInterval, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is DiscoveryUnavailableException or NatsUnavailableException)
            {
                throw new CliUsageException(e.Message);
            }
        }
    }

    /// <summary>How long `--wait-for-infra` without a value waits.</summary>
    public static readonly TimeSpan DefaultInfraWait = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan RetryInterval = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(5);

    /// <summary>Adds <c>--wait-for-infra [SECONDS]</c> to <paramref name="command"/>.</summary>
    public static Option<double?> AddWaitForInfra(Command command)
    {
        var option = new Option<double?>("--wait-for-infra")
        {
            Description = $"Wait up to SECONDS (without a value: {DefaultInfraWait.TotalSeconds:0}) for NATS and etcd to answer, instead of exiting at once",
            Arity = ArgumentArity.ZeroOrOne,
            HelpName = "SECONDS",
        };
        command.Options.Add(option);
        return option;
    }

    /// <summary>The bound of <c>--wait-for-infra</c>: null when not given, the default when given without a value.</summary>
    public static TimeSpan? ReadWaitForInfra(ParseResult parse, Option<double?> option) =>
        parse.GetResult(option) is null ? null
        : parse.GetValue(option) is not double seconds ? DefaultInfraWait
        : seconds is > 0 and <= 86400 ? TimeSpan.FromSeconds(seconds)
        : throw new CliUsageException($"--wait-for-infra: {seconds} s is outside 0..86400 s");

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
