using System.Globalization;
using System.Text.RegularExpressions;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Pipeline parallelism as users start it: `worker --pipeline-parallel-size 2` (the command starts rank 1 as a process
/// of its own) over real nats-server and etcd and a frontend: chat requests through the frontend give the same greedy
/// text as a one-process worker, alone and batched; a lost stage takes the worker out of discovery naming the rank.
/// </summary>
[Trait("Category", "Slow")]
public sealed partial class PipelineParallelProcessTests
{
    private static readonly string[] Questions = ["Tell me a story", "What is the capital of France?", "Count to five"];

    [Fact]
    public async Task OneHost_Pp2_ChatGreedyTextEqualsPp1_AloneAndBatched_OnlyRankZeroRegistered()
    {
        await using LoopbackServers s = await LoopbackServers.StartAsync();
        await using DynamoProcess one = Worker(s, "one", TestModels.Tiny.Value, 1);
        await using DynamoProcess two = Worker(s, "two", TestModels.Tiny.Value, 2, "--pp-micro-batches", "2");
        await one.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await two.WaitForLineAsync("serving dynamo.backend.generate", 120);
        Assert.Equal(2, Regex.Matches(two.Output, "joined at").Count);
        Assert.Contains("this stage runs layers 1-1 and the output", two.Output, StringComparison.Ordinal);
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["one"] = 1, ["two"] = 1 });

        string[] alone = new string[Questions.Length];
        for (int i = 0; i < Questions.Length; i++)
        {
            alone[i] = await s.ChatAsync("one", Questions[i]);
            Assert.Equal(alone[i], await s.ChatAsync("two", Questions[i]));
        }

        // Together: concurrent requests share passes, cut into micro-batches, and give the same text as alone.
        string[] together = await Task.WhenAll(Questions.Concat(Questions).Select(q => s.ChatAsync("two", q)));
        Assert.Equal([.. alone, .. alone], together);

        two.Terminate();
        Assert.Equal(0, await two.WaitForExitAsync(60));
        Assert.Contains("rank 1: rank 0 stopped", two.Output, StringComparison.Ordinal);
    }

    [SharedFact]
    public async Task KillRankOne_Pp2_WorkerLeavesDiscovery_ExitsOneNamingTheRank()
    {
        await using LoopbackServers s = await LoopbackServers.StartAsync(["--migration-limit", "0"]);
        await using DynamoProcess two = Worker(s, "two", SharedData.Path("models", "tinystories-656k"), 2);
        await two.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["two"] = 1 });
        int rankOne = int.Parse(RankPid().Match(two.Output).Groups[1].Value, CultureInfo.InvariantCulture);

        Signal("-KILL", rankOne);
        Assert.Equal(1, await two.WaitForExitAsync(60));
        Assert.Matches("rank 0: rank 1 (is gone|left the group)", two.Output);
        Assert.Contains("leaving discovery and exiting", two.Output, StringComparison.Ordinal);
        await s.WaitForModelsAsync(new Dictionary<string, int>());
    }

    [SharedFact]
    public async Task StopRankOne_DuringARequest_SilentPastRankTimeout_WorkerLeavesDiscoveryNamingIt()
    {
        await using LoopbackServers s = await LoopbackServers.StartAsync(["--migration-limit", "0"]);
        await using DynamoProcess two = Worker(s, "two", SharedData.Path("models", "tinystories-656k"), 2, "--rank-timeout", "10");
        await two.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["two"] = 1 });
        int rankOne = int.Parse(RankPid().Match(two.Output).Groups[1].Value, CultureInfo.InvariantCulture);

        // Rank 1 frozen, a request's first pass waits for its stage: 10 s later (not less: a live rank on a loaded machine
        // must never look silent) rank 0 counts it lost, fails the request and leaves discovery.
        Signal("-STOP", rankOne);
        try
        {
            Task<string> answer = s.ChatAsync("two", "Once upon a time", expectSuccess: false);
            Assert.Equal(1, await two.WaitForExitAsync(90));
            Assert.Matches(@"rank 0: rank 1 [a-z ]+ for 10 s", two.Output);
            Assert.Contains("leaving discovery and exiting", two.Output, StringComparison.Ordinal);
            await s.WaitForModelsAsync(new Dictionary<string, int>());
            await answer.WaitAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            Signal("-KILL", rankOne);
        }
    }

    private static void Signal(string signal, int pid) => DynamoProcess.Signal(signal, pid);

    private static DynamoProcess Worker(LoopbackServers s, string name, string model, int stages, params string[] extra) =>
        DynamoProcess.Start(["worker", "--model", model, "--served-model-name", name, "--pp", stages.ToString(CultureInfo.InvariantCulture), "--threads", "1", "--lease-ttl", "3", .. extra], s.Environment);

    [SharedFact]
    public async Task TwoHosts_Pp2AcrossNetworkNamespaces_StagesOverTcp_SameTextAsPp1()
    {
        string model = SharedData.Path("models", "tinystories-656k");
        using NetworkNamespaces net = NetworkNamespaces.Create(3);
        await using HeadNode head = await HeadNode.StartAsync(net);
        Dictionary<string, string> env = head.Environment;
        string init = $"{net.Address(1)}:29500";
        await using DynamoProcess whole = DynamoProcess.Start(["worker", "--model", model, "--component", "one", "--threads", "1"], env, net.Host(1));
        await using DynamoProcess node0 = DynamoProcess.Start(
            ["worker", "--model", model, "--component", "two", "--pp", "2", "--nnodes", "2", "--node-rank", "0", "--dist-init-addr", init, "--threads", "1"], env, net.Host(1));
        await using DynamoProcess node1 = DynamoProcess.Start(
            ["worker", "--model", model, "--pp", "2", "--nnodes", "2", "--node-rank", "1", "--dist-init-addr", init, "--threads", "1"], env, net.Host(2));
        await whole.WaitForLineAsync("serving dynamo.one.generate", 120);
        await node0.WaitForLineAsync("serving dynamo.two.generate", 120);
        await node1.WaitForLineAsync("rank 1 of 2 joined", 10);
        Assert.Contains("this stage runs layers 1-1 and the output", node1.Output, StringComparison.Ordinal);

        foreach (string prompt in new[] { "Once upon a time", "The little dog", "Tom and Sue went to the park and" })
        {
            Assert.Equal(await head.CallAsync(net, "one", prompt), await head.CallAsync(net, "two", prompt));
        }

        node0.Terminate();
        Assert.Equal(0, await node0.WaitForExitAsync(60));
        Assert.Equal(0, await node1.WaitForExitAsync(60));
    }

    [Fact]
    public async Task Start_TensorAndPipelineTogether_OneLineError()
    {
        await using DynamoProcess both = DynamoProcess.Start(["worker", "--model", TestModels.Tiny.Value, "--tp", "2", "--pp", "2"]);
        Assert.NotEqual(0, await both.WaitForExitAsync(60));
        Assert.Contains("--tensor-parallel-size 2 with --pipeline-parallel-size 2: combining tensor and pipeline parallelism is not supported yet", both.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", both.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_MoreStagesThanLayers_OrAPrefillWorker_OneLineErrors()
    {
        await using LoopbackServers s = await LoopbackServers.StartAsync();
        await using (DynamoProcess deep = Worker(s, "deep", TestModels.Tiny.Value, 3))
        {
            Assert.NotEqual(0, await deep.WaitForExitAsync(60));
            Assert.Contains("--pipeline-parallel-size 3: the model has 2 layers; every stage needs at least one", deep.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", deep.Output, StringComparison.Ordinal);
        }

        await using DynamoProcess prefill = DynamoProcess.Start(["worker", "--model", TestModels.Tiny.Value, "--pp-size", "2", "--is-prefill-worker"]);
        Assert.NotEqual(0, await prefill.WaitForExitAsync(60));
        Assert.Contains("KV transfer with pipeline parallelism is not supported yet", prefill.Output, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"started rank 1 of \d+ \(pid (\d+)\)")]
    private static partial Regex RankPid();
}
