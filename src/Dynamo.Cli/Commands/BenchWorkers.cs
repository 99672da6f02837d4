using Dynamo.Cli.Components;
using Dynamo.Components.KvTransfer;
using Dynamo.Components.ModelCards;
using Dynamo.Components.Workers;
using Dynamo.Llm.ModelCards;
using Dynamo.Load.Benchmarks;
using Dynamo.Mocker;
using Dynamo.Runtime;

namespace Dynamo.Cli.Commands;

/// <summary>The workers the bench commands deploy: this CLI's worker component, handed to Dynamo.Load as a <see cref="BenchWorker"/>.</summary>
internal static class BenchWorkers
{
    /// <summary>Starts a worker with <paramref name="settings"/> on the runtime it is given (its startup lines go nowhere).</summary>
    public static Func<DistributedRuntime, CancellationToken, Task<BenchWorker>> Starting(WorkerSettings settings) =>
        async (runtime, cancellationToken) =>
        {
            WorkerComponent worker = await WorkerComponent.StartAsync(runtime, settings, TextWriter.Null, cancellationToken);
            return new BenchWorker(worker.Engine, EndpointAddress.Parse(worker.Card.Endpoint), worker.Card.Name, worker);
        };

    /// <summary>
    /// Mocker workers for <c>bench disagg</c>, as <see cref="WorkerComponent"/> starts a mocker (serving the tokenizer
    /// at <paramref name="tokenizer"/>, its <paramref name="vocab"/> for the synthetic tokens; a KV transfer port on every worker but prefill workers;
    /// prefill workers on <c>{ns}.prefill.generate</c>) with what the worker component cannot be given: the
    /// <paramref name="link"/> that the mocker's data-less KV payloads are taken to cross
    /// (<see cref="EngineWorkerOptions.SimulatedLink"/>), and the worker's disaggregation counters for the report.
    /// The function's flag says whether to start a prefill worker.
    /// </summary>
    public static Func<DistributedRuntime, bool, CancellationToken, Task<BenchWorker>> StartingMockers(WorkerSettings settings, SimulatedKvLink link, string tokenizer, int vocab) =>
        async (runtime, prefill, cancellationToken) =>
        {
            EndpointAddress address = prefill ? new EndpointAddress(settings.Address.Namespace, "prefill", settings.Address.Endpoint) : settings.Address;
            var engine = new MockerEngine(settings.MockerFor(vocab, runtime.InstanceId).Validate());
            KvTransferServer? transfer = prefill ? null : KvTransferServer.Start(KvTransferServerOptions.Default with { BindAddress = "127.0.0.1" });
            var owned = new List<IAsyncDisposable> { engine };
            if (transfer is not null)
            {
                owned.Add(transfer);
            }

            try
            {
                EngineWorker worker = await EngineWorker.StartAsync(runtime, engine, address, EngineWorkerOptions.Default with { KvTransfer = transfer, SimulatedLink = link }, cancellationToken: cancellationToken);
                owned.Add(worker);
                var source = new ModelCardSource(settings.Name, "gguf", tokenizer, engine.ContextLength, engine.BlockSize, vocab);
                await ModelCardStore.PublishAsync(runtime, address, source, prefill ? "prefill" : "aggregated", cancellationToken);
                return new BenchWorker(engine, address, settings.Name, new Lifetime(owned)) { Disaggregation = worker.Disaggregation };
            }
            catch
            {
                await new Lifetime(owned).DisposeAsync();
                throw;
            }
        };

    /// <summary>Stops what a worker started, last first (the worker leaves before its engine and transfer port stop).</summary>
    private sealed class Lifetime(List<IAsyncDisposable> owned) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            for (int i = owned.Count - 1; i >= 0; i--)
            {
                await owned[i].DisposeAsync();
            }
        }
    }
}
