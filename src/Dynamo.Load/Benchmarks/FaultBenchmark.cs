using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Load.Client;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench faults</c>: a deployment of processes (nats-server, etcd, a <c>dynamo frontend</c>, N <c>dynamo
/// worker</c>s, all on loopback) under a steady load of streaming chat requests, and faults injected one after
/// another: a worker killed (SIGKILL, then replaced), a worker stopped (SIGSTOP) and resumed, nats-server and etcd
/// killed and restarted, every worker terminated in turn (SIGTERM: drain, then a replacement), one worker's network
/// link cut and restored (partition). For the partition, that worker runs in a <see cref="NetworkNamespace"/> (so
/// do its replacements), and nats-server and etcd listen on the host side of its link instead of loopback; the
/// fault waits for the worker to be back in discovery and to serve a request again. Each row says, of
/// the requests in flight when the fault began or started before the next one, how many completed, how many the
/// frontend moved to another worker, how many failed or were refused, and the time from the fault to the first
/// token of a request sent after it (recovery).
/// </summary>
internal sealed partial class FaultBenchmark : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(5);

    /// <summary>How long a partitioned worker has, once its link is back, to be in discovery again and to take a request.</summary>
    private static readonly TimeSpan RejoinTimeout = TimeSpan.FromSeconds(60);

    private readonly FaultOptions _options;
    private readonly IReadOnlyList<string> _dynamo;
    private readonly LocalServers _servers;
    private readonly NetworkNamespace? _namespace;
    private readonly TextWriter _log;
    private readonly List<ChildProcess> _workers = [];
    private readonly List<ChildProcess> _retired = [];
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private readonly ConcurrentBag<RequestResult> _results = [];
    private readonly TimeProvider _time = TimeProvider.System;
    private readonly long _origin;
    private double[] _current = [];
    private ChildProcess? _frontend;
    private PartitionedWorker? _partitioned;
    private string _baseUrl = "";
    private int _nextWorker;

    private FaultBenchmark(FaultOptions options, IReadOnlyList<string> dynamoCommand, LocalServers servers, NetworkNamespace? network, TextWriter log)
    {
        _options = options;
        _dynamo = dynamoCommand;
        _servers = servers;
        _namespace = network;
        _log = log;
        _origin = _time.GetTimestamp();
    }

    /// <summary>Deploys, runs the load and the faults, and returns one row per fault.</summary>
    public static async Task<IReadOnlyList<FaultRow>> RunAsync(FaultOptions options, IReadOnlyList<string> dynamoCommand, TextWriter log, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        NetworkNamespace? network = options.Faults.Contains("partition") ? CreateNamespace(log) : null;
        LocalServers servers;
        try
        {
            servers = await LocalServers.StartAsync(null, null, log, "bench faults", network?.HostAddress ?? "127.0.0.1", cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            network?.Dispose();
            throw;
        }

        await using var bench = new FaultBenchmark(options, dynamoCommand, servers, network, log);
        return await bench.RunAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The rows as a Markdown table, with each fault's first errors under it.</summary>
    public static string Table(IReadOnlyList<FaultRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var text = new System.Text.StringBuilder();
        text.AppendLine("| fault | what | requests | completed | migrated | failed | refused | recovery |");
        text.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (FaultRow r in rows)
        {
            text.AppendLine(Invariant($"| {r.Fault} | {r.Description} | {r.Requests} | {r.Completed} | {r.Migrated} | {r.Failed} | {r.Refused} | {(r.RecoverySeconds is double s ? $"{s:0.00} s" : "-")} |"));
        }

        foreach (FaultRow r in rows.Where(r => r.Errors.Count > 0))
        {
            text.AppendLine(Invariant($"{r.Fault}: {r.Failed + r.Refused} requests did not complete; the first:"));
            foreach (string e in r.Errors)
            {
                text.AppendLine("  " + e);
            }
        }

        return text.ToString();
    }

    /// <summary>The rows as JSON (one object per fault).</summary>
    public static string Json(IReadOnlyList<FaultRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartArray();
            foreach (FaultRow r in rows)
            {
                w.WriteStartObject();
                w.WriteString("fault", r.Fault);
                w.WriteString("description", r.Description);
                w.WriteNumber("requests", r.Requests);
                w.WriteNumber("completed", r.Completed);
                w.WriteNumber("migrated", r.Migrated);
                w.WriteNumber("failed", r.Failed);
                w.WriteNumber("refused", r.Refused);
                if (r.RecoverySeconds is double s)
                {
                    w.WriteNumber("recovery_seconds", Math.Round(s, 3));
                }
                else
                {
                    w.WriteNull("recovery_seconds");
                }

                w.WriteStartArray("errors");
                foreach (string e in r.Errors)
                {
                    w.WriteStringValue(e);
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        foreach (ChildProcess w in _workers.Concat(_retired))
        {
            await w.DisposeAsync().ConfigureAwait(false);
        }

        if (_frontend is not null)
        {
            await _frontend.DisposeAsync().ConfigureAwait(false);
        }

        await _servers.DisposeAsync().ConfigureAwait(false);
        _namespace?.Dispose();
    }

    /// <summary>The partitioned worker's namespace, for this process; <see cref="NotSupportedException"/> naming the fault when none can be built.</summary>
    private static NetworkNamespace CreateNamespace(TextWriter log)
    {
        NetworkNamespace network;
        try
        {
            network = NetworkNamespace.Create(Environment.ProcessId);
        }
        catch (NotSupportedException e)
        {
            throw new NotSupportedException($"--faults partition: {e.Message}; leave partition out of --faults to run the others", e);
        }

        log.WriteLine($"bench faults: network namespace {network.Name} ({network.Address}, host side {network.HostLink} {network.HostAddress}) for the partitioned worker");
        return network;
    }

    private async Task<IReadOnlyList<FaultRow>> RunAsync(CancellationToken cancellationToken)
    {
        int port = LocalServers.FreePort();
        _frontend = ChildProcess.Start("frontend", _dynamo[0], [.. _dynamo.Skip(1), "frontend", "--http-host", "127.0.0.1", "--http-port", Invariant($"{port}")], _servers.Environment);
        await _frontend.WaitForLineAsync(FrontendListening(), StartTimeout, cancellationToken).ConfigureAwait(false);
        _baseUrl = Invariant($"http://127.0.0.1:{port}");
        _http.BaseAddress = new Uri(_baseUrl + "/");
        await Task.WhenAll(Enumerable.Range(0, _options.Workers).Select(i => StartWorkerAsync(inNamespace: i == 0 && _namespace is not null, cancellationToken))).ConfigureAwait(false);
        await WaitForInstancesAsync(_options.Workers, cancellationToken).ConfigureAwait(false);
        _log.WriteLine(Invariant($"bench faults: frontend on {_baseUrl}, {_options.Workers} workers ({string.Join(' ', _options.WorkerArgs)}), {_options.Clients} clients streaming {_options.MaxTokens} tokens each"));

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var client = new ChatStreamClient(_baseUrl, _options.Model, _time, _origin, _options.Clients);
        _current = new double[_options.Clients];
        Task[] clients = [.. Enumerable.Range(0, _options.Clients).Select(c => Task.Run(() => ClientAsync(client, c, stop.Token), CancellationToken.None))];
        try
        {
            await WaitForCompletionsAsync(_options.Clients, cancellationToken).ConfigureAwait(false);
            var windows = new List<(string Fault, string Description, double Start, double End, double Migrations)>();
            foreach (string fault in _options.Faults)
            {
                double migrationsBefore = await MigrationsAsync(cancellationToken).ConfigureAwait(false);
                double start = Now();
                _log.WriteLine(Invariant($"bench faults: {fault} at {start:0.0} s"));
                string description = await InjectAsync(fault, cancellationToken).ConfigureAwait(false);

                // Let every request that the fault caught end, then the load run on a little.
                await WaitForRequestsStartedBeforeAsync(start, cancellationToken).ConfigureAwait(false);
                await Task.Delay(_options.Settle, cancellationToken).ConfigureAwait(false);
                double migrations = await MigrationsAsync(cancellationToken).ConfigureAwait(false) - migrationsBefore;
                windows.Add((fault, description, start, Now(), migrations));
            }

            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(clients).ConfigureAwait(false);
            return [.. windows.Select(w => Row(w.Fault, w.Description, w.Start, w.End, (int)w.Migrations))];
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(clients).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>Injects one fault and waits for its recovery action (a replacement serving, a server back); returns what it did.</summary>
    private async Task<string> InjectAsync(string fault, CancellationToken cancellationToken)
    {
        switch (fault)
        {
            case "kill":
            {
                ChildProcess victim = _workers[0];
                await victim.SignalAsync("KILL").ConfigureAwait(false);
                await ReplaceAsync(victim, cancellationToken).ConfigureAwait(false);
                return $"kill -9 {victim.Name}, start a replacement";
            }

            case "stop":
            {
                ChildProcess victim = _workers[^1];
                await victim.SignalAsync("STOP").ConfigureAwait(false);
                await Task.Delay(_options.StopFor, cancellationToken).ConfigureAwait(false);
                await victim.SignalAsync("CONT").ConfigureAwait(false);
                return Invariant($"SIGSTOP {victim.Name} for {_options.StopFor.TotalSeconds:0.#} s, then SIGCONT");
            }

            case "nats":
                await _servers.RestartNatsAsync(_options.Outage, cancellationToken).ConfigureAwait(false);
                return Invariant($"kill -9 nats-server, restart it after {_options.Outage.TotalSeconds:0.#} s");

            case "etcd":
                await _servers.RestartEtcdAsync(_options.Outage, cancellationToken).ConfigureAwait(false);
                return Invariant($"kill -9 etcd, restart it after {_options.Outage.TotalSeconds:0.#} s");

            case "rolling":
            {
                var exits = new List<int>();
                foreach (ChildProcess old in _workers.ToArray())
                {
                    await old.SignalAsync("TERM").ConfigureAwait(false);
                    exits.Add(await old.WaitForExitAsync(_options.DrainTimeout + StartTimeout, cancellationToken).ConfigureAwait(false));
                    await ReplaceAsync(old, cancellationToken).ConfigureAwait(false);
                }

                return Invariant($"SIGTERM each of {exits.Count} workers in turn (drain {_options.DrainTimeout.TotalSeconds:0.#} s), a replacement each; exit codes {string.Join(',', exits)}");
            }

            case "partition":
                return await PartitionAsync(cancellationToken).ConfigureAwait(false);

            default:
                throw new ArgumentException($"unknown fault '{fault}'", nameof(fault));
        }
    }

    private FaultRow Row(string fault, string description, double start, double end, int migrated)
    {
        // The fault's requests: those in flight when it began, and those started before the next one.
        RequestResult[] mine = [.. _results.Where(r => (r.Start < start && r.Start + r.EndToEnd > start) || (r.Start >= start && r.Start < end)).OrderBy(r => r.Start)];
        RequestResult? firstAfter = mine.Where(r => r.Start >= start && r.Ttft is not null).MinBy(r => r.Start + r.Ttft!.Value);
        return new FaultRow(
            fault, description, mine.Length,
            mine.Count(r => r.Outcome == RequestOutcome.Ok),
            migrated,
            mine.Count(r => r.Outcome == RequestOutcome.Error),
            mine.Count(r => r.Outcome == RequestOutcome.Rejected),
            firstAfter is null ? null : firstAfter.Start + firstAfter.Ttft!.Value - start,
            [.. mine.Where(r => r.Outcome != RequestOutcome.Ok).Take(5).Select(r => Invariant($"at {r.Start:0.0} s after {r.EndToEnd:0.0} s: {r.Error}"))]);
    }

    private async Task ClientAsync(ChatStreamClient client, int index, CancellationToken stop)
    {
        for (int i = 0; !stop.IsCancellationRequested; i++)
        {
            ChatMessage[] messages = [new("user", Invariant($"client {index} request {i}: tell me about the sea"))];

            // A request started is seen to its end (or to the hang limit), even while the load stops.
            using var hang = new CancellationTokenSource(_options.RequestTimeout);
            RequestResult result;
            double start = Now();
            Volatile.Write(ref _current[index], start);
            try
            {
                result = await client.SendAsync(messages, _options.MaxTokens, hang.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                result = new RequestResult { Outcome = RequestOutcome.Error, Start = start, EndToEnd = Now() - start, Error = Invariant($"hung: not over after {_options.RequestTimeout.TotalSeconds:0} s") };
            }

            if (result.Outcome == RequestOutcome.Ok && result.OutputTokens != _options.MaxTokens)
            {
                result = result with { Outcome = RequestOutcome.Error, Error = Invariant($"{result.OutputTokens} tokens instead of {_options.MaxTokens}") };
            }

            _results.Add(result);
        }
    }

    /// <summary>
    /// Cuts the namespaced worker's link for <see cref="FaultOptions.PartitionFor"/> while the clients stream (its
    /// streams stall; the frontend moves them once the worker's lease expires and it leaves discovery), restores it,
    /// and waits until the worker is back in discovery and has taken a request again.
    /// </summary>
    private async Task<string> PartitionAsync(CancellationToken cancellationToken)
    {
        NetworkNamespace network = _namespace!;
        PartitionedWorker worker = _partitioned!;
        string name = Invariant($"{worker.Process.Name} (instance {worker.Instance})");
        double cut = Now();
        network.Cut();
        double? left;
        try
        {
            left = await WaitForInstancesAsync(ids => !ids.Contains(worker.Instance), _options.PartitionFor, cancellationToken).ConfigureAwait(false) ? Now() - cut : null;
            TimeSpan rest = _options.PartitionFor - TimeSpan.FromSeconds(Now() - cut);
            if (rest > TimeSpan.Zero)
            {
                await Task.Delay(rest, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            network.Restore();
        }

        double restored = Now();
        if (!await WaitForInstancesAsync(ids => ids.Contains(worker.Instance), RejoinTimeout, cancellationToken).ConfigureAwait(false))
        {
            throw new IOException(Invariant($"partition: {name} is not back in discovery {RejoinTimeout.TotalSeconds:0} s after its link came back; its last lines:\n{worker.Process.Tail()}"));
        }

        double rejoined = Now() - restored;
        double requests = await WorkerRequestsAsync(worker, cancellationToken).ConfigureAwait(false);
        using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            deadline.CancelAfter(RejoinTimeout);
            try
            {
                while (await WorkerRequestsAsync(worker, deadline.Token).ConfigureAwait(false) <= requests)
                {
                    await Task.Delay(100, deadline.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new IOException(Invariant($"partition: {name} is back in discovery but took no request within {RejoinTimeout.TotalSeconds:0} s; its last lines:\n{worker.Process.Tail()}"));
            }
        }

        return Invariant($"cut the link of {worker.Process.Name} (netns {network.Name}) for {_options.PartitionFor.TotalSeconds:0.#} s, then restore it; ")
            + (left is double l ? Invariant($"left discovery {l:0.0} s into the cut, ") : "still in discovery when restored, ")
            + Invariant($"back {rejoined:0.0} s and serving {Now() - restored:0.0} s after the restore");
    }

    /// <summary>Requests the partitioned worker has received (its own /metrics, read through the link).</summary>
    private async Task<double> WorkerRequestsAsync(PartitionedWorker worker, CancellationToken cancellationToken)
    {
        string metrics = await _http.GetStringAsync(worker.Metrics, cancellationToken).ConfigureAwait(false);
        return PrometheusText.Parse(metrics).Where(m => m.Name == "dynamo_component_requests_total").Sum(m => m.Value);
    }

    /// <summary>
    /// Starts a worker and waits until it serves. One <paramref name="inNamespace"/> runs in the partition's
    /// namespace, NATS and etcd on the host side of its link (the environment of every worker then), its /metrics
    /// on its own address (127.0.0.1 would be the namespace's loopback, out of the bench's reach).
    /// </summary>
    private async Task StartWorkerAsync(bool inNamespace, CancellationToken cancellationToken)
    {
        int n = Interlocked.Increment(ref _nextWorker);
        List<string> command = [.. _dynamo, "worker", .. _options.WorkerArgs, "--served-model-name", _options.Model, "--lease-ttl", "3",
            "--drain-timeout", Invariant($"{_options.DrainTimeout.TotalSeconds}")];
        Uri? metrics = null;
        if (inNamespace)
        {
            NetworkNamespace network = _namespace!;
            int port = LocalServers.FreePort();
            command = [.. network.Exec, .. command, "--system-host", network.Address, "--system-port", Invariant($"{port}")];
            metrics = new Uri(Invariant($"http://{network.Address}:{port}/metrics"));
        }

        ChildProcess worker = ChildProcess.Start(Invariant($"worker {n}"), command[0], command.Skip(1), _servers.Environment);
        lock (_workers)
        {
            _workers.Add(worker);
        }

        Match serving = await worker.WaitForLineAsync(WorkerServing(), StartTimeout, cancellationToken).ConfigureAwait(false);
        if (metrics is not null)
        {
            _partitioned = new PartitionedWorker(worker, serving.Groups["id"].Value, metrics);
        }
    }

    /// <summary>Retires a stopped or killed worker and starts its replacement (in the namespace when it ran there); waits for the full set in discovery.</summary>
    private async Task ReplaceAsync(ChildProcess old, CancellationToken cancellationToken)
    {
        lock (_workers)
        {
            _workers.Remove(old);
            _retired.Add(old);
        }

        await StartWorkerAsync(inNamespace: old == _partitioned?.Process, cancellationToken).ConfigureAwait(false);
        await WaitForInstancesAsync(_options.Workers, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Waits until the frontend's /health lists <paramref name="count"/> worker instances.</summary>
    private async Task WaitForInstancesAsync(int count, CancellationToken cancellationToken)
    {
        if (!await WaitForInstancesAsync(ids => ids.Count == count, StartTimeout, cancellationToken).ConfigureAwait(false))
        {
            throw new IOException(Invariant($"the frontend's /health did not list {count} worker instances within {StartTimeout.TotalSeconds:0} s"));
        }
    }

    /// <summary>Whether the frontend's /health lists worker instances that satisfy <paramref name="ready"/> within <paramref name="timeout"/>.</summary>
    private async Task<bool> WaitForInstancesAsync(Func<IReadOnlyList<string>, bool> ready, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            while (true)
            {
                try
                {
                    using HttpResponseMessage health = await _http.GetAsync("health", deadline.Token).ConfigureAwait(false);
                    using JsonDocument doc = JsonDocument.Parse(await health.Content.ReadAsStringAsync(deadline.Token).ConfigureAwait(false));
                    if (doc.RootElement.TryGetProperty("models", out JsonElement models)
                        && ready([.. models.EnumerateArray().SelectMany(m => m.GetProperty("instances").EnumerateArray()).Select(i => i.GetString() ?? "")]))
                    {
                        return true;
                    }
                }
                catch (Exception e) when (e is HttpRequestException or JsonException or TaskCanceledException && !deadline.IsCancellationRequested)
                {
                    // The frontend is busy or between answers: ask again.
                }

                await Task.Delay(100, deadline.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    private async Task WaitForCompletionsAsync(int count, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(StartTimeout);
        while (_results.Count(r => r.Outcome == RequestOutcome.Ok) < count)
        {
            await Task.Delay(50, deadline.Token).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until every request that started before <paramref name="time"/> has ended (each ends by the hang limit).</summary>
    private async Task WaitForRequestsStartedBeforeAsync(double time, CancellationToken cancellationToken)
    {
        // Each client has one request at a time: once each has started one after the time, none is left from before it.
        while (Enumerable.Range(0, _current.Length).Any(i => Volatile.Read(ref _current[i]) < time))
        {
            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<double> MigrationsAsync(CancellationToken cancellationToken)
    {
        string metrics = await _http.GetStringAsync("metrics", cancellationToken).ConfigureAwait(false);
        return PrometheusText.Parse(metrics).Where(m => m.Name == "dynamo_frontend_migrations_total").Sum(m => m.Value);
    }

    private double Now() => _time.GetElapsedTime(_origin).TotalSeconds;

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex("frontend: listening")]
    private static partial Regex FrontendListening();

    [GeneratedRegex(@"worker: instance (?<id>\S+) serving")]
    private static partial Regex WorkerServing();

    /// <summary>The worker in the partition's namespace: its process, its instance id, its /metrics.</summary>
    private sealed record PartitionedWorker(ChildProcess Process, string Instance, Uri Metrics);
}
