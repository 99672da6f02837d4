using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Cli.Components;
using Dynamo.Tests.Deploy;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Each guide of the seeds (the user guides this project implements) walked command by command, as a user types
/// them: every node a network namespace with its own address (NetworkNamespaces), each node's commands one bash
/// script run from the repository's root, `cd $DYNAMO_HOME/examples/llm` and `./dynamo ...` included, and every curl
/// run from a node of its own ("in another terminal") against the head node's address, its answer checked.
/// Placeholders are filled in: `&lt;node1-ip&gt;`, `&lt;head_node_ip&gt;`, `HEAD_NODE_IP` and the like by node 1's address,
/// `&lt;your-nats-server-address&gt;` by nats://NODE1:4222, `&lt;your-etcd-endpoints-address&gt;` by NODE1:2379, the models of
/// `--model NAME` by the synthesized default model (the one the configs serve when they name none), `/model/` (guide 004,
/// whose prompt is 2048 tokens to the stand-in's byte-level tokenizer) by the same tiny model with an 8192-token context.
///
/// Where a step is GPU- or vendor-specific, or cannot run here, it maps to ours:
/// <list type="bullet">
/// <item>`docker compose -f FILE up -d` (deploy/docker-compose.yml, deploy/metrics/docker-compose.yml,
///   lib/runtime/docker-compose.yml): the file's services are read as Compose reads them (ComposeFilesTests, which
///   checks their images, ports and commands) and the same servers run natively on node 1 on the same ports: nats-server
///   -js on 4222 and etcd on 2379, reachable from node 1 itself on 127.0.0.1 as a published port is
///   (HeadNode asCompose). Docker cannot start containers here.</item>
/// <item>`./container/build.sh`, `./container/run.sh -it` (guide 002): nothing; the CLI is built once (./dynamo runs
///   this build, DYNAMO_CLI) and the commands run in the node's shell.</item>
/// <item>`ray start --head`, `ray start --address=...`, `ray status`, `export VLLM_HOST_IP=...` (guide 001, multi-node
///   sized models): nothing; a worker starts its tensor-parallel ranks itself (tensor-parallel-size in the configs;
///   across nodes with nnodes/node-rank/dist-init-addr, TensorParallelProcessTests).</item>
/// <item>Tensor parallel 8 or 16 (configs, --tensor-parallel-size, --tp): 2, the tiny stand-in's KV heads; guide 004's
///   `--tp 16 --dp-size 16 --enable-dp-attention --nnodes 2` runs as written (16 data-parallel replicas, 8 a node).</item>
/// <item>Model names (nvidia/Llama-3.1-405B-Instruct-FP8, deepseek-ai/DeepSeek-R1, meta-llama/Llama-3.3-70B-Instruct,
///   nvidia/Llama-3_3-Nemotron-Super-49B-v1): served by the synthesized model under that name (configs' served_model_name;
///   `python -m dynamo.vllm --model NAME` -> `./dynamo worker --model TINY --served-model-name NAME`).</item>
/// <item>`python -m dynamo.frontend` -> `./dynamo frontend`; `python -m dynamo.vllm` -> `./dynamo worker`;
///   `python3 components/worker.py` and `components/decode_worker.py` (SGLang) -> `./dynamo worker` with the same flags;
///   `dynamo run` and `dynamo serve` -> `./dynamo run`, `./dynamo serve`.</item>
/// <item>`export NATS_SERVER = '...'` (guides 000 and 001, spaces around `=`: not valid bash) is typed without the spaces.</item>
/// <item>Guide 003's disaggregated commands lack the backslash after `--model ...`: typed with it. Its decode worker
///   gets `--kv-transfer-host 0.0.0.0` (ours listens on 127.0.0.1 unless told, README "Where things listen") and
///   `--max-local-prefill-length 10` (ours prefills prompts under 1000 tokens locally by default), so that the
///   prefill worker on node 2 does prefill; guide 004's decode workers get `--kv-transfer-host 0.0.0.0` too, and its
///   `dynamo run in=http out=dyn` gets `--http-host 0.0.0.0` so that `curl &lt;node-1-ip&gt;:8000` reaches it.</item>
/// <item>Guide 003 sends no request: its deployments are checked with guide 000's curl, from node 1.</item>
/// <item>Guide 002's single 405B request and its 49B request are sent as written (max_tokens 7500 and 1500: the configs
///   standing in for those models have contexts of 8192 and 4096 tokens, as the stand-in's byte-level tokenizer spells
///   the Eldoria prompt in 1260 tokens). Its stress test's 100 requests ask for 1000 tokens each instead of 7500, to keep
///   the walk to seconds (750,000 tokens would take many minutes on two cores). Its stress
///   test (`seq 1 100 | xargs -n1 -P100 curl ... -o output.txt ...`) runs as written: xargs appends each number as one
///   more URL, which curl fails on, and the 100 answers overwrite one output.txt, so it is checked by the frontend's
///   count of successful requests instead.</item>
/// <item>Guide 004's curl names deepseek-ai/DeepSeek-R1-Distill-Llama-8B while its workers serve
///   deepseek-ai/DeepSeek-R1: as written it gets 404 model_not_found (checked), then it is sent with the served name.</item>
/// </list>
/// </summary>
[Trait("Category", "Slow")]
public sealed partial class GuideWalkTests
{
    private const string Model405B = "nvidia/Llama-3.1-405B-Instruct-FP8";
    private const string ModelR1 = "deepseek-ai/DeepSeek-R1";

    /// <summary>Guides 000, 001 and 002 (49B): the Eldoria prompt, as typed there.</summary>
    private const string Eldoria = "In the heart of Eldoria, an ancient land of boundless magic and mysterious creatures, lies the long-forgotten city of Aeloria. Once a beacon of knowledge and power, Aeloria was buried beneath the shifting sands of time, lost to the world for centuries. You are an intrepid explorer, known for your unparalleled curiosity and courage, who has stumbled upon an ancient map hinting at ests that Aeloria holds a secret so profound that it has the potential to reshape the very fabric of reality. Your journey will take you through treacherous deserts, enchanted forests, and across perilous mountain ranges. Your Task: Character Background: Develop a detailed background for your character. Describe their motivations for seeking out Aeloria, their skills and weaknesses, and any personal connections to the ancient city or its legends. Are they driven by a quest for knowledge, a search for lost familt clue is hidden.";

    /// <summary>Guide 004's prompt.</summary>
    private const string Federer = "In the heart of the tennis world, where champions rise and fall with each Grand Slam, lies the legend of the Golden Racket of Wimbledon. Once wielded by the greatest players of antiquity, this mythical racket is said to bestow unparalleled precision, grace, and longevity upon its rightful owner. For centuries, it remained hidden, its location lost to all but the most dedicated scholars of the sport. You are Roger Federer, the Swiss maestro whose elegant play and sportsmanship have already cemented your place among the legends, but whose quest for perfection remains unquenched even as time marches on. Recent dreams have brought you visions of this ancient artifact, along with fragments of a map that seems to lead to its resting place. Your journey will take you through the hallowed grounds of tennis history, from the clay courts of Roland Garros to the hidden training grounds of forgotten champions, and finally to a secret chamber beneath Centre Court itself. Character Background: Develop a detailed background for Roger Federer in this quest. Describe his motivations for seeking the Golden Racket, his tennis skills and personal weaknesses, and any connections to the legends of the sport that came before him. Is he driven by a desire to extend his career, to secure his legacy as the greatest of all time, or perhaps by something more personal? What price might he be willing to pay to claim this artifact, and what challenges from rivals past and present might stand in his way?";

    /// <summary>The guides' request body: `-d '{"model": ..., "messages": [...], "stream": ..., "max_tokens": ...}'`.</summary>
    private static string Body(string model, string content, bool stream, int maxTokens)
    {
        string body = JsonSerializer.Serialize(new { model, messages = new[] { new { role = "user", content } }, stream, max_tokens = maxTokens });
        Assert.DoesNotContain('\'', body);
        return body;
    }

    /// <summary>Guides 000 and 001 ("Single node sized models", steps 1 to 7; 000 is 001 without step 7): decode on node 1, prefill on nodes 2 and 3, one more decode worker on node X.</summary>
    [Fact]
    public async Task Guides000And001_SingleNodeSized_DecodeOnNode1_PrefillOnNodes2And3_ExtraDecodeOnNodeX()
    {
        await using Walk walk = await Walk.StartAsync(nodes: 4, "deploy/docker-compose.yml");

        // Step 4 (node 1): cd $DYNAMO_HOME/examples/llm; dynamo serve graphs.agg_router:Frontend -f ./configs/multinode-405b.yaml
        DynamoProcess node1 = walk.Terminal(1, """
            cd $DYNAMO_HOME/examples/llm
            ./dynamo serve graphs.agg_router:Frontend -f ./configs/multinode-405b.yaml
            """);
        await node1.WaitForLineAsync("serve: started Frontend, Processor, Router, VllmWorker", 180);
        Assert.Contains($"worker: KV from prefill workers arrives at tcp://{walk.Ip(1)}:", node1.Output, StringComparison.Ordinal);

        // Steps 5 and 6 (nodes 2 and 3): the prefill workers, pointed at node 1's NATS and etcd.
        DynamoProcess[] prefill = [.. new[] { 2, 3 }.Select(n => walk.Terminal(n, $"""
            export NATS_SERVER='{walk.NatsServer}' # note this should start with nats://...
            export ETCD_ENDPOINTS='{walk.EtcdEndpoints}'

            cd $DYNAMO_HOME/examples/llm
            ./dynamo serve components.prefill_worker:PrefillWorker -f ./configs/multinode-405b.yaml
            """))];
        foreach (DynamoProcess p in prefill)
        {
            await p.WaitForLineAsync("serving dynamo.prefill.generate", 180);
        }

        // Client: the guides' curl (about 200 prompt tokens, streamed, 300 tokens at most), prefilled on node 2 or 3.
        await walk.WaitForModelAsync(Model405B);
        await walk.CurlUntilPrefilledRemotelyAsync(node1, Body(Model405B, Eldoria, stream: true, maxTokens: 300));

        // Step 7 (node X): one more decode worker alone (--service-name VllmWorker ignores its links to PrefillWorker).
        DynamoProcess nodeX = walk.Terminal(4, $"""
            export NATS_SERVER='{walk.NatsServer}' # note this should start with nats://...
            export ETCD_ENDPOINTS='{walk.EtcdEndpoints}'

            cd $DYNAMO_HOME/examples/llm
            ./dynamo serve components.worker:VllmWorker -f ./configs/multinode-405b.yaml --service-name VllmWorker
            """);
        await nodeX.WaitForLineAsync("serve: started VllmWorker", 180);
        Assert.DoesNotContain("PrefillWorker", nodeX.Output.Split('\n').Single(l => l.Contains("serve: started", StringComparison.Ordinal)), StringComparison.Ordinal);

        // The frontend sees both decode workers; streams at once go to both (the KV router weighs their load): send
        // four with different questions until node X's worker has served one (each answer checked). Each question starts
        // with its own number: with the guide's prompt first, node 1's cached prefix would draw every request there.
        await walk.WaitForModelAsync(Model405B, instances: 2);
        var until = DateTime.UtcNow.AddSeconds(90);
        for (int round = 0; !nodeX.Output.Contains("prefilled on worker", StringComparison.Ordinal); round++)
        {
            Assert.True(DateTime.UtcNow < until, $"node X's decode worker served nothing within 90 s:\n{nodeX.Output}");
            string[] answers = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => walk.CurlAsync(1, Body(Model405B, $"({round}.{i}) {Eldoria}", stream: true, maxTokens: 100))));
            Assert.All(answers, a => GuideFlowsTests.AssertValidSse(a));
        }
    }

    /// <summary>Guide 001, "Multi-node sized models", aggregated: DeepSeek-R1 on the head node with configs/multinode_agg_r1.yaml.</summary>
    [Fact]
    public async Task Guide001_MultiNodeSized_Aggregated_R1ConfigServesTheCurl()
    {
        await using Walk walk = await Walk.StartAsync(nodes: 1, "deploy/docker-compose.yml");

        // Step 1 (Ray) maps to nothing (see the class comment). Step 2 (head node):
        DynamoProcess head = walk.Terminal(1, """
            cd $DYNAMO_HOME/examples/llm
            ./dynamo serve graphs.agg:Frontend -f ./configs/multinode_agg_r1.yaml
            """);
        await head.WaitForLineAsync("serve: started Frontend, Processor, VllmWorker", 180);
        Assert.Contains("rank 1 of 2 joined", head.Output, StringComparison.Ordinal);

        await walk.WaitForModelAsync(ModelR1);
        GuideFlowsTests.AssertValidSse(await walk.CurlAsync(1, Body(ModelR1, Eldoria, stream: true, maxTokens: 300)));
    }

    /// <summary>Guide 001, "Multi-node sized models", disaggregated: decode (the entry point) on node 1, prefill on node 2, both with the guide's configs/mutinode_disagg_r1.yaml.</summary>
    [Fact]
    public async Task Guide001_MultiNodeSized_Disaggregated_MisspelledR1ConfigServesTheCurlPrefilledOnNode2()
    {
        await using Walk walk = await Walk.StartAsync(nodes: 2, "deploy/docker-compose.yml");

        // Decode, on the head node ("if not head node": no exports here).
        DynamoProcess decode = walk.Terminal(1, """
            cd $DYNAMO_HOME/examples/llm
            ./dynamo serve graphs.agg:Frontend -f ./configs/mutinode_disagg_r1.yaml
            """);
        await decode.WaitForLineAsync("serve: started Frontend, Processor, VllmWorker", 180);

        // Prefill, on the other node.
        DynamoProcess prefill = walk.Terminal(2, $"""
            # if not head node
            export NATS_SERVER='nats://{walk.Ip(1)}:4222'
            export ETCD_ENDPOINTS='{walk.Ip(1)}:2379'

            cd $DYNAMO_HOME/examples/llm
            ./dynamo serve components.prefill_worker:PrefillWorker -f ./configs/mutinode_disagg_r1.yaml
            """);
        await prefill.WaitForLineAsync("serving dynamo.prefill.generate", 180);

        await walk.WaitForModelAsync(ModelR1);
        await walk.CurlUntilPrefilledRemotelyAsync(decode, Body(ModelR1, Eldoria, stream: true, maxTokens: 300));
    }

    /// <summary>Guide 002: the 405B model on a head node and a prefill node, one streamed curl, 100 in parallel, then the 49B model the same way.</summary>
    [Fact]
    public async Task Guide002_405BOnHeadAndPrefillNode_CurlAndHundredParallel_Then49B()
    {
        await using Walk walk = await Walk.StartAsync(nodes: 2, "deploy/metrics/docker-compose.yml");

        // "Obtain the IP of the head node": the guide's command prints node 1's address (the one the other nodes use).
        string ips = await walk.RunAsync(1, """ip addr | grep -Po '(?!(inet 127.\d.\d.1))(inet \K(\d{1,3}\.){3}\d{1,3})'""");
        Assert.Equal([walk.Ip(1)], ips.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

        foreach (var (config, model, stream, maxTokens) in new[]
        {
            ("multinode-405b.yaml", Model405B, true, 7500),
            ("multinode_llama49b.yaml", "nvidia/Llama-3_3-Nemotron-Super-49B-v1", false, 1500),
        })
        {
            // Head node, in the container: cd examples/llm; dynamo serve graphs.agg_router:Frontend -f ./configs/CONFIG
            DynamoProcess head = walk.Terminal(1, $"""
                cd examples/llm
                ./dynamo serve graphs.agg_router:Frontend -f ./configs/{config}
                """);
            await head.WaitForLineAsync("serve: started Frontend, Processor, Router, VllmWorker", 180);

            // Prefill node: ETCD_ENDPOINTS with http:// this time.
            DynamoProcess prefill = walk.Terminal(2, $"""
                export NATS_SERVER="nats://{walk.Ip(1)}:4222"

                export ETCD_ENDPOINTS="http://{walk.Ip(1)}:2379"
                cd examples/llm
                ./dynamo serve components.prefill_worker:PrefillWorker -f ./configs/{config}
                """);
            await prefill.WaitForLineAsync("serving dynamo.prefill.generate", 180);
            await walk.WaitForModelAsync(model);

            if (model == Model405B)
            {
                // Single request: curl <head_node_ip>:8000/v1/chat/completions -o output.txt ... (the unicorn story, streamed).
                string body = Body(model, "write a very long and boring bedtime story about an unicorn that rhymes", stream, maxTokens);
                await walk.RunAsync(walk.Client, $"""curl {walk.Ip(1)}:8000/v1/chat/completions  -o output.txt -H "Content-Type: application/json"   -H "Accept: text/event-stream"   -d '{body}'""");
                GuideFlowsTests.AssertValidSse(await File.ReadAllTextAsync(Path.Combine(walk.ClientDirectory, "output.txt")));

                // Multiple requests (let's stress Dynamo): 100 at once, as typed, of 1000 tokens each.
                string stress = Body(model, "write a very long and boring bedtime story about an unicorn that rhymes", stream, 1000);
                double before = await walk.SuccessfulRequestsAsync(model);
                await walk.RunAsync(walk.Client, $"""seq 1 100 | xargs -n1 -P100 curl {walk.Ip(1)}:8000/v1/chat/completions  -o output.txt -H "Content-Type: application/json"   -H "Accept: text/event-stream"   -d '{stress}'""", mustSucceed: false, seconds: 600);
                Assert.Equal(100, await walk.SuccessfulRequestsAsync(model) - before);
            }
            else
            {
                // The 49B request: not streamed, as written.
                AssertCompletion(await walk.CurlAsync(1, Body(model, Eldoria, stream, maxTokens), eventStream: false), maxTokens);
            }

            await walk.StopAsync(head);
            await walk.StopAsync(prefill);
        }
    }

    /// <summary>Guide 003: aggregated (frontend and a worker on node 1, a worker on node 2), then disaggregated (frontend and decode on node 1, prefill on node 2).</summary>
    [Fact]
    public async Task Guide003_FrontendAndWorkersOnTwoNodes_AggregatedThenDisaggregated()
    {
        await using Walk walk = await Walk.StartAsync(nodes: 2, "deploy/docker-compose.yml");
        string tiny = DefaultModel.EnsurePath();

        // Step 2, on all nodes.
        string exports = $$"""
            export HEAD_NODE_IP="{{walk.Ip(1)}}"
            export NATS_SERVER="nats://${HEAD_NODE_IP}:4222"
            export ETCD_ENDPOINTS="${HEAD_NODE_IP}:2379"
            """;
        string[] worker = ["./dynamo worker \\", $"  --model {tiny} --served-model-name meta-llama/Llama-3.3-70B-Instruct \\", "  --tensor-parallel-size 2 \\", "  --enforce-eager"];

        // Aggregated: ingress and a worker on node 1, another worker on node 2.
        DynamoProcess frontend = walk.Terminal(1, $"{exports}\n./dynamo frontend --router-mode kv");
        DynamoProcess worker1 = walk.Terminal(1, $"{exports}\n{string.Join('\n', worker)}");
        DynamoProcess worker2 = walk.Terminal(2, $"{exports}\n{string.Join('\n', worker)}");
        await frontend.WaitForLineAsync("frontend: listening", 120);
        await worker1.WaitForLineAsync("serving dynamo.backend.generate", 180);
        await worker2.WaitForLineAsync("serving dynamo.backend.generate", 180);
        Assert.Contains("--enforce-eager", worker1.Output, StringComparison.Ordinal);
        await walk.WaitForModelAsync("meta-llama/Llama-3.3-70B-Instruct", instances: 2, fromNode: 1, host: "localhost");
        GuideFlowsTests.AssertValidSse(await walk.CurlAsync(1, Body("meta-llama/Llama-3.3-70B-Instruct", Eldoria, stream: true, maxTokens: 100), fromNode: 1, host: "localhost"));
        foreach (DynamoProcess p in new[] { worker2, worker1, frontend })
        {
            await walk.StopAsync(p);
        }

        // Disaggregated: ingress and the decode worker on node 1, the prefill worker (--is-prefill-worker) on node 2.
        frontend = walk.Terminal(1, $"{exports}\n./dynamo frontend --router-mode kv &\n{string.Join('\n', worker)} --kv-transfer-host 0.0.0.0 --max-local-prefill-length 10");
        DynamoProcess prefill = walk.Terminal(2, $"{exports}\n{string.Join('\n', worker)} \\\n  --is-prefill-worker");
        await frontend.WaitForLineAsync("serving dynamo.backend.generate", 180);
        await prefill.WaitForLineAsync("serving dynamo.prefill.generate", 180);
        await walk.WaitForModelAsync("meta-llama/Llama-3.3-70B-Instruct", fromNode: 1, host: "localhost");
        await walk.CurlUntilPrefilledRemotelyAsync(frontend, Body("meta-llama/Llama-3.3-70B-Instruct", Eldoria, stream: true, maxTokens: 100), fromNode: 1, host: "localhost");
    }

    /// <summary>Guide 004: SGLang-style TP16/DP16 over four nodes: ingress and prefill ranks 0 on node 1, prefill on node 2, decode on nodes 3 and 4.</summary>
    [Fact]
    public async Task Guide004_SglangStyleTp16Dp16_PrefillOnNodes1And2_DecodeOnNodes3And4()
    {
        await using Walk walk = await Walk.StartAsync(nodes: 4, "lib/runtime/docker-compose.yml");
        string Worker(string script, int nodeRank, string mode, string extra = "") => $"""
            python3 components/{script} \
              --model-path /model/ \
              --served-model-name deepseek-ai/DeepSeek-R1 \
              --tp 16 \
              --dp-size 16 \
              --dist-init-addr {(mode == "prefill" ? walk.Ip(1) : walk.Ip(3))}:29500 \
              --nnodes 2 \
              --node-rank {nodeRank} \
              --enable-dp-attention \
              --trust-remote-code \
              --skip-tokenizer-init \
              --disaggregation-mode {mode} \
              --disaggregation-transfer-backend nixl \
              --mem-fraction-static 0.82{extra}
            """.Replace("python3 components/worker.py", "./dynamo worker", StringComparison.Ordinal)
            .Replace("python3 components/decode_worker.py", "./dynamo worker", StringComparison.Ordinal)
            .Replace("/model/", TestModels.TinyLongContext.Value, StringComparison.Ordinal);
        string exports = $"""
            # nats and etcd endpoints
            export NATS_SERVER="nats://{walk.Ip(1)}"
            export ETCD_ENDPOINTS="{walk.Ip(1)}:2379"
            """;

        DynamoProcess node1 = walk.Terminal(1, $"""
            # run ingress
            ./dynamo run in=http out=dyn --http-host 0.0.0.0 &
            # run prefill worker
            {Worker("worker.py", 0, "prefill")}
            """);
        DynamoProcess node2 = walk.Terminal(2, $"{exports}\n\n# worker\n{Worker("worker.py", 1, "prefill")}");
        DynamoProcess node3 = walk.Terminal(3, $"{exports}\n\n# worker\n{Worker("decode_worker.py", 0, "decode", " \\\n  --kv-transfer-host 0.0.0.0")}");
        DynamoProcess node4 = walk.Terminal(4, $"{exports}\n\n# worker\n{Worker("decode_worker.py", 1, "decode", " \\\n  --kv-transfer-host 0.0.0.0")}");
        foreach (DynamoProcess p in new[] { node1, node2 })
        {
            await p.WaitForLineAsync("serving dynamo.prefill.generate", 180);
        }

        foreach (DynamoProcess p in new[] { node3, node4 })
        {
            await p.WaitForLineAsync("serving dynamo.backend.generate", 180);
            Assert.Contains("data parallelism: 8 engine replicas here", p.Output, StringComparison.Ordinal);
        }

        await walk.WaitForModelAsync(ModelR1, instances: 2);

        // Step 3, as written: the model it names is not the one served.
        string wrong = await walk.CurlAsync(1, Body("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", Federer, stream: false, maxTokens: 30), eventStream: false);
        using (JsonDocument doc = JsonDocument.Parse(wrong))
        {
            Assert.Equal("model_not_found", doc.RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        // With the served name: the answer, and its prefill done by a prefill node.
        var until = DateTime.UtcNow.AddSeconds(90);
        while (!(node3.Output + node4.Output).Contains("prefilled on worker", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < until, $"no remote prefill within 90 s:\n{node3.Output}\n{node4.Output}");
            AssertCompletion(await walk.CurlAsync(1, Body(ModelR1, Federer, stream: false, maxTokens: 30), eventStream: false), 30);
        }
    }

    /// <summary>A non-streamed chat completion with 1..<paramref name="maxTokens"/> tokens (the random stand-in may end early).</summary>
    private static void AssertCompletion(string answer, int maxTokens)
    {
        using JsonDocument doc = JsonDocument.Parse(answer);
        Assert.True(doc.RootElement.TryGetProperty("object", out JsonElement kind) && kind.GetString() == "chat.completion", answer);
        Assert.InRange(doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), 1, maxTokens);
    }

    [GeneratedRegex("""^dynamo_frontend_requests_total\{([^}]*)\} (\S+)$""", RegexOptions.Multiline)]
    private static partial Regex RequestsTotal();

    /// <summary>
    /// One guide's nodes: node 1 the head node (NATS and etcd as the guide's compose file starts them), nodes 2..N, and
    /// one more for the client's terminal. Disposing stops every terminal, the servers, and deletes the namespaces.
    /// </summary>
    private sealed class Walk : IAsyncDisposable
    {
        private readonly List<DynamoProcess> _terminals = [];

        private Walk(NetworkNamespaces net, HeadNode head, string clientDirectory)
        {
            Net = net;
            Head = head;
            ClientDirectory = clientDirectory;
        }

        public NetworkNamespaces Net { get; }

        public HeadNode Head { get; }

        /// <summary>The client's node: the last one.</summary>
        public int Client => Net.Hosts;

        /// <summary>Where the client's terminal runs (curl -o output.txt writes there).</summary>
        public string ClientDirectory { get; }

        public string NatsServer => $"nats://{Ip(1)}:4222";

        public string EtcdEndpoints => $"{Ip(1)}:2379";

        public string Ip(int node) => Net.Address(node);

        /// <summary>Step 1: `docker compose -f <paramref name="composeFile"/> up -d` on node 1, then the other nodes.</summary>
        public static async Task<Walk> StartAsync(int nodes, string composeFile)
        {
            var services = ComposeFilesTests.Resolve(Path.Combine(RepoPaths.Root, composeFile));
            Assert.Contains("nats-server", services.Keys);
            Assert.Contains("etcd-server", services.Keys);
            NetworkNamespaces net = NetworkNamespaces.Create(nodes + 1);
            try
            {
                HeadNode head = await HeadNode.StartAsync(net, asCompose: true);
                string client = Path.Combine(Path.GetTempPath(), $"dynamo-guide-{Guid.NewGuid():N}");
                Directory.CreateDirectory(client);
                return new Walk(net, head, client);
            }
            catch
            {
                net.Dispose();
                throw;
            }
        }

        /// <summary>A terminal on <paramref name="node"/>, in the repository's root, typing <paramref name="commands"/>.</summary>
        public DynamoProcess Terminal(int node, string commands)
        {
            DynamoProcess p = DynamoProcess.StartShell(commands, node == Client ? ClientDirectory : RepoPaths.Root, new Dictionary<string, string> { ["DYNAMO_HOME"] = RepoPaths.Root }, Net.Host(node));
            _terminals.Add(p);
            return p;
        }

        /// <summary>Runs <paramref name="commands"/> on <paramref name="node"/> to the end; its stdout (exit 0 asserted unless <paramref name="mustSucceed"/> is false).</summary>
        public async Task<string> RunAsync(int node, string commands, bool mustSucceed = true, double seconds = 120)
        {
            await using DynamoProcess p = DynamoProcess.StartShell(commands, node == Client ? ClientDirectory : RepoPaths.Root, null, Net.Host(node));
            int code = await p.WaitForExitAsync(seconds);
            Assert.True(code == 0 || !mustSucceed, $"exit {code}: {commands}\n{p.Output}");
            return p.Stdout;
        }

        /// <summary>The guides' curl to <paramref name="host"/> (node 1's address by default) from <paramref name="fromNode"/> (the client's node by default).</summary>
        public Task<string> CurlAsync(int node, string body, bool eventStream = true, int? fromNode = null, string? host = null) =>
            RunAsync(fromNode ?? Client, $"""
                curl {host ?? Ip(node)}:8000/v1/chat/completions \
                  -H "Content-Type: application/json" \
                  {(eventStream ? "-H \"Accept: text/event-stream\" \\" : "\\")}
                  -d '{body}'
                """);

        /// <summary>Sends the curl (each answer checked) until <paramref name="decode"/>'s log says a prefill node prefilled one: the frontend sees the prefill workers some moments after they start.</summary>
        public async Task CurlUntilPrefilledRemotelyAsync(DynamoProcess decode, string body, int? fromNode = null, string? host = null)
        {
            var until = DateTime.UtcNow.AddSeconds(90);
            do
            {
                Assert.True(DateTime.UtcNow < until, $"no remote prefill within 90 s:\n{decode.Output}");
                GuideFlowsTests.AssertValidSse(await CurlAsync(1, body, fromNode: fromNode, host: host));
            }
            while (!decode.Output.Contains("prefilled on worker", StringComparison.Ordinal));
        }

        /// <summary>Waits until node 1's frontend lists <paramref name="model"/> with <paramref name="instances"/> workers (GET /v1/models, /health).</summary>
        public async Task WaitForModelAsync(string model, int instances = 1, int? fromNode = null, string? host = null)
        {
            var until = DateTime.UtcNow.AddSeconds(90);
            while (true)
            {
                string health = await RunAsync(fromNode ?? Client, $"curl -s {host ?? Ip(1)}:8000/health", mustSucceed: false);
                string models = await RunAsync(fromNode ?? Client, $"curl -s {host ?? Ip(1)}:8000/v1/models", mustSucceed: false);
                if (models.Contains($"\"{model}\"", StringComparison.Ordinal) && Instances(health, model) >= instances)
                {
                    return;
                }

                Assert.True(DateTime.UtcNow < until, $"{model} with {instances} workers not listed within 90 s: {models} {health}");
                await Task.Delay(200);
            }
        }

        /// <summary>The frontend's count of successful requests for <paramref name="model"/> (its /metrics, from the client's node).</summary>
        public async Task<double> SuccessfulRequestsAsync(string model)
        {
            string metrics = await RunAsync(Client, $"curl -s {Ip(1)}:8000/metrics");
            return RequestsTotal().Matches(metrics)
                .Where(m => m.Groups[1].Value.Contains($"model=\"{model}\"", StringComparison.Ordinal) && m.Groups[1].Value.Contains("status=\"success\"", StringComparison.Ordinal))
                .Sum(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
        }

        /// <summary>Ctrl-C in a terminal: the commands it runs stop cleanly (leaving discovery at once), and the terminal ends.</summary>
        public async Task StopAsync(DynamoProcess terminal)
        {
            terminal.InterruptChildren();
            Assert.Equal(0, await terminal.WaitForExitAsync(90));
            _terminals.Remove(terminal);
            await terminal.DisposeAsync();
        }

        public async ValueTask DisposeAsync()
        {
            for (int i = _terminals.Count - 1; i >= 0; i--)
            {
                await _terminals[i].DisposeAsync();
            }

            await Head.DisposeAsync();
            Net.Dispose();
            Directory.Delete(ClientDirectory, recursive: true);
        }

        private static int Instances(string health, string model)
        {
            try
            {
                using JsonDocument doc = JsonDocument.Parse(health);
                return doc.RootElement.TryGetProperty("models", out JsonElement models) && models.ValueKind == JsonValueKind.Array
                    ? models.EnumerateArray().Where(m => m.GetProperty("name").GetString() == model).Sum(m => m.GetProperty("instances").GetArrayLength())
                    : 0;
            }
            catch (JsonException)
            {
                return 0;
            }
        }
    }
}
