using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Microsoft.Extensions.Logging;

namespace Dynamo.Components.Routing;

/// <summary>The router modes by name (<c>--router-mode</c>): the one place that turns a mode into an <see cref="IWorkerRouter"/>.</summary>
internal static class WorkerRouters
{
    /// <summary>
    /// A new router for the workers of <paramref name="endpoint"/>; <paramref name="kv"/> (its block size the
    /// workers') configures the kv mode. <see cref="ArgumentException"/> for an unknown mode.
    /// </summary>
    public static IWorkerRouter Create(string mode, DistributedRuntime runtime, EndpointAddress endpoint, KvRouterOptions kv, ILogger logger) => mode switch
    {
        RouterModes.RoundRobin => new RoundRobinWorkerRouter(),
        RouterModes.Random => new RandomWorkerRouter(),
        RouterModes.Kv => new KvWorkerRouter(runtime, endpoint, kv, logger),
        _ => throw new ArgumentException($"unknown router mode '{mode}' ({string.Join(", ", RouterModes.Names)})", nameof(mode)),
    };
}
