using Dynamo.Cli;
using Dynamo.Cli.Commands;
using Dynamo.Cli.Components;

namespace Dynamo.Tests.Cli.Components;

/// <summary>The repository's own graphs/ and components/ files, resolved as `dynamo serve` does.</summary>
public class ServeGraphTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Dynamo.slnx")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return dir ?? throw new InvalidOperationException("repository root not found");
    }

    [Theory]
    [InlineData("graphs.agg", "Frontend", new[] { "Frontend", "Processor", "VllmWorker" })]
    [InlineData("graphs.agg_router", "Frontend", new[] { "Frontend", "Processor", "Router", "VllmWorker" })]
    [InlineData("graphs.disagg", "Frontend", new[] { "Frontend", "Processor", "VllmWorker", "PrefillWorker" })]
    [InlineData("graphs.disagg_router", "Frontend", new[] { "Frontend", "Processor", "Router", "VllmWorker", "PrefillWorker" })]
    [InlineData("components.prefill_worker", "PrefillWorker", new[] { "PrefillWorker" })]
    [InlineData("components.worker", "VllmWorker", new[] { "VllmWorker", "PrefillWorker" })]
    public void Closure_GuideGraphs_StartTheLinkedComponents(string module, string root, string[] expected)
    {
        ServeGraph graph = ServeGraph.Load(module, [Root]);
        Assert.Equal(expected, graph.Closure(root));
        Assert.All(expected, c => ServeCommand.KindOf(c));
    }

    [Fact]
    public void Load_UnknownModuleOrComponent_ClearErrors()
    {
        var e = Assert.Throws<CliUsageException>(() => ServeGraph.Load("graphs.nope", [Root]));
        Assert.Contains("graphs/nope.yaml not found", e.Message);
        var e2 = Assert.Throws<CliUsageException>(() => ServeGraph.Load("graphs.agg", [Root]).Closure("Nope"));
        Assert.Contains("no component 'Nope'", e2.Message);
    }

    [Fact]
    public void Config_CommonInheritedOwnKeysWinAndUnusedKeysReported()
    {
        string path = Path.Combine(Path.GetTempPath(), $"serve-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, """
            Common:
              served_model_name: m
              block-size: 32
            VllmWorker:
              block_size: 64
              remote-prefill: true
              ServiceArgs:
                workers: 3
            """);
        try
        {
            ServeConfig config = ServeConfig.Load(path);
            ComponentConfig worker = config.For("VllmWorker");
            Assert.Equal(64, worker.Int("block-size"));
            Assert.Equal("m", worker.String("served_model_name"));
            Assert.Equal(3, worker.Replicas());
            Assert.Equal(["remote_prefill"], worker.Unused());
            Assert.Equal(32, config.For("PrefillWorker").Int("block_size"));
            var bad = Assert.Throws<CliUsageException>(() => config.For("VllmWorker").Bool("served_model_name"));
            Assert.Contains("VllmWorker.served_model_name", bad.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("agg.yaml")]
    [InlineData("agg_router.yaml")]
    [InlineData("disagg.yaml")]
    [InlineData("disagg_router.yaml")]
    [InlineData("multinode-405b.yaml")]
    [InlineData("multinode_llama49b.yaml")]
    [InlineData("multinode_agg_r1.yaml")]
    [InlineData("multinode_disagg_r1.yaml")]
    [InlineData("mutinode_disagg_r1.yaml")]
    [InlineData("tinystories.yaml")]
    [InlineData("mocker.yaml")]
    public void Configs_ShippedFilesParse(string file)
    {
        ServeConfig config = ServeConfig.Load(Path.Combine(Root, "configs", file));
        Assert.True(config.For("VllmWorker").Replicas() >= 1);
    }
}
