using Dynamo.Cli;
using Dynamo.Cli.Commands;
using Dynamo.Cli.Components;
using Dynamo.Components.KvTransfer;
using Dynamo.Frontend;
using Dynamo.Mocker;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Components;

/// <summary>Every listener's bind address: loopback unless a flag or a config key says otherwise, and how startup describes it.</summary>
public class ListenerDefaultsTests
{
    [Fact]
    public void Defaults_EveryListener_Loopback()
    {
        Assert.Equal("127.0.0.1", FrontendOptions.Default.Host);
        Assert.Equal("127.0.0.1", new WorkerSettings().SystemHost);
        Assert.Equal(("127.0.0.1", (string?)null), new WorkerSettings().KvTransferBinding);
        Assert.Equal("127.0.0.1", KvTransferServerOptions.Default.BindAddress);
    }

    [Theory]
    [InlineData(null, "127.0.0.1", null)]
    [InlineData("10.0.0.2", "10.0.0.2", null)]
    [InlineData("0.0.0.0", "0.0.0.0", null)]
    [InlineData("::", "::", null)]
    [InlineData("decode-1.cluster.local", "0.0.0.0", "decode-1.cluster.local")]
    public void KvTransferBinding_Host_BindAndAdvertised(string? host, string bind, string? advertised)
    {
        Assert.Equal((bind, advertised), (new WorkerSettings { KvTransferHost = host }).KvTransferBinding);
    }

    [Theory]
    [InlineData("mocker", -0.5, "--kv-event-loss must be 0..1")]
    [InlineData("mocker", 1.5, "--kv-event-loss must be 0..1")]
    [InlineData("echo", 0.5, "--kv-event-loss is a fault injection of the mocker engine (--engine mocker); --engine echo loses no KV events")]
    public void Validate_KvEventLoss_OnlyTheMockerAndWithinRange(string engine, double loss, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => new WorkerSettings { EngineKind = engine, Mocker = MockerOptions.Default with { KvEventLoss = loss } }.Validate());

        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("localhost", "--system-host (DYN_SYSTEM_HOST): 'localhost' is not an IP address")]
    [InlineData("", "--system-host (DYN_SYSTEM_HOST): '' is not an IP address")]
    public void Validate_SystemHostNotAnAddress_NamesTheFlag(string host, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => new WorkerSettings { EngineKind = "echo", SystemHost = host }.Validate());

        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("127.0.0.1", 8000, "--http-host", "127.0.0.1:8000 (this host only; --http-host 0.0.0.0 accepts other hosts)")]
    [InlineData("0.0.0.0", 8000, "--http-host", "0.0.0.0:8000 (every interface)")]
    [InlineData("::", 81, "--system-host", "[::]:81 (every interface)")]
    [InlineData("10.0.0.2", 9, "--kv-transfer-host", "10.0.0.2:9")]
    [InlineData("localhost", 9, "--http-host", "localhost:9")]
    public void Describe_BindAddress_SaysWhoCanReachIt(string host, int port, string flag, string expected)
    {
        Assert.Equal(expected, Listeners.Describe(host, port, flag));
    }

    [Fact]
    public void ServeBind_HostKeys_FrontendProcessorAndWorkers()
    {
        string dir = Path.Combine(Path.GetTempPath(), "dynamo-serve-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "config.yaml");
        File.WriteAllText(path, """
            Frontend:
              host: 0.0.0.0
            Processor:
              system-host: 0.0.0.0
              system-port: 9100
            VllmWorker:
              engine: echo
              system-host: 0.0.0.0
              kv-transfer-host: 10.0.0.2
            """);

        ServeCommand.Plan plan = ServeCommand.Bind(["Frontend", "Processor", "VllmWorker"], ServeConfig.Load(path), TextWriter.Null);

        Assert.Equal("0.0.0.0", plan.Frontend!.Host);
        Assert.Equal("0.0.0.0", plan.ProcessorSystemHost);
        WorkerSettings worker = Assert.Single(plan.Workers).Settings;
        Assert.Equal("0.0.0.0", worker.SystemHost);
        Assert.Equal(("10.0.0.2", (string?)null), worker.KvTransferBinding);
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void ShippedMultinodeConfigs_StateTheirBinds()
    {
        foreach (string file in new[] { "multinode-405b.yaml", "multinode_llama49b.yaml", "multinode_disagg_r1.yaml", "mutinode_disagg_r1.yaml" })
        {
            ServeCommand.Plan plan = ServeCommand.Bind(["Frontend", "VllmWorker", "PrefillWorker"], ServeConfig.Load(Path.Combine(RepoPaths.Root, "configs", file)), TextWriter.Null);

            Assert.Equal("0.0.0.0", plan.Frontend!.Host);
            Assert.All(plan.Workers, w => Assert.Equal("0.0.0.0", w.Settings.SystemHost));
            Assert.Equal("0.0.0.0", plan.Workers.Single(w => !w.Settings.IsPrefillWorker).Settings.KvTransferBinding.Bind);
        }
    }
}
