using System.CommandLine;
using System.Globalization;
using Dynamo.Cli.Components;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench faults</c>: the fault-injection harness (<see cref="FaultBenchmark"/>): a deployment of processes
/// started here, a steady streaming load, and faults on a schedule; one row per fault: requests, completed,
/// migrated, failed, refused, and the time to recover. Exit code 1 when a request failed or was refused.
/// </summary>
internal static class BenchFaultsCommand
{
    public static Command Create()
    {
        FaultOptions d = FaultOptions.Default;
        var workers = new Option<int?>("--workers") { Description = $"Worker processes (default {d.Workers}; --quick {FaultOptions.Quick.Workers})" };
        var clients = new Option<int?>("--clients", "-c") { Description = $"Clients streaming one request after another (default {d.Clients}; --quick {FaultOptions.Quick.Clients})" };
        var outputLen = new Option<int?>("--output-len") { Description = $"Output tokens of every request, EOS ignored (default {d.MaxTokens}; --quick {FaultOptions.Quick.MaxTokens})" };
        var faults = new Option<string>("--faults") { Description = "Faults in order, comma-separated: kill (kill -9 a worker, start a replacement), stop (SIGSTOP a worker, then SIGCONT), nats and etcd (kill -9 the server, restart it), rolling (SIGTERM each worker in turn, a replacement each), partition (cut the link of a worker run in a network namespace, restore it; needs root and iproute2)", DefaultValueFactory = _ => string.Join(',', FaultOptions.AllFaults) };
        var stopSeconds = new Option<double?>("--stop-seconds") { Description = $"How long the stopped worker stays stopped (default {d.StopFor.TotalSeconds}; --quick {FaultOptions.Quick.StopFor.TotalSeconds})" };
        var partitionSeconds = new Option<double?>("--partition-seconds") { Description = $"How long the partitioned worker's link stays cut (default {d.PartitionFor.TotalSeconds}; --quick {FaultOptions.Quick.PartitionFor.TotalSeconds})" };
        var outage = new Option<double>("--outage-seconds") { Description = "How long nats-server and etcd stay down", DefaultValueFactory = _ => d.Outage.TotalSeconds };
        var settle = new Option<double?>("--settle-seconds") { Description = $"Load between a fault's recovery and the next fault (default {d.Settle.TotalSeconds}; --quick {FaultOptions.Quick.Settle.TotalSeconds})" };
        var drain = new Option<double?>("--drain-timeout") { Description = $"The workers' --drain-timeout, seconds (default {d.DrainTimeout.TotalSeconds}; --quick {FaultOptions.Quick.DrainTimeout.TotalSeconds})" };
        var model = new Option<string?>("--model", "-m") { Description = "Serve this model with the built-in engine (default: mocker workers with the default model's tokenizer)" };
        var threads = new Option<int>("--threads", "-t") { Description = "--model: compute threads of each worker", DefaultValueFactory = _ => 1 };
        var speedup = new Option<double>("--speedup-ratio") { Description = "Mocker workers: simulated time runs this many times faster", DefaultValueFactory = _ => 1 };
        var quick = new Option<bool>("--quick") { Description = Invariant($"The CI size: {FaultOptions.Quick.Workers} workers, {FaultOptions.Quick.Clients} clients, {FaultOptions.Quick.MaxTokens} tokens, a {FaultOptions.Quick.StopFor.TotalSeconds} s stop, a {FaultOptions.Quick.PartitionFor.TotalSeconds} s partition, {FaultOptions.Quick.DrainTimeout.TotalSeconds} s drains") };
        var json = new Option<bool>("--json") { Description = "Print the rows as JSON on stdout instead of the table" };
        var command = new Command("faults", "Fault injection: a deployment of processes under streaming load; kill, stop, restart NATS and etcd, rolling restart, network partition; requests completed, migrated, failed, and recovery time per fault")
        {
            workers, clients, outputLen, faults, stopSeconds, partitionSeconds, outage, settle, drain, model, threads, speedup, quick, json,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            FaultOptions b = parse.GetValue(quick) ? FaultOptions.Quick : FaultOptions.Default;
            string? path = parse.GetValue(model);
            string[] workerArgs = path is null
                ? ["--engine", "mocker", "--speedup-ratio", Invariant($"{parse.GetValue(speedup)}")]
                : ["--model", path, "--threads", Invariant($"{parse.GetValue(threads)}")];
            FaultOptions options = (b with
            {
                Workers = parse.GetValue(workers) ?? b.Workers,
                Clients = parse.GetValue(clients) ?? b.Clients,
                MaxTokens = parse.GetValue(outputLen) ?? b.MaxTokens,
                Faults = [.. parse.GetValue(faults)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)],
                StopFor = FrontendFlags.Seconds(parse.GetValue(stopSeconds) ?? b.StopFor.TotalSeconds),
                PartitionFor = FrontendFlags.Seconds(parse.GetValue(partitionSeconds) ?? b.PartitionFor.TotalSeconds),
                Outage = FrontendFlags.Seconds(parse.GetValue(outage)),
                Settle = FrontendFlags.Seconds(parse.GetValue(settle) ?? b.Settle.TotalSeconds),
                DrainTimeout = FrontendFlags.Seconds(parse.GetValue(drain) ?? b.DrainTimeout.TotalSeconds),
                WorkerArgs = workerArgs,
            }).Validate();
            if (path is null)
            {
                // Mocker workers have no model: they serve the default model's tokenizer (made once, cached).
                DefaultModel.EnsurePath();
            }

            using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
            IReadOnlyList<FaultRow> rows;
            try
            {
                rows = await FaultBenchmark.RunAsync(options, BenchDisaggCommand.SelfCommand(), Console.Error, shutdown.Token);
            }
            catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
            {
                await Console.Error.WriteLineAsync("bench faults: interrupted; what it started is stopped");
                return 1;
            }

            await Console.Out.WriteAsync(parse.GetValue(json) ? FaultBenchmark.Json(rows) + "\n" : FaultBenchmark.Table(rows));
            int lost = rows.Sum(r => r.Failed + r.Refused);
            await Console.Error.WriteLineAsync(lost == 0
                ? $"bench faults: {rows.Sum(r => r.Requests)} requests through {rows.Count} faults, none lost"
                : $"bench faults: {lost} requests failed or were refused");
            return lost == 0 ? 0 : 1;
        });
        return command;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
