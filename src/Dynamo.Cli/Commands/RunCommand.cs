using System.CommandLine;
using System.Net.Http.Json;
using System.Net.ServerSentEvents;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dynamo.Cli.Components;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;
using Dynamo.Runtime;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Trace;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo run [in=http|text|batch:FILE] [out=MODEL_PATH|dyn|echo|mocker]</c>: the whole system in one
/// process. With NATS_SERVER and ETCD_ENDPOINTS unset, discovery, requests and events stay in the
/// process; set, the parts register there too (other nodes' workers join, and `out=dyn` serves only
/// them). Without `out=`, the tiny synthesized default model is served, chat included.
/// </summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var targets = new Argument<string[]>("in=... out=...") { Description = "in=http (default), in=text or in=batch:FILE; out=MODEL_PATH, out=dyn, out=echo or out=mocker (default: a small synthesized model)", Arity = ArgumentArity.ZeroOrMore };
        var servedName = new Option<string?>("--served-model-name", "--model-name") { Description = "The model name clients ask for" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file (llama2.c checkpoints; echo/mocker)" };
        var threads = new Option<int>("--threads") { Description = "Compute threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var speedup = new Option<double>("--speedup-ratio") { Description = "out=mocker: simulated time runs this many times faster", DefaultValueFactory = _ => MockerOptions.Default.SpeedupRatio };
        var maxTokensOut = new Option<int>("--max-tokens") { Description = "in=text and in=batch: tokens per answer at most", DefaultValueFactory = _ => 256 };
        var command = new Command("run", "Run the whole system in one process: the HTTP frontend (or a text chat, or a batch file) and a worker") { targets };
        FrontendFlags frontendFlags = FrontendFlags.AddTo(command, listenNote: " (in=http)");
        foreach (Option o in new Option[] { servedName, tokenizer })
        {
            command.Options.Add(o);
        }

        EngineFlags engineFlags = EngineFlags.AddTo(command);
        TracingFlags tracing = TracingFlags.AddTo(command);
        foreach (Option o in new Option[] { threads, speedup, maxTokensOut })
        {
            command.Options.Add(o);
        }

        command.SetAction((parse, cancellationToken) =>
        {
            string input = "http";
            string? output = null;
            foreach (string t in parse.GetValue(targets) ?? [])
            {
                if (t.StartsWith("in=", StringComparison.Ordinal))
                {
                    input = t[3..];
                }
                else if (t.StartsWith("out=", StringComparison.Ordinal))
                {
                    output = t[4..];
                }
                else if (output is null && !t.Contains('='))
                {
                    output = t;
                }
                else
                {
                    throw new CliUsageException($"'{t}' is not in=... or out=...");
                }
            }

            if (input is not ("http" or "text") && !input.StartsWith("batch:", StringComparison.Ordinal))
            {
                throw new CliUsageException($"in={input}: expected in=http, in=text or in=batch:FILE");
            }

            if (output is "")
            {
                throw new CliUsageException("out= needs a value: a model path, dyn, echo or mocker");
            }

            EngineOptions engine = engineFlags.Read(parse);
            WorkerSettings? worker = output == "dyn" ? null : new WorkerSettings
            {
                EngineKind = output is "echo" or "mocker" ? output : "dynamo",
                ModelPath = output is null or "echo" or "mocker" ? (output is null ? DefaultModel.EnsurePath(engine.ContextLength) : null) : output,
                ServedModelName = parse.GetValue(servedName) ?? (output is null ? DefaultModel.ServedName : null),
                TokenizerPath = parse.GetValue(tokenizer),
                Engine = engine,
                Mocker = MockerOptions.Default with { SpeedupRatio = parse.GetValue(speedup) },
                Threads = parse.GetValue(threads),
            }.Validate();

            // in=text and in=batch talk to the frontend themselves, on a loopback port of their own: plain HTTP, no key.
            FrontendOptions frontend = frontendFlags.Read(parse);
            if (input != "http" && (frontend.ApiKeys.Count > 0 || frontend.ApiKeyFile is not null || frontend.TlsCertificateFile is not null))
            {
                Console.Error.WriteLine($"run: in={input} serves no HTTP clients: the API key and TLS settings are not used");
            }

            frontend = (input == "http" ? frontend : frontend with
            {
                Host = "127.0.0.1",
                HttpPort = 0,
                ApiKeys = FrontendOptions.Default.ApiKeys,
                ApiKeyFile = null,
                MetricsRequireApiKey = false,
                TlsCertificateFile = null,
                TlsKeyFile = null,
            }).Validate();
            RuntimeOptions runtime = RuntimeOptions.FromEnvironment(defaultToLocalhost: worker is null);
            return RunAsync(input, worker, frontend, runtime, parse.GetValue(maxTokensOut), tracing.Read(parse, "dynamo-run"), cancellationToken);
        });
        return command;
    }

    private static async Task<int> RunAsync(string input, WorkerSettings? workerSettings, FrontendOptions frontendOptions, RuntimeOptions runtimeOptions, int maxTokens, TracingOptions tracing, CancellationToken cancellationToken)
    {
        using TracerProvider? tracer = CliTracing.Start(tracing, Console.Error, "run");
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        // in=text and in=batch write the conversation (or JSONL) on stdout: only warnings and errors are logged (on stderr), so
        // no request's log line lands inside a chat.
        LogLevel logLevel = input == "http" ? LogLevel.Information : LogLevel.Warning;
        if (input == "text")
        {
            Console.Error.WriteLine("run: in=text logs only warnings and errors (on stderr); in=http shows every request's log line");
        }

        await using InProcessCluster cluster = new();
        await using DistributedRuntime workerRuntime = runtimeOptions.IsDistributed
            ? await RuntimeConnection.ConnectAsync(runtimeOptions, shutdown.Token)
            : await cluster.ConnectAsync(shutdown.Token);
        await using DistributedRuntime frontendRuntime = runtimeOptions.IsDistributed
            ? await RuntimeConnection.ConnectAsync(runtimeOptions, shutdown.Token)
            : await cluster.ConnectAsync(shutdown.Token);
        using var workerLoggers = CliLogging.Create(frontendOptions.JsonLogs, logLevel);
        await using WorkerComponent? worker = workerSettings is null ? null : await WorkerComponent.StartAsync(workerRuntime, workerSettings, Console.Error, shutdown.Token, workerLoggers);
        using var loggers = CliLogging.Create(frontendOptions.JsonLogs, logLevel);
        await using FrontendServer server = await FrontendServer.StartAsync(frontendRuntime, frontendOptions, loggers, shutdown.Token);
        string model = worker?.Card.Name ?? "";

        // One process, one /metrics: the worker's beside the frontend's (it has no system port unless given one).
        if (worker is not null && worker.StatusAddress is null)
        {
            server.AddWorkerMetrics(worker.Worker, model);
        }

        if (input == "http")
        {
            Console.Error.WriteLine($"run: OpenAI-compatible API on {server.BaseAddress}, listening on {Listeners.Describe(frontendOptions.Host, server.BaseAddress.Port, "--http-host")} ({runtimeOptions switch { { IsDistributed: true } => "etcd+nats", _ => "in-process" }})" +
                (worker is null ? "; serving the models of the workers that register" : $"; model '{model}'") + $"; {server.AccessNote}");
            if (frontendOptions.Processing.RouterMode == RouterModes.Kv)
            {
                Console.Error.WriteLine($"run: the KV router predicts the workers' caches from {KvRouterFlags.CacheSource(frontendOptions.Processing.KvRouter)}");
            }

            if (worker is not null)
            {
                await server.WaitForModelAsync(model, shutdown.Token);
            }

            Console.Error.WriteLine($"run: ready: {server.BaseAddress} accepts requests. Try: {TryCommand(server.BaseAddress, model.Length > 0 ? model : "MODEL", worker?.Card.HasChatTemplate ?? true, server.ApiKeyCount > 0)}");
            try
            {
                await Task.Delay(Timeout.Infinite, shutdown.Token);
            }
            catch (OperationCanceledException)
            {
            }

            return 0;
        }

        if (worker is null)
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(shutdown.Token);
            wait.CancelAfter(TimeSpan.FromSeconds(30));
            while (server.Models.Count == 0)
            {
                await Task.Delay(100, wait.Token);
            }

            model = server.Models[0];
        }
        else
        {
            await server.WaitForModelAsync(model, shutdown.Token);
        }

        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = Timeout.InfiniteTimeSpan };
        return input == "text"
            ? await ChatAsync(http, model, maxTokens, shutdown.Token)
            : await BatchAsync(http, model, input["batch:".Length..], maxTokens, shutdown.Token);
    }

    /// <summary>
    /// The curl line the ready line suggests: a chat request for a model with a chat template, else a completion
    /// (such a model answers chat requests with 400 no_chat_template).
    /// </summary>
    internal static string TryCommand(Uri baseAddress, string model, bool chat, bool apiKey)
    {
        string auth = apiKey ? " -H 'Authorization: Bearer YOUR_KEY'" : "";
        return chat
            ? $"curl {baseAddress}v1/chat/completions -H 'Content-Type: application/json'{auth} -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}],\"max_tokens\":32}}'"
            : $"curl {baseAddress}v1/completions -H 'Content-Type: application/json'{auth} -d '{{\"model\":\"{model}\",\"prompt\":\"Once upon a time\",\"max_tokens\":32}}' (the model has no chat template: completions only)";
    }

    private static async Task<int> ChatAsync(HttpClient http, string model, int maxTokens, CancellationToken cancellationToken)
    {
        var history = new JsonArray();
        Console.Error.WriteLine($"run: chatting with '{model}'; an empty line or Ctrl-D ends");
        while (!cancellationToken.IsCancellationRequested)
        {
            Console.Write("> ");
            string? line = Console.ReadLine();
            if (string.IsNullOrWhiteSpace(line))
            {
                return 0;
            }

            history.Add(new JsonObject { ["role"] = "user", ["content"] = line });
            var answer = new StringBuilder();
            await foreach (string piece in StreamChatAsync(http, model, history, maxTokens, cancellationToken))
            {
                answer.Append(piece);
                Console.Write(piece);
            }

            Console.WriteLine();
            history.Add(new JsonObject { ["role"] = "assistant", ["content"] = answer.ToString() });
        }

        return 0;
    }

    private static async Task<int> BatchAsync(HttpClient http, string model, string file, int maxTokens, CancellationToken cancellationToken)
    {
        if (!File.Exists(file))
        {
            throw new CliUsageException($"in=batch:{file}: file not found");
        }

        int failures = 0;
        int lineNumber = 0;
        foreach (string line in await File.ReadAllLinesAsync(file, cancellationToken))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            string text;
            try
            {
                text = JsonNode.Parse(line)?["text"]?.GetValue<string>() ?? throw new FormatException("no \"text\" field");
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
            {
                throw new CliUsageException($"in=batch:{file} line {lineNumber}: expected {{\"text\": \"...\"}}: {e.Message}");
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            var answer = new StringBuilder();
            string? error = null;
            try
            {
                await foreach (string piece in StreamChatAsync(http, model, [new JsonObject { ["role"] = "user", ["content"] = text }], maxTokens, cancellationToken))
                {
                    answer.Append(piece);
                }
            }
            catch (HttpRequestException e)
            {
                error = e.Message;
                failures++;
            }

            var result = new JsonObject { ["text"] = text, ["response"] = answer.ToString(), ["elapsed_ms"] = Math.Round(clock.Elapsed.TotalMilliseconds, 1) };
            if (error is not null)
            {
                result["error"] = error;
            }

            Console.WriteLine(result.ToJsonString());
        }

        return failures == 0 ? 0 : 1;
    }

    private static async IAsyncEnumerable<string> StreamChatAsync(HttpClient http, string model, JsonArray messages, int maxTokens, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var body = new JsonObject { ["model"] = model, ["messages"] = messages.DeepClone(), ["stream"] = true, ["max_tokens"] = maxTokens };
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = JsonContent.Create(body) };
        using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            string error = await response.Content.ReadAsStringAsync(cancellationToken);
            throw new HttpRequestException($"HTTP {(int)response.StatusCode}: {error}");
        }

        await using Stream stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        await foreach (SseItem<string> item in SseParser.Create(stream).EnumerateAsync(cancellationToken))
        {
            if (item.Data == "[DONE]")
            {
                yield break;
            }

            JsonNode? chunk = JsonNode.Parse(item.Data);
            if (chunk?["error"] is JsonNode err)
            {
                throw new HttpRequestException(err["message"]?.GetValue<string>() ?? item.Data);
            }

            if (chunk?["choices"] is JsonArray { Count: > 0 } choices && choices[0]?["delta"]?["content"]?.GetValue<string>() is { Length: > 0 } content)
            {
                yield return content;
            }
        }
    }
}
