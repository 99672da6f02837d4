using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Routing;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench router</c>: the KV router's speed, model-free. Builds an index of about
/// <c>--blocks</c> (worker, block) entries over <c>--workers</c> workers from shared-prefix trees (system
/// prompts shared by many conversations, each worker caching its own conversations), as stored KV
/// events in chunks, then evicts and re-stores conversation tails; reports KV events (and blocks) applied
/// per second. Then times <c>--decisions</c> routing decisions (hashing the prompt, index lookup, cost
/// over every worker, load charge) with 128 requests kept in flight: p50/p99/max, and the index lookup alone.
/// </summary>
internal static class BenchRouterCommand
{
    private const int BlockSize = 16;

    public static Command Create()
    {
        var workers = new Option<int>("--workers") { Description = "Workers in the index", DefaultValueFactory = _ => 64 };
        var blocks = new Option<int>("--blocks") { Description = "(worker, block) entries to index", DefaultValueFactory = _ => 1_000_000 };
        var decisions = new Option<int>("--decisions") { Description = "Routing decisions to time", DefaultValueFactory = _ => 100_000 };
        var seed = new Option<int>("--seed") { Description = "Seed of the synthetic workload", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var command = new Command("router", "KV router: decision latency p50/p99 and KV events applied per second") { workers, blocks, decisions, seed, json };
        command.SetAction(parse => CliErrors.Run(() =>
        {
            int w = parse.GetValue(workers), b = parse.GetValue(blocks), d = parse.GetValue(decisions);
            if (w < 1 || b < w || d < 1)
            {
                throw new CliUsageException("--workers and --decisions must be at least 1, --blocks at least --workers");
            }

            return Run(w, b, d, parse.GetValue(seed), parse.GetValue(json));
        }));
        return command;
    }

    private static int Run(int workerCount, int targetBlocks, int decisionCount, int seed, bool json)
    {
        TextWriter log = json ? Console.Error : Console.Out;
        var random = new Random(seed);
        log.WriteLine($"bench router: generating {targetBlocks:N0} blocks over {workerCount} workers...");

        // Shared system prompts, and per worker conversations that extend one of them.
        int[][] systems = [.. Enumerable.Range(0, 64).Select(_ => RandomTokens(random, random.Next(16, 129) * BlockSize))];
        var conversations = new List<(long Worker, int System, int[] Tail)>();
        var events = new List<KvEvent>();
        var nextId = new ulong[workerCount];
        var held = new HashSet<ulong>[workerCount];
        int perWorker = targetBlocks / workerCount;
        for (int w = 0; w < workerCount; w++)
        {
            held[w] = [];
            while (held[w].Count < perWorker)
            {
                int s = Math.Min(systems.Length - 1, (int)(systems.Length * Math.Pow(random.NextDouble(), 2)));
                int[] tail = RandomTokens(random, random.Next(8, 65) * BlockSize);
                conversations.Add((w, s, tail));
                ulong[] hashes = BlockHasher.SequenceHashes([.. systems[s], .. tail], BlockSize);
                int start = 0;
                while (start < hashes.Length && held[w].Contains(hashes[start]))
                {
                    start++;
                }

                // As chunked prefill commits them: up to 16 blocks per stored event.
                for (int i = start; i < hashes.Length; i += 16)
                {
                    int n = Math.Min(16, hashes.Length - i);
                    events.Add(new KvEvent(w, ++nextId[w], new KvStoredData(i == 0 ? null : hashes[i - 1], [.. hashes.AsSpan(i, n).ToArray().Select(h => new KvStoredBlock(h, h))])));
                    held[w].UnionWith(hashes.AsSpan(i, n).ToArray());
                }
            }
        }

        int buildEvents = events.Count;

        // Churn: evict conversation tails (1 to 4 blocks per removed event) and store them again.
        foreach ((long w, int s, int[] tail) in conversations.Where((_, i) => i % 2 == 0))
        {
            ulong[] hashes = BlockHasher.SequenceHashes([.. systems[s], .. tail], BlockSize);
            int k = random.Next(1, 5);
            ulong[] last = hashes[^k..];
            events.Add(new KvEvent(w, ++nextId[w], new KvRemovedData(last)));
            events.Add(new KvEvent(w, ++nextId[w], new KvStoredData(hashes[^(k + 1)], [.. last.Select(h => new KvStoredBlock(h, h))])));
        }

        long eventBlocks = events.Sum(e => e.Data switch { KvStoredData st => st.Blocks.Count, KvRemovedData r => r.BlockHashes.Count, _ => 0 });
        var router = new KvRouter(KvRouterOptions.Default with { BlockSize = BlockSize, Seed = seed, MaxQueue = 0 });
        for (int w = 0; w < workerCount; w++)
        {
            router.AddWorker(w);
        }

        log.WriteLine($"bench router: applying {events.Count:N0} KV events ({eventBlocks:N0} blocks)...");
        GC.Collect();
        var clock = Stopwatch.StartNew();
        foreach (KvEvent e in events)
        {
            router.ApplyEvent(e);
        }

        double applySeconds = clock.Elapsed.TotalSeconds;
        int indexedEntries = Enumerable.Range(0, workerCount).Sum(w => router.Index.BlockCountOf(w));
        int distinct = router.Index.BlockCount;

        // Requests: a system prompt plus a cached conversation's tail (a hit on one worker) or a new one, and a partial block.
        int[][] requests = new int[4096][];
        for (int i = 0; i < requests.Length; i++)
        {
            (long _, int s, int[] tail) = conversations[random.Next(conversations.Count)];
            int[] suffix = random.Next(2) == 0 ? tail : RandomTokens(random, tail.Length);
            requests[i] = [.. systems[s], .. suffix, .. RandomTokens(random, random.Next(1, BlockSize))];
        }

        log.WriteLine($"bench router: timing {decisionCount:N0} decisions...");
        var inFlight = new RoutingDecision?[128];
        var latencies = new double[decisionCount];
        double tickUs = 1e6 / Stopwatch.Frequency;
        for (int i = 0; i < Math.Min(2000, decisionCount); i++)
        {
            Decide(router, requests[i % requests.Length], inFlight, i);
        }

        GC.Collect();
        for (int i = 0; i < decisionCount; i++)
        {
            int[] prompt = requests[i % requests.Length];
            long t0 = Stopwatch.GetTimestamp();
            Decide(router, prompt, inFlight, i);
            latencies[i] = (Stopwatch.GetTimestamp() - t0) * tickUs;
        }

        var lookups = new double[decisionCount];
        var scores = new OverlapScores();
        ulong[][] requestHashes = [.. requests.Select(r => BlockHasher.SequenceHashes(r, BlockSize))];
        for (int i = 0; i < decisionCount; i++)
        {
            ulong[] hashes = requestHashes[i % requestHashes.Length];
            long t0 = Stopwatch.GetTimestamp();
            router.Index.FindMatches(hashes, scores);
            lookups[i] = (Stopwatch.GetTimestamp() - t0) * tickUs;
        }

        Array.Sort(latencies);
        Array.Sort(lookups);
        double meanBlocks = requests.Average(r => r.Length / BlockSize);
        var result = new
        {
            workers = workerCount,
            indexed_blocks = indexedEntries,
            distinct_blocks = distinct,
            events = events.Count,
            event_blocks = eventBlocks,
            events_per_second = Math.Round(events.Count / applySeconds),
            event_blocks_per_second = Math.Round(eventBlocks / applySeconds),
            decisions = decisionCount,
            request_blocks_mean = Math.Round(meanBlocks, 1),
            decision_p50_us = Math.Round(Percentile(latencies, 0.50), 2),
            decision_p99_us = Math.Round(Percentile(latencies, 0.99), 2),
            decision_max_us = Math.Round(latencies[^1], 2),
            lookup_p50_us = Math.Round(Percentile(lookups, 0.50), 2),
            lookup_p99_us = Math.Round(Percentile(lookups, 0.99), 2),
            build_events = buildEvents,
        };

        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(result));
        }
        else
        {
            Console.WriteLine();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"index: {result.indexed_blocks:N0} (worker, block) entries, {result.distinct_blocks:N0} distinct blocks, {workerCount} workers"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"KV events applied",-28} {result.events_per_second,14:N0} events/s  ({result.event_blocks_per_second:N0} blocks/s; {events.Count:N0} events)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"decision latency",-28} p50 {result.decision_p50_us,8:F2} us  p99 {result.decision_p99_us,8:F2} us  max {result.decision_max_us:F0} us  ({decisionCount:N0} decisions, {meanBlocks:F0} blocks per prompt)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"index lookup alone",-28} p50 {result.lookup_p50_us,8:F2} us  p99 {result.lookup_p99_us,8:F2} us"));
        }

        return 0;
    }

    private static void Decide(KvRouter router, int[] prompt, RoutingDecision?[] inFlight, int i)
    {
        ValueTask<RoutingDecision> task = router.RouteAsync(prompt);
        RoutingDecision decision = task.IsCompletedSuccessfully ? task.Result : task.AsTask().GetAwaiter().GetResult();
        decision.MarkFirstToken();
        ref RoutingDecision? slot = ref inFlight[i % inFlight.Length];
        slot?.Complete();
        slot = decision;
    }

    private static double Percentile(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];

    private static int[] RandomTokens(Random random, int count)
    {
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            tokens[i] = random.Next(32000);
        }

        return tokens;
    }
}
