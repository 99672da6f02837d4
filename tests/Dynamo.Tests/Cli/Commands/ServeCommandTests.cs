using System.CommandLine;
using Dynamo.Cli;
using Dynamo.Cli.Commands;
using Dynamo.Cli.Components;
using Dynamo.Components.Processing;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;

namespace Dynamo.Tests.Cli.Commands;

/// <summary>A serve config's sections bound into the components' options records, as `dynamo serve` does before starting anything.</summary>
public class ServeCommandTests
{
    private static ServeConfig Config(string yaml)
    {
        string dir = Path.Combine(Path.GetTempPath(), "dynamo-serve-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "config.yaml");
        File.WriteAllText(path, yaml);
        return ServeConfig.Load(path);
    }

    [Fact]
    public void Bind_EverySection_OptionsRecordsWithCommonUnderneath()
    {
        ServeConfig config = Config("""
            Common:
              block-size: 32
            Frontend:
              port: 8123
            Processor:
              router: kv
            Router:
              kv-overlap-score-weight: 2
            VllmWorker:
              engine: mocker
              served_model_name: m
              num-gpu-blocks: 100
              speedup-ratio: 5
              lease-ttl: 3
              ServiceArgs:
                workers: 2
            """);

        ServeCommand.Plan plan = ServeCommand.Bind(["Frontend", "Processor", "Router", "VllmWorker"], config, TextWriter.Null);

        KvRouterOptions kv = KvRouterOptions.Default with { OverlapScoreWeight = 2, BlockSize = 32 };
        Assert.Equal(kv, plan.Router);
        Assert.Equal(ProcessorOptions.Default with { RouterMode = "kv", KvRouter = kv }, plan.Processor);
        Assert.Equal(FrontendOptions.Default with { HttpPort = 8123, Processing = ProcessorOptions.Default with { RouterMode = "kv", KvRouter = kv } }, plan.Frontend);
        var (worker, runtime, replicas) = Assert.Single(plan.Workers);
        Assert.Equal(2, replicas);
        Assert.Equal(TimeSpan.FromSeconds(3), runtime.LeaseTtl);
        Assert.Equal("mocker", worker.EngineKind);
        Assert.Equal("m", worker.Name);
        Assert.Equal(EngineOptions.Default with { BlockSize = 32 }, worker.Engine);
        Assert.Equal(MockerOptions.Default with { NumGpuBlocks = 100, SpeedupRatio = 5 }, worker.Mocker);
        Assert.Equal(32, worker.MockerFor(vocabSize: 500, workerId: 7).BlockSize);
    }

    [Fact]
    public void Bind_WorkerMaxStepMs_BoundIntoTheEngineAndTheMocker()
    {
        ServeConfig config = Config("""
            VllmWorker:
              engine: mocker
              served_model_name: m
              max-step-ms: 40
            """);

        var (worker, _, _) = Assert.Single(ServeCommand.Bind(["VllmWorker"], config, TextWriter.Null).Workers);

        Assert.Equal(EngineOptions.Default with { MaxStepMs = 40 }, worker.Engine);
        Assert.Equal(40, worker.MockerFor(vocabSize: 500, workerId: 7).MaxStepMs);
    }

    [Fact]
    public void Bind_FrontendAlone_RoutesByItsOwnSection()
    {
        ServeConfig config = Config("""
            Frontend:
              host: 127.0.0.1
              namespace: other
              router-mode: random
            """);

        ServeCommand.Plan plan = ServeCommand.Bind(["Frontend"], config, TextWriter.Null);

        Assert.Equal(FrontendOptions.Default with { Host = "127.0.0.1", Processing = ProcessorOptions.Default with { Namespace = "other", RouterMode = "random" } }, plan.Frontend);
        Assert.Null(plan.Processor);
        Assert.Null(plan.Router);
        Assert.Empty(plan.Workers);
    }

    [Fact]
    public void Bind_FrontendHttpKeys_LimitsKeyFileAndTlsBound()
    {
        string keys = Path.Combine(Path.GetTempPath(), $"dynamo-serve-keys-{Guid.NewGuid():N}");
        File.WriteAllText(keys, "k1\n");
        try
        {
            ServeConfig config = Config($"""
                Frontend:
                  max-request-body-bytes: 4096
                  max-request-header-bytes: 2048
                  max-request-headers: 30
                  max-request-line-bytes: 700
                  request-headers-timeout: 4
                  min-request-body-rate: 50
                  min-request-body-rate-grace: 2.5
                  shutdown-drain-timeout: 45
                  api-key-file: {keys}
                  metrics-require-api-key: true
                """);

            ServeCommand.Plan plan = ServeCommand.Bind(["Frontend"], config, TextWriter.Null);

            FrontendOptions f = plan.Frontend!;
            Assert.Equal((4096L, 2048, 30, 700), (f.MaxRequestBodyBytes, f.MaxRequestHeaderBytes, f.MaxRequestHeaderCount, f.MaxRequestLineBytes));
            Assert.Equal((TimeSpan.FromSeconds(4), 50.0, TimeSpan.FromSeconds(2.5)), (f.RequestHeadersTimeout, f.MinRequestBodyBytesPerSecond, f.MinRequestBodyRateGracePeriod));
            Assert.Equal(TimeSpan.FromSeconds(45), f.ShutdownDrainTimeout);
            Assert.Equal((keys, true, (string?)null), (f.ApiKeyFile, f.MetricsRequireApiKey, f.TlsCertificateFile));
        }
        finally
        {
            File.Delete(keys);
        }
    }

    [Fact]
    public void Bind_DrainAndTensorParallelKeys_BoundIntoProcessorRouterAndWorker()
    {
        ServeConfig config = Config("""
            Processor:
              drain-timeout: 7
            Router:
              drain-timeout: 0
            VllmWorker:
              tensor-parallel-size: 2
              dist-init-addr: 127.0.0.1:29511
              rank-timeout: 9
            """);

        var log = new StringWriter();
        ServeCommand.Plan plan = ServeCommand.Bind(["Processor", "Router", "VllmWorker"], config, log);

        Assert.Equal((TimeSpan.FromSeconds(7), TimeSpan.Zero), (plan.ProcessorDrain, plan.RouterDrain));
        TensorParallelSettings tp = plan.Workers[0].Settings.TensorParallel;
        Assert.Equal((2, "127.0.0.1:29511", TimeSpan.FromSeconds(9)), (tp.Size, tp.InitAddress, tp.RankTimeout));
        Assert.DoesNotContain("drain-timeout is accepted but has no effect", log.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("tensor", log.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Bind_DataParallelKeys_ReplicasOfOneRankEach()
    {
        ServeConfig config = Config("""
            SglangWorker:
              engine: echo
              tp: 4
              dp-size: 4
              enable-dp-attention: true
            """);

        var log = new StringWriter();
        ServeCommand.Plan plan = ServeCommand.Bind(["SglangWorker"], config, log);

        WorkerSettings worker = plan.Workers[0].Settings;
        Assert.Equal((4, true, 4, 0), (worker.DataParallel.Size, worker.DataParallel.Attention, worker.DataParallel.LocalSize, worker.DataParallel.FirstLocalRank));
        Assert.False(worker.TensorParallel.Enabled);
        Assert.DoesNotContain("dp-size", log.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("enable-dp-attention", log.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Bind_OverloadKeys_BoundIntoFrontendRouterAndWorkerOptions()
    {
        ServeConfig config = Config("""
            Frontend:
              max-inflight-requests: 64
              max-queued-requests: 128
              queue-timeout: 10
              max-inflight-per-client: 4
              max-inflight-per-model: 32
              request-timeout: 120
            Router:
              router-queue-timeout: 7
            VllmWorker:
              engine: echo
              max-waiting-requests: 16
            """);

        ServeCommand.Plan plan = ServeCommand.Bind(["Frontend", "Router", "VllmWorker"], config, TextWriter.Null);

        // The keys mean what the flags of the same names mean (OptionsBindingTests binds each flag).
        var frontend = new Command("frontend");
        FrontendFlags flags = FrontendFlags.AddTo(frontend);
        AdmissionOptions fromFlags = flags.Read(frontend.Parse(["--max-inflight-requests", "64", "--max-queued-requests", "128", "--queue-timeout", "10",
            "--max-inflight-per-client", "4", "--max-inflight-per-model", "32", "--request-timeout", "120"])).Admission;
        Assert.Equal(fromFlags, plan.Frontend!.Admission);
        Assert.NotEqual(AdmissionOptions.Default, fromFlags);
        Assert.Equal(TimeSpan.FromSeconds(7), plan.Router!.QueueTimeout);
        Assert.Equal(TimeSpan.FromSeconds(7), plan.Frontend.Processing.KvRouter.QueueTimeout);
        Assert.Equal(16, Assert.Single(plan.Workers).Settings.MaxWaitingRequests);
    }

    [Theory]
    [InlineData("Frontend:\n  port: 70000\n", "Frontend", "Frontend: --http-port: 70000 is not a port (0..65535, 0 = any free port)")]
    [InlineData("Frontend:\n  tls-key-file: key.pem\n", "Frontend", "Frontend: --tls-cert-file: required with --tls-key-file (HTTPS needs both)")]
    [InlineData("Processor:\n  router: bogus\n", "Processor", "Processor: --router-mode: 'bogus' is not one of round-robin, random, kv")]
    [InlineData("Router:\n  router-temperature: -1\n", "Router", "Router: --router-temperature must be a finite number, 0 or more (got -1)")]
    [InlineData("Router:\n  no-kv-events: true\n  router-prefix-ttl: 0\n", "Router", "Router: --router-prefix-ttl must be above 0 and at most 86400 seconds (got 0)")]
    [InlineData("Router:\n  router-replica-heartbeat: 10\n  router-peer-charge-ttl: 15\n", "Router", "Router: --router-peer-charge-ttl must be at least twice --router-replica-heartbeat (20 s) and at most 86400 seconds (got 15)")]
    [InlineData("VllmWorker:\n  engine: mocker\n  max-num-seqs: 0\n", "VllmWorker", "VllmWorker: --max-num-seqs must be at least 1 (got 0)")]
    [InlineData("Frontend:\n  max-queued-requests: -1\n", "Frontend", "Frontend: --max-queued-requests: -1 is outside 0..1000000 (0: no request waits)")]
    [InlineData("Frontend:\n  shutdown-drain-timeout: -2\n", "Frontend", "Frontend: --shutdown-drain-timeout: -2 s is outside 0..3600 s")]
    [InlineData("VllmWorker:\n  engine: echo\n  max-waiting-requests: 0\n", "VllmWorker", "VllmWorker: --max-waiting-requests: 0 must be at least 1")]
    [InlineData("VllmWorker:\n  engine: mocker\n  kv-cache-dtype: q4_0\n", "VllmWorker", "VllmWorker: --kv-cache-dtype: 'q4_0' is not f16 or f32")]
    public void Bind_BadValue_UsageErrorNamingTheFileSectionAndFlag(string yaml, string component, string expected)
    {
        ServeConfig config = Config(yaml);

        var e = Assert.Throws<CliUsageException>(() => ServeCommand.Bind([component], config, TextWriter.Null));

        Assert.Equal($"{config.Source}: {expected}", e.Message);
    }

    [Fact]
    public void Bind_RouterWithoutKvEvents_BoundIntoTheRouterOptions()
    {
        ServeConfig config = Config("Router:\n  no-kv-events: true\n  router-prefix-ttl: 45\n");

        ServeCommand.Plan plan = ServeCommand.Bind(["Router"], config, TextWriter.Null);

        Assert.False(plan.Router!.UseKvEvents);
        Assert.Equal(TimeSpan.FromSeconds(45), plan.Router.PrefixTtl);
    }

    [Fact]
    public void Bind_RouterReplicaKeys_BoundIntoTheRouterOptionsAsTheRouterFlagsAre()
    {
        ServeConfig config = Config("Router:\n  router-replica-heartbeat: 3\n  router-peer-charge-ttl: 90\n");

        using var log = new StringWriter();

        ServeCommand.Plan plan = ServeCommand.Bind(["Router"], config, log);

        Assert.Equal(TimeSpan.FromSeconds(3), plan.Router!.ReplicaHeartbeat);
        Assert.Equal(TimeSpan.FromSeconds(90), plan.Router.PeerChargeTtl);
        Assert.DoesNotContain("has no effect", log.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Bind_RouterWithoutReplicaKeys_KeepsTheDefaults()
    {
        ServeCommand.Plan plan = ServeCommand.Bind(["Router"], Config("Router:\n  block-size: 16\n"), TextWriter.Null);

        Assert.Equal(KvRouterOptions.Default.ReplicaHeartbeat, plan.Router!.ReplicaHeartbeat);
        Assert.Equal(KvRouterOptions.Default.PeerChargeTtl, plan.Router.PeerChargeTtl);
    }

    [Theory]
    [InlineData("", KvCacheDtype.F16)]
    [InlineData("  kv-cache-dtype: f32\n", KvCacheDtype.F32)]
    [InlineData("  kv_cache_dtype: f16\n", KvCacheDtype.F16)]
    public void Bind_KvCacheDtype_BoundIntoEngineOptionsF16ByDefault(string line, KvCacheDtype expected)
    {
        ServeConfig config = Config("VllmWorker:\n  engine: mocker\n" + line);

        ServeCommand.Plan plan = ServeCommand.Bind(["VllmWorker"], config, TextWriter.Null);

        Assert.Equal(EngineOptions.Default with { KvCacheDtype = expected }, Assert.Single(plan.Workers).Settings.Engine);
    }
}
