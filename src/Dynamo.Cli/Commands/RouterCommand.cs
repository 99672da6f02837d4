using System.CommandLine;
using Dynamo.Components.Routing;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Trace;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo router</c>: the KV router as its own component, shared by every frontend of the namespace
/// started with <c>--router-mode kv</c> (they use it whenever it is registered, else route by
/// themselves). Follows the workers of namespace.component.endpoint over etcd and NATS.
/// </summary>
internal static class RouterCommand
{
    public static Command Create()
    {
        var ns = new Option<string>("--namespace") { Description = "Runtime namespace", DefaultValueFactory = _ => "dynamo" };
        var component = new Option<string>("--component") { Description = "The workers' component", DefaultValueFactory = _ => "backend" };
        var endpoint = new Option<string>("--endpoint") { Description = "The workers' endpoint", DefaultValueFactory = _ => "generate" };
        var blockSize = new Option<int>("--block-size") { Description = "The workers' KV block size", DefaultValueFactory = _ => KvRouterOptions.Default.BlockSize };
        var drainTimeout = new Option<double>("--drain-timeout") { Description = "Seconds route streams in flight may take to end on SIGTERM before the rest are closed (their frontends route by themselves)", DefaultValueFactory = _ => DefaultDrainTimeout.TotalSeconds };
        var leaseTtl = new Option<int>("--lease-ttl") { Description = "Seconds a dead router replica stays in discovery at most (the frontends and the other replicas see it leave then)", DefaultValueFactory = _ => 10 };
        var heartbeat = new Option<double>("--router-replica-heartbeat") { Description = "Seconds between a replica's heartbeats to the other replicas (its live decisions' count and digest: a replica that lost some of another's charge events resyncs them)", DefaultValueFactory = _ => KvRouterOptions.Default.ReplicaHeartbeat.TotalSeconds };
        var peerChargeTtl = new Option<double>("--router-peer-charge-ttl") { Description = "Seconds another replica's charge is held without its release or a heartbeat of that replica confirming it; then released", DefaultValueFactory = _ => KvRouterOptions.Default.PeerChargeTtl.TotalSeconds };
        var command = new Command("router", "The KV-aware router as a component that several frontends share; run several for one endpoint and they share their view (NATS_SERVER, ETCD_ENDPOINTS)") { ns, component, endpoint, blockSize, drainTimeout, leaseTtl, heartbeat, peerChargeTtl };
        KvRouterFlags kv = KvRouterFlags.AddTo(command);
        TracingFlags tracing = TracingFlags.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var workers = new EndpointAddress(parse.GetValue(ns)!, parse.GetValue(component)!, parse.GetValue(endpoint)!);
            KvRouterOptions options = (kv.Read(parse) with
            {
                BlockSize = parse.GetValue(blockSize),
                ReplicaHeartbeat = FrontendFlags.Seconds(parse.GetValue(heartbeat)),
                PeerChargeTtl = FrontendFlags.Seconds(parse.GetValue(peerChargeTtl)),
            }).Validate();
            TimeSpan drain = FrontendFlags.Seconds(parse.GetValue(drainTimeout));
            if (drain < TimeSpan.Zero || drain > TimeSpan.FromHours(1))
            {
                throw new ArgumentException($"--drain-timeout: {drain.TotalSeconds} s is outside 0..3600 s");
            }

            int ttl = parse.GetValue(leaseTtl);
            if (ttl < 1)
            {
                throw new CliUsageException($"--lease-ttl: {ttl} must be at least 1 second");
            }

            return RunAsync(workers, options, drain, RuntimeConnection.FromEnvironment() with { LeaseTtl = TimeSpan.FromSeconds(ttl) }, tracing.Read(parse, "dynamo-router"), cancellationToken);
        });
        return command;
    }

    private static async Task<int> RunAsync(EndpointAddress workers, KvRouterOptions options, TimeSpan drainTimeout, RuntimeOptions runtimeOptions, TracingOptions tracing, CancellationToken cancellationToken)
    {
        using TracerProvider? tracer = CliTracing.Start(tracing, Console.Error, "router");
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(runtimeOptions, shutdown.Token);
        using ILoggerFactory loggers = CliLogging.Create(json: false);
        await using RouterServer server = await RouterServer.StartAsync(runtime, workers, options, loggers.CreateLogger("Dynamo.Router"), shutdown.Token);
        Console.Error.WriteLine($"router: routing {workers} on {RouterServer.AddressFor(workers)} as instance {EndpointAddress.FormatId(runtime.InstanceId)} ({runtime.Mode}: {runtime.Discovery.Address})");
        Console.Error.WriteLine($"router: predicts the workers' caches from {KvRouterFlags.CacheSource(options)}");
        try
        {
            await Task.Delay(Timeout.Infinite, shutdown.Token);
        }
        catch (OperationCanceledException)
        {
        }

        Console.Error.WriteLine($"router: draining: frontends route elsewhere; {server.InFlightRequests} route streams in flight get up to {drainTimeout.TotalSeconds:0.#} s (a second signal stops at once)");
        try
        {
            long left = await server.DrainAsync(drainTimeout, RuntimeConnection.ForcedShutdown);
            Console.Error.WriteLine(left == 0 ? "router: drained; shutting down" : $"router: {left} route streams still open are closed (their frontends route by themselves)");
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("router: stopping at once (second signal)");
        }

        return 0;
    }

    /// <summary>How long route streams in flight may take to end on SIGTERM, unless --drain-timeout says otherwise.</summary>
    private static readonly TimeSpan DefaultDrainTimeout = TimeSpan.FromSeconds(30);
}
