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
/// per second through <see cref="KvRouter.ApplyEvent"/>: as decoded objects, the same changes as one
/// block per event, and decoded from their JSON payloads first (<see cref="KvEventJson.Deserialize(ReadOnlySpan{byte})"/>,
/// what <see cref="Dynamo.Components.Routing.KvRouterService"/> does per event-plane message; the event plane's own transport is not
/// included). Then times <c>--decisions</c> routing decisions (hashing the prompt, index lookup, cost over
/// every worker, load charge, first token and the completion of an older decision) with 128 requests kept
/// in flight: p50/p90/p99/p99.9/max, bytes allocated and GCs meanwhile, and the index lookup and the prompt
/// hashing alone.
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
                    KvStoredBlock[] stored = [.. hashes.AsSpan(i, n).ToArray().Select(h => new KvStoredBlock(h, h))];
                    events.Add(new KvEvent(w, ++nextId[w], new KvStoredData(i == 0 ? null : hashes[i - 1], stored)));
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
            KvStoredBlock[] restored = [.. last.Select(h => new KvStoredBlock(h, h))];
            events.Add(new KvEvent(w, ++nextId[w], new KvStoredData(hashes[^(k + 1)], restored)));
        }

        long eventBlocks = events.Sum(e => e.Data switch { KvStoredData st => st.Blocks.Count, KvRemovedData r => r.BlockHashes.Count, _ => 0 });
        List<KvEvent> singles = SingleBlockEvents(events, workerCount);
        byte[][] payloads = [.. events.Select(KvEventJson.SerializeToUtf8)];
        KvRouter NewRouter()
        {
            var r = new KvRouter(KvRouterOptions.Default with { BlockSize = BlockSize, Seed = seed, MaxQueue = 0 });
            for (int w = 0; w < workerCount; w++)
            {
                r.AddWorker(w);
            }

            return r;
        }

        // Each stream into a fresh router (the index grows from empty, as a router that just started), after
        // one untimed pass so that every timed one finds the code compiled and the heap's memory mapped.
        log.WriteLine($"bench router: applying {events.Count:N0} KV events ({eventBlocks:N0} blocks), as objects, one block per event, and from JSON...");
        TimeApply(NewRouter(), events, null);
        ApplyFigures single = TimeApply(NewRouter(), singles, null);
        ApplyFigures fromJson = TimeApply(NewRouter(), null, payloads);
        KvRouter router = NewRouter();
        ApplyFigures realistic = TimeApply(router, events, null);
        singles = [];
        payloads = [];
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
        var releases = new double[decisionCount];
        double tickUs = 1e6 / Stopwatch.Frequency;
        for (int i = 0; i < Math.Min(2000, decisionCount); i++)
        {
            Release(Route(router, requests[i % requests.Length]), inFlight, i);
        }

        GC.Collect();
        int gen0 = GC.CollectionCount(0), gen2 = GC.CollectionCount(2);
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < decisionCount; i++)
        {
            int[] prompt = requests[i % requests.Length];
            long t0 = Stopwatch.GetTimestamp();
            RoutingDecision decision = Route(router, prompt);
            long t1 = Stopwatch.GetTimestamp();
            Release(decision, inFlight, i);
            latencies[i] = (t1 - t0) * tickUs;
            releases[i] = (Stopwatch.GetTimestamp() - t1) * tickUs;
        }

        double bytesPerDecision = (GC.GetAllocatedBytesForCurrentThread() - allocated) / (double)decisionCount;
        gen0 = GC.CollectionCount(0) - gen0;
        gen2 = GC.CollectionCount(2) - gen2;

        var hashing = new double[decisionCount];
        var hashBuffer = new ulong[1024];
        var localBuffer = new ulong[1024];
        for (int i = 0; i < decisionCount; i++)
        {
            int[] prompt = requests[i % requests.Length];
            long t0 = Stopwatch.GetTimestamp();
            BlockHasher.SequenceHashes(prompt, BlockSize, hashBuffer, localBuffer);
            hashing[i] = (Stopwatch.GetTimestamp() - t0) * tickUs;
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
        Array.Sort(releases);
        Array.Sort(lookups);
        Array.Sort(hashing);
        double meanBlocks = requests.Average(r => r.Length / BlockSize);
        var result = new
        {
            workers = workerCount,
            indexed_blocks = indexedEntries,
            distinct_blocks = distinct,
            events = events.Count,
            event_blocks = eventBlocks,
            events_per_second = Math.Round(realistic.EventsPerSecond),
            event_blocks_per_second = Math.Round(eventBlocks / realistic.Seconds),
            apply_gen2_collections = realistic.Gen2,
            single_block_events = single.Events,
            single_block_events_per_second = Math.Round(single.EventsPerSecond),
            json_events_per_second = Math.Round(fromJson.EventsPerSecond),
            json_event_blocks_per_second = Math.Round(eventBlocks / fromJson.Seconds),
            decisions = decisionCount,
            request_blocks_mean = Math.Round(meanBlocks, 1),
            decision_p50_us = Math.Round(Percentile(latencies, 0.50), 2),
            decision_p90_us = Math.Round(Percentile(latencies, 0.90), 2),
            decision_p99_us = Math.Round(Percentile(latencies, 0.99), 2),
            decision_p999_us = Math.Round(Percentile(latencies, 0.999), 2),
            decision_max_us = Math.Round(latencies[^1], 2),
            release_p50_us = Math.Round(Percentile(releases, 0.50), 2),
            release_p99_us = Math.Round(Percentile(releases, 0.99), 2),
            lookup_p50_us = Math.Round(Percentile(lookups, 0.50), 2),
            lookup_p99_us = Math.Round(Percentile(lookups, 0.99), 2),
            hashing_p50_us = Math.Round(Percentile(hashing, 0.50), 2),
            hashing_p99_us = Math.Round(Percentile(hashing, 0.99), 2),
            decision_allocated_bytes = Math.Round(bytesPerDecision, 1),
            decision_gen0_collections = gen0,
            decision_gen2_collections = gen2,
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
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"KV events applied",-28} {result.events_per_second,14:N0} events/s  ({result.event_blocks_per_second:N0} blocks/s; {events.Count:N0} events of {eventBlocks / (double)events.Count:F1} blocks; decoded objects)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"  one block per event",-28} {result.single_block_events_per_second,14:N0} events/s  ({single.Events:N0} events; decoded objects)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"  decoded from JSON",-28} {result.json_events_per_second,14:N0} events/s  ({result.json_event_blocks_per_second:N0} blocks/s; KvEventJson.Deserialize + apply, as KvRouterService)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"decision latency",-28} p50 {result.decision_p50_us,8:F2} us  p99 {result.decision_p99_us,8:F2} us  (p90 {result.decision_p90_us:F1}, p99.9 {result.decision_p999_us:F0}, max {result.decision_max_us:F0} us)  ({decisionCount:N0} decisions, {meanBlocks:F0} blocks per prompt)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"  release (not in the above)",-28} p50 {result.release_p50_us,8:F2} us  p99 {result.release_p99_us,8:F2} us  (first token + an earlier request's completion, when its stream ends)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"  index lookup alone",-28} p50 {result.lookup_p50_us,8:F2} us  p99 {result.lookup_p99_us,8:F2} us"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"  prompt hashing alone",-28} p50 {result.hashing_p50_us,8:F2} us  p99 {result.hashing_p99_us,8:F2} us"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"  allocated per decision",-28} {result.decision_allocated_bytes,8:F0} bytes  (gen0 GCs {gen0}, gen2 GCs {gen2} during {decisionCount:N0} decisions)"));
        }

        return 0;
    }

    // One decision: RouteAsync (hashing, lookup, cost, charge).
    private static RoutingDecision Route(KvRouter router, int[] prompt)
    {
        ValueTask<RoutingDecision> task = router.RouteAsync(prompt);
        return task.IsCompletedSuccessfully ? task.Result : task.AsTask().GetAwaiter().GetResult();
    }

    // What the request's stream does later, outside the decision: its first token releases the prefill
    // charge; an earlier request (128 back) completes and releases the rest of its load.
    private static void Release(RoutingDecision decision, RoutingDecision?[] inFlight, int i)
    {
        decision.MarkFirstToken();
        ref RoutingDecision? slot = ref inFlight[i % inFlight.Length];
        slot?.Complete();
        slot = decision;
    }

    // Applies a stream (objects, or JSON payloads decoded first as KvRouterService does) and times it.
    private static ApplyFigures TimeApply(KvRouter router, List<KvEvent>? events, byte[][]? payloads)
    {
        GC.Collect();
        int gen2 = GC.CollectionCount(2);
        long t0 = Stopwatch.GetTimestamp();
        int count;
        if (events is not null)
        {
            foreach (KvEvent e in events)
            {
                router.ApplyEvent(e);
            }

            count = events.Count;
        }
        else
        {
            foreach (byte[] payload in payloads!)
            {
                router.ApplyEvent(KvEventJson.Deserialize(payload));
            }

            count = payloads.Length;
        }

        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        return new ApplyFigures(count, seconds, GC.CollectionCount(2) - gen2);
    }

    // The same changes, one block per event: each stored event split into one-block events (chained
    // parents), each removed event into one-hash events; ids renumbered per worker.
    private static List<KvEvent> SingleBlockEvents(List<KvEvent> events, int workerCount)
    {
        var result = new List<KvEvent>();
        var ids = new ulong[workerCount];
        foreach (KvEvent e in events)
        {
            switch (e.Data)
            {
                case KvStoredData stored:
                    ulong? parent = stored.ParentHash;
                    foreach (KvStoredBlock block in stored.Blocks)
                    {
                        KvStoredBlock[] one = [block];
                        result.Add(new KvEvent(e.WorkerId, ++ids[e.WorkerId], new KvStoredData(parent, one)));
                        parent = block.BlockHash;
                    }

                    break;
                case KvRemovedData removed:
                    foreach (ulong hash in removed.BlockHashes)
                    {
                        ulong[] gone = [hash];
                        result.Add(new KvEvent(e.WorkerId, ++ids[e.WorkerId], new KvRemovedData(gone)));
                    }

                    break;
                default:
                    break;
            }
        }

        return result;
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

    private readonly record struct ApplyFigures(int Events, double Seconds, int Gen2)
    {
        public double EventsPerSecond => Events / Seconds;
    }
}
