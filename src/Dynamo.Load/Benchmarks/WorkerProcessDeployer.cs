using System.Globalization;
using System.Text.RegularExpressions;
using Dynamo.Llm.Disaggregation;
using Dynamo.Runtime;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// The workers of each deployment as <c>dynamo worker</c> processes on NATS and etcd (<see cref="LocalServers"/>),
/// in a namespace of their own: every worker its own process, so its own compute threads (the built-in engine's
/// thread count is process-wide). Each is started as <paramref name="dynamoCommand"/> <c>worker</c>
/// <paramref name="workerArgs"/> with its served name, namespace and a status port; prefill workers with
/// <c>--is-prefill-worker</c>, decode workers with the disaggregation settings as flags (they write them to etcd).
/// The counters are read from each worker's <c>/metrics</c>. Stopping a deployment sends each worker SIGTERM and
/// deletes the settings it wrote.
/// </summary>
internal sealed partial class WorkerProcessDeployer(IReadOnlyList<string> dynamoCommand, IReadOnlyList<string> workerArgs, string model, LocalServers servers,
    DisaggregationSettings settings, string description, TextWriter log) : IDisaggDeployer
{
    /// <summary>How long a worker may take to load its model, warm its kernels up and register.</summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(5);

    public string Description => description;

    public async Task<DisaggWorkers> StartAsync(DeploymentShape shape, CancellationToken cancellationToken = default)
    {
        string ns = $"bench-disagg-{Guid.NewGuid():N}"[..24];
        var owned = new List<IAsyncDisposable>();
        try
        {
            var children = new List<ChildProcess>();
            for (int i = 0; i < shape.Total; i++)
            {
                bool prefill = i < shape.PrefillWorkers;
                string name = prefill ? $"prefill worker {i + 1}" : $"{(shape.IsDisaggregated ? "decode" : "aggregated")} worker {i - shape.PrefillWorkers + 1}";
                string[] role = prefill ? ["--is-prefill-worker"]
                    : shape.IsDisaggregated ? ["--conditional-disagg", settings.ConditionalDisagg ? "true" : "false", "--max-local-prefill-length", Invariant($"{settings.MaxLocalPrefillLength}"), "--max-prefill-queue-size", Invariant($"{settings.MaxPrefillQueueSize}")]
                    : [];
                ChildProcess child = ChildProcess.Start(name, dynamoCommand[0],
                    [.. dynamoCommand.Skip(1), "worker", .. workerArgs, "--served-model-name", model, "--namespace", ns, "--system-port", "0", .. role], servers.Environment);
                owned.Add(child);
                children.Add(child);
            }

            var ports = new List<int>();
            foreach (ChildProcess child in children)
            {
                Match status = await child.WaitForLineAsync(StatusPort(), StartTimeout, cancellationToken).ConfigureAwait(false);
                ports.Add(int.Parse(status.Groups["port"].Value, CultureInfo.InvariantCulture));
                log.WriteLine($"bench disagg: {child.Name} serving (pid {child.Id}, /metrics on port {ports[^1]})");
            }

            DistributedRuntime runtime = await DistributedRuntime.ConnectAsync(
                RuntimeOptions.FromEnvironment(defaultToLocalhost: true, name => servers.Environment.GetValueOrDefault(name)), cancellationToken).ConfigureAwait(false);
            owned.Add(runtime);
            if (shape.IsDisaggregated)
            {
                owned.Add(new Cleanup(() => runtime.Discovery.DeleteAsync(DisaggregationSettings.KeyFor(ns, model))));
            }

            var http = new HttpClient();
            owned.Add(new Cleanup(() =>
            {
                http.Dispose();
                return Task.CompletedTask;
            }));
            return new DisaggWorkers(runtime, ns, model, async ct =>
            {
                string[] texts = await Task.WhenAll(ports.Select(p => http.GetStringAsync(Invariant($"http://127.0.0.1:{p}/metrics"), ct))).ConfigureAwait(false);
                return DisaggCounters.OfMetrics(texts);
            }, owned);
        }
        catch
        {
            for (int i = owned.Count - 1; i >= 0; i--)
            {
                await owned[i].DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    [GeneratedRegex(@"worker: /metrics, /health and /live on \S+:(?<port>\d+)")]
    private static partial Regex StatusPort();

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    /// <summary>Something to do when the deployment stops.</summary>
    private sealed class Cleanup(Func<Task> action) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await action().ConfigureAwait(false);
    }
}
