using Dynamo.Components.Registry;
using Dynamo.Components.Workers;
using Dynamo.Llm.Disaggregation;
using Dynamo.Runtime;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// The workers of each deployment in this process, on a fresh <see cref="InProcessCluster"/> (in-process discovery
/// and request plane; the KV still moves over loopback TCP), each started by the composition root
/// (<paramref name="startWorker"/>: a runtime, whether it is a prefill worker) as a <see cref="BenchWorker"/> whose
/// <see cref="BenchWorker.Disaggregation"/> counters the bench reads. For the disaggregated deployment the
/// <paramref name="settings"/> are written to the cluster's discovery store before the frontend starts. Cheap
/// workers only (mockers): they share this process's cores and threads.
/// </summary>
internal sealed class InProcessDeployer(Func<DistributedRuntime, bool, CancellationToken, Task<BenchWorker>> startWorker, DisaggregationSettings settings, string description) : IDisaggDeployer
{
    public string Description => description;

    public async Task<DisaggWorkers> StartAsync(DeploymentShape shape, CancellationToken cancellationToken = default)
    {
        var cluster = new InProcessCluster();
        var owned = new List<IAsyncDisposable> { cluster };
        try
        {
            var workers = new List<BenchWorker>();
            for (int i = 0; i < shape.Total; i++)
            {
                DistributedRuntime runtime = await cluster.ConnectAsync(cancellationToken).ConfigureAwait(false);
                owned.Add(runtime);
                BenchWorker worker = await startWorker(runtime, i < shape.PrefillWorkers, cancellationToken).ConfigureAwait(false);
                owned.Add(worker);
                workers.Add(worker);
            }

            DistributedRuntime frontend = await cluster.ConnectAsync(cancellationToken).ConfigureAwait(false);
            owned.Add(frontend);
            BenchWorker taker = workers[^1];
            if (shape.IsDisaggregated)
            {
                await DisaggregationSettingsStore.PutAsync(frontend.Discovery, taker.Endpoint.Namespace, taker.Model, settings, cancellationToken).ConfigureAwait(false);
            }

            WorkerDisaggregationStats[] stats = [.. workers.Select(w => w.Disaggregation).OfType<WorkerDisaggregationStats>()];
            return new DisaggWorkers(frontend, taker.Endpoint.Namespace, taker.Model, _ => Task.FromResult(DisaggCounters.Of(stats)), owned);
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
}
