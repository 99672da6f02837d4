using Dynamo.Components.Workers;
using Dynamo.Llm.Engines;
using Dynamo.Runtime;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// A worker that a benchmark deploys: started by the composition root (the CLI starts its worker component
/// with the engine the bench asks for), so that this project needs neither the worker's wiring nor the
/// engines. The bench reads <see cref="Engine"/>'s stats, calls <see cref="Endpoint"/> and asks the frontend
/// for <see cref="Model"/>; disposing stops the worker.
/// </summary>
internal sealed record BenchWorker(IEngine Engine, EndpointAddress Endpoint, string Model, IAsyncDisposable Lifetime) : IAsyncDisposable
{
    /// <summary>The worker's remote prefills and KV transfers, when the bench that started it reads them (<c>bench disagg</c>).</summary>
    public WorkerDisaggregationStats? Disaggregation { get; init; }

    public ValueTask DisposeAsync() => Lifetime.DisposeAsync();
}
