using System.CommandLine;
using Dynamo.Cli.Commands;
using Dynamo.Cli.Components;
using Dynamo.Components.Processing;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

/// <summary>Flags bound into the options records (`Default with { ... }`), and bad values failing at startup in one line naming the flag.</summary>
public class OptionsBindingTests
{
    private static (Command Command, FrontendFlags Flags) Frontend()
    {
        var command = new Command("frontend");
        return (command, FrontendFlags.AddTo(command, withNamespace: true));
    }

    [Fact]
    public void FrontendFlags_None_TheRecordsDefaults()
    {
        var (command, flags) = Frontend();

        Assert.Equal(FrontendOptions.Default, flags.Read(command.Parse([])));
    }

    [Fact]
    public void FrontendFlags_Given_BoundIntoFrontendAndProcessorOptions()
    {
        var (command, flags) = Frontend();

        FrontendOptions options = flags.Read(command.Parse(["--port", "9001", "--host", "127.0.0.1", "--router-mode", "kv", "--namespace", "ns1", "--json-logs",
            "--shutdown-drain-timeout", "12.5", "--kv-overlap-score-weight", "2", "--router-temperature", "0.5", "--router-max-queue", "7"]));

        Assert.Equal(FrontendOptions.Default with
        {
            HttpPort = 9001,
            Host = "127.0.0.1",
            JsonLogs = true,
            ShutdownDrainTimeout = TimeSpan.FromSeconds(12.5),
            Processing = ProcessorOptions.Default with
            {
                Namespace = "ns1",
                RouterMode = "kv",
                KvRouter = KvRouterOptions.Default with { OverlapScoreWeight = 2, Temperature = 0.5, MaxQueue = 7 },
            },
        }, options);
    }

    [Fact]
    public void FrontendFlags_NoKvEvents_BoundIntoTheKvRouterOptions()
    {
        var (command, flags) = Frontend();

        KvRouterOptions estimate = flags.Read(command.Parse(["--router-mode", "kv", "--no-kv-events"])).Processing.KvRouter;
        KvRouterOptions ttl = flags.Read(command.Parse(["--router-mode", "kv", "--no-kv-events", "--router-prefix-ttl", "90"])).Processing.KvRouter;

        Assert.Equal(KvRouterOptions.Default with { UseKvEvents = false }, estimate);
        Assert.Equal(KvRouterOptions.Default with { UseKvEvents = false, PrefixTtl = TimeSpan.FromSeconds(90) }, ttl);
        Assert.Contains("its own decisions (--no-kv-events)", KvRouterFlags.CacheSource(estimate));
        Assert.Contains("90 s (--router-prefix-ttl)", KvRouterFlags.CacheSource(ttl));
        Assert.Equal("the workers' KV events", KvRouterFlags.CacheSource(KvRouterOptions.Default));
    }

    [Fact]
    public void FrontendFlags_HttpServer_LimitsKeysAndTlsBound()
    {
        var (command, flags) = Frontend();

        FrontendOptions options = flags.Read(command.Parse(["--max-request-body-bytes", "5000", "--max-request-header-bytes", "4096", "--max-request-headers", "20",
            "--max-request-line-bytes", "1024", "--request-headers-timeout", "2.5", "--min-request-body-rate", "100", "--min-request-body-rate-grace", "3",
            "--api-key", "a1", "--api-key", "a2", "--api-key-file", "keys.txt", "--metrics-require-api-key", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem"]));

        Assert.Equal(["a1", "a2"], options.ApiKeys);
        Assert.Equal(FrontendOptions.Default with
        {
            MaxRequestBodyBytes = 5000,
            MaxRequestHeaderBytes = 4096,
            MaxRequestHeaderCount = 20,
            MaxRequestLineBytes = 1024,
            RequestHeadersTimeout = TimeSpan.FromSeconds(2.5),
            MinRequestBodyBytesPerSecond = 100,
            MinRequestBodyRateGracePeriod = TimeSpan.FromSeconds(3),
            ApiKeys = options.ApiKeys,
            ApiKeyFile = "keys.txt",
            MetricsRequireApiKey = true,
            TlsCertificateFile = "c.pem",
            TlsKeyFile = "k.pem",
        }, options);
    }

    [Fact]
    public void FrontendFlags_OverloadLimits_BoundIntoAdmissionAndRouterOptions()
    {
        var (command, flags) = Frontend();

        FrontendOptions options = flags.Read(command.Parse(["--max-inflight-requests", "8", "--max-queued-requests", "0", "--queue-timeout", "2.5",
            "--max-inflight-per-client", "3", "--max-inflight-per-model", "5", "--request-timeout", "0", "--router-queue-timeout", "4"]));

        Assert.Equal(AdmissionOptions.Default with
        {
            MaxInflightRequests = 8,
            MaxQueuedRequests = 0,
            QueueTimeout = TimeSpan.FromSeconds(2.5),
            MaxInflightPerClient = 3,
            MaxInflightPerModel = 5,
            RequestTimeout = TimeSpan.Zero,
        }, options.Admission);
        Assert.Equal(TimeSpan.FromSeconds(4), options.Processing.KvRouter.QueueTimeout);
        options.Validate();
    }

    [Fact]
    public void EngineFlags_GuideSpellings_BoundIntoEngineOptions()
    {
        var command = new Command("worker");
        EngineFlags flags = EngineFlags.AddTo(command);

        EngineOptions options = flags.Read(command.Parse(["--page-size", "32", "--max-running-requests", "9", "--chunked-prefill-size", "256", "--max-model-len", "1024",
            "--gpu-memory-utilization", "0.5", "--kv-cache-memory", "1000000", "--no-enable-prefix-caching", "--kv-cache-dtype", "f32"]));

        Assert.Equal(EngineOptions.Default with
        {
            BlockSize = 32,
            MaxNumSeqs = 9,
            MaxNumBatchedTokens = 256,
            ContextLength = 1024,
            KvCacheMemoryFraction = 0.5,
            KvCacheMemory = 1_000_000,
            PrefixCaching = false,
            KvCacheDtype = KvCacheDtype.F32,
        }, options);
    }

    [Fact]
    public void EngineFlags_NoKvCacheDtype_F16AsLlamaCpp()
    {
        var command = new Command("worker");
        EngineFlags flags = EngineFlags.AddTo(command);

        EngineOptions options = flags.Read(command.Parse([]));

        Assert.Equal(KvCacheDtype.F16, options.KvCacheDtype);
        Assert.Equal(EngineOptions.Default, options);
    }

    [Fact]
    public void EngineFlags_MaxStepMs_BoundOrLeftToTheEngine()
    {
        var command = new Command("worker");
        EngineFlags flags = EngineFlags.AddTo(command);

        Assert.Equal(EngineOptions.Default with { MaxStepMs = 80 }, flags.Read(command.Parse(["--max-step-ms", "80"])));
        Assert.Equal(0, flags.Read(command.Parse(["--max-step-ms", "0"])).MaxStepMs);
        Assert.Null(flags.Read(command.Parse([])).MaxStepMs);
    }

    [Fact]
    public void WorkerSettings_MaxStepMs_TheMockersOnlyWhenGiven()
    {
        var worker = new WorkerSettings { EngineKind = "mocker" };

        Assert.Equal(MockerOptions.Default.MaxStepMs, worker.MockerFor(vocabSize: 100, workerId: 1).MaxStepMs);
        Assert.Equal(25, (worker with { Engine = EngineOptions.Default with { MaxStepMs = 25 } }).MockerFor(vocabSize: 100, workerId: 1).MaxStepMs);
    }

    [Theory]
    [InlineData("error: --max-step-ms must be a finite number of milliseconds, 0 (off) or more (got -1)", "run", "out=echo", "--max-step-ms", "-1")]
    [InlineData("error: --max-step-ms must be a finite number of milliseconds, 0 (off) or more (got -5)", "worker", "--engine", "mocker", "--max-step-ms", "-5")]
    [InlineData("error: --http-port: 70000 is not a port (0..65535, 0 = any free port)", "frontend", "--http-port", "70000")]
    [InlineData("error: --router-mode: 'nope' is not one of round-robin, random, kv", "frontend", "--router-mode", "nope")]
    [InlineData("error: --namespace: 'a.b' must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'", "frontend", "--namespace", "a.b")]
    [InlineData("error: --router-temperature must be a finite number, 0 or more (got -1)", "run", "out=echo", "--router-temperature", "-1")]
    [InlineData("error: --max-num-seqs must be at least 1 (got 0)", "run", "out=echo", "--max-num-seqs", "0")]
    [InlineData("error: --engine: 'bogus' is not dynamo, echo or mocker", "worker", "--engine", "bogus")]
    [InlineData("error: --speedup-ratio must be positive (got 0)", "worker", "--engine", "mocker", "--speedup-ratio", "0")]
    [InlineData("error: --threads: 0 must be at least 1", "worker", "--engine", "echo", "--threads", "0")]
    [InlineData("error: --dist-init-addr: 'nonsense' is not HOST:PORT", "worker", "--model", "m.gguf", "--tp", "2", "--dist-init-addr", "nonsense")]
    [InlineData("error: --nnodes: 3 nodes cannot hold the same number of the 4 ranks", "worker", "--model", "m.gguf", "--tp", "4", "--nnodes", "3", "--dist-init-addr", "127.0.0.1:1")]
    [InlineData("error: --rank-timeout: 1 s is outside [2, 3600] (rank 0 speaks every second)", "worker", "--model", "m.gguf", "--tp", "2", "--rank-timeout", "1")]
    [InlineData("error: --dp-size: 0 is outside 1..256", "worker", "--engine", "echo", "--dp-size", "0")]
    [InlineData("error: --dp-size: 2 replicas with --pipeline-parallel-size 2 is not supported yet; use one of them", "worker", "--model", "m.gguf", "--pp", "2", "--dp-size", "2")]
    [InlineData("error: --dp-size: 2 replicas cannot share --tensor-parallel-size 3 ranks evenly (--enable-dp-attention gives each replica tp / dp ranks)", "worker", "--model", "m.gguf", "--tp", "3", "--dp-size", "2", "--enable-dp-attention")]
    [InlineData("error: --dp-size: 2 replicas of 2 tensor-parallel ranks each is not supported yet; use --tp 2 --dp-size 2 --enable-dp-attention, or --dp-size 2 alone (each replica the whole model)", "worker", "--model", "m.gguf", "--tp", "4", "--dp-size", "2", "--enable-dp-attention")]
    [InlineData("error: --nnodes: 2 nodes cannot hold the same number of the 3 data-parallel replicas", "worker", "--engine", "echo", "--dp-size", "3", "--tp", "3", "--enable-dp-attention", "--nnodes", "2", "--dist-init-addr", "127.0.0.1:1")]
    [InlineData("error: --tensor-parallel-size 2 with --pipeline-parallel-size 2: combining tensor and pipeline parallelism is not supported yet; use one of them", "worker", "--model", "m.gguf", "--tp", "2", "--pp", "2")]
    [InlineData("error: --pipeline-parallel-size: 0 must be at least 1", "worker", "--model", "m.gguf", "--pipeline-parallel-size", "0")]
    [InlineData("error: --nnodes: 3 must be at least 1 and at most --pipeline-parallel-size (2)", "worker", "--model", "m.gguf", "--pp-size", "2", "--nnodes", "3", "--dist-init-addr", "127.0.0.1:1")]
    [InlineData("error: --pp-micro-batches: only a pipeline-parallel worker (--pipeline-parallel-size > 1) cuts its passes into micro-batches", "worker", "--model", "m.gguf", "--pp-micro-batches", "2")]
    [InlineData("error: --pp-micro-batches: 0 is outside 1..4096", "worker", "--model", "m.gguf", "--pp", "2", "--pp-micro-batches", "0")]
    [InlineData("error: --pipeline-parallel-size 2: a prefill worker sends KV to decode workers, and KV transfer with pipeline parallelism is not supported yet (serve it aggregated)", "worker", "--model", "m.gguf", "--pp", "2", "--is-prefill-worker")]
    [InlineData("error: --max-request-header-bytes: 10 must be at least 1024", "frontend", "--max-request-header-bytes", "10")]
    [InlineData("error: --request-headers-timeout: 0.5 s must be at least 1 s", "run", "out=echo", "--request-headers-timeout", "0.5")]
    [InlineData("error: --shutdown-drain-timeout: -1 s is outside 0..3600 s", "frontend", "--shutdown-drain-timeout", "-1")]
    [InlineData("error: --shutdown-drain-timeout: 7200 s is outside 0..3600 s", "run", "out=echo", "--shutdown-drain-timeout", "7200")]
    [InlineData("error: --tls-key-file: required with --tls-cert-file (HTTPS needs both)", "run", "out=echo", "--tls-cert-file", "cert.pem")]
    [InlineData("error: --api-key-file: '/nonexistent/keys' does not exist", "frontend", "--api-key-file", "/nonexistent/keys")]
    [InlineData("error: --max-inflight-requests: 0 is outside 1..1000000", "frontend", "--max-inflight-requests", "0")]
    [InlineData("error: --queue-timeout: 0 s is outside (0, 3600] s", "run", "out=echo", "--queue-timeout", "0")]
    [InlineData("error: --request-timeout: -1 s is outside 0..604800 s (0: none)", "frontend", "--request-timeout", "-1")]
    [InlineData("error: --max-inflight-per-client: -1 must be 0 (no limit) or more", "frontend", "--max-inflight-per-client", "-1")]
    [InlineData("error: --router-queue-timeout must be above 0 and at most 3600 seconds (got 0)", "router", "--router-queue-timeout", "0")]
    [InlineData("error: --drain-timeout: -5 s is outside 0..3600 s", "router", "--drain-timeout", "-5")]
    [InlineData("error: --router-prefix-ttl must be above 0 and at most 86400 seconds (got 0)", "router", "--no-kv-events", "--router-prefix-ttl", "0")]
    [InlineData("error: --router-prefix-ttl must be above 0 and at most 86400 seconds (got -5)", "frontend", "--router-mode", "kv", "--no-kv-events", "--router-prefix-ttl", "-5")]
    [InlineData("error: --router-prefix-ttl: only with --no-kv-events (with KV events the index is the cache's truth and a completed prefix counts only while its events travel)", "router", "--router-prefix-ttl", "60")]
    [InlineData("error: --max-waiting-requests: 0 must be at least 1", "worker", "--engine", "echo", "--max-waiting-requests", "0")]
    [InlineData("error: --kv-cache-dtype: 'q4' is not f16 or f32", "worker", "--engine", "echo", "--kv-cache-dtype", "q4")]
    public void BadFlag_BeforeAnythingStarts_OneLineNamingItAndExitCode1(string expected, params string[] args)
    {
        // Nothing listens on these addresses: a bad flag must fail before any connection is tried.
        CliProcess.Result r = CliProcess.Run(args);

        Assert.Equal(1, r.ExitCode);
        Assert.Equal(expected, Assert.Single(r.StderrLines));
    }
}
