using System.Diagnostics;
using System.Globalization;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Routing;
using Dynamo.Load.Reports;

namespace Dynamo.Load.Benchmarks;

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
internal static class RouterBenchmark
{
    private const int BlockSize = 16;

    /// <summary>Builds the index, times the KV events and the decisions; progress lines go to <paramref name="log"/>.</summary>
    public static Result Run(int workerCount, int targetBlocks, int decisionCount, int seed, TextWriter log)
    {
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
        return new Result
        {
            Workers = workerCount,
            IndexedBlocks = indexedEntries,
            DistinctBlocks = distinct,
            Events = events.Count,
            EventBlocks = eventBlocks,
            EventsPerSecond = Math.Round(realistic.EventsPerSecond),
            EventBlocksPerSecond = Math.Round(eventBlocks / realistic.Seconds),
            ApplyGen2Collections = realistic.Gen2,
            SingleBlockEvents = single.Events,
            SingleBlockEventsPerSecond = Math.Round(single.EventsPerSecond),
            JsonEventsPerSecond = Math.Round(fromJson.EventsPerSecond),
            JsonEventBlocksPerSecond = Math.Round(eventBlocks / fromJson.Seconds),
            Decisions = decisionCount,
            RequestBlocksMean = meanBlocks,
            DecisionP50Us = Math.Round(Percentile(latencies, 0.50), 2),
            DecisionP90Us = Math.Round(Percentile(latencies, 0.90), 2),
            DecisionP99Us = Math.Round(Percentile(latencies, 0.99), 2),
            DecisionP999Us = Math.Round(Percentile(latencies, 0.999), 2),
            DecisionMaxUs = Math.Round(latencies[^1], 2),
            ReleaseP50Us = Math.Round(Percentile(releases, 0.50), 2),
            ReleaseP99Us = Math.Round(Percentile(releases, 0.99), 2),
            LookupP50Us = Math.Round(Percentile(lookups, 0.50), 2),
            LookupP99Us = Math.Round(Percentile(lookups, 0.99), 2),
            HashingP50Us = Math.Round(Percentile(hashing, 0.50), 2),
            HashingP99Us = Math.Round(Percentile(hashing, 0.99), 2),
            DecisionAllocatedBytes = Math.Round(bytesPerDecision, 1),
            DecisionGen0Collections = gen0,
            DecisionGen2Collections = gen2,
            BuildEvents = buildEvents,
        };
    }

    // One decision: RouteAsync (hashing, lookup, cost, charge). With MaxQueue 0 a decision never waits in
    // the router's queue: the task is complete on return (a rejection throws here).
    private static RoutingDecision Route(KvRouter router, int[] prompt)
    {
        ValueTask<RoutingDecision> task = router.RouteAsync(prompt);
        return task.IsCompleted ? task.Result : throw new InvalidOperationException("the router queued a decision although its MaxQueue is 0");
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

    /// <summary>The figures of a run (rates rounded to whole events, latencies to 0.01 µs).</summary>
    public sealed record Result
    {
        public int Workers { get; init; }

        public int IndexedBlocks { get; init; }

        public int DistinctBlocks { get; init; }

        public int Events { get; init; }

        public long EventBlocks { get; init; }

        public double EventsPerSecond { get; init; }

        public double EventBlocksPerSecond { get; init; }

        public int ApplyGen2Collections { get; init; }

        public int SingleBlockEvents { get; init; }

        public double SingleBlockEventsPerSecond { get; init; }

        public double JsonEventsPerSecond { get; init; }

        public double JsonEventBlocksPerSecond { get; init; }

        public int Decisions { get; init; }

        /// <summary>Blocks per prompt on average (not rounded).</summary>
        public double RequestBlocksMean { get; init; }

        public double DecisionP50Us { get; init; }

        public double DecisionP90Us { get; init; }

        public double DecisionP99Us { get; init; }

        public double DecisionP999Us { get; init; }

        public double DecisionMaxUs { get; init; }

        public double ReleaseP50Us { get; init; }

        public double ReleaseP99Us { get; init; }

        public double LookupP50Us { get; init; }

        public double LookupP99Us { get; init; }

        public double HashingP50Us { get; init; }

        public double HashingP99Us { get; init; }

        public double DecisionAllocatedBytes { get; init; }

        public int DecisionGen0Collections { get; init; }

        public int DecisionGen2Collections { get; init; }

        public int BuildEvents { get; init; }

        /// <summary>The report: index size, KV events applied per second in three forms, decision latency and its parts, allocation.</summary>
        public void WriteTable(TextWriter output)
        {
            output.WriteLine();
            output.WriteLine(Invariant($"index: {IndexedBlocks:N0} (worker, block) entries, {DistinctBlocks:N0} distinct blocks, {Workers} workers"));
            output.WriteLine(Invariant($"{"KV events applied",-28} {EventsPerSecond,14:N0} events/s  ({EventBlocksPerSecond:N0} blocks/s; {Events:N0} events of {EventBlocks / (double)Events:F1} blocks; decoded objects)"));
            output.WriteLine(Invariant($"{"  one block per event",-28} {SingleBlockEventsPerSecond,14:N0} events/s  ({SingleBlockEvents:N0} events; decoded objects)"));
            output.WriteLine(Invariant($"{"  decoded from JSON",-28} {JsonEventsPerSecond,14:N0} events/s  ({JsonEventBlocksPerSecond:N0} blocks/s; KvEventJson.Deserialize + apply, as KvRouterService)"));
            output.WriteLine(Invariant($"{"decision latency",-28} p50 {DecisionP50Us,8:F2} us  p99 {DecisionP99Us,8:F2} us  (p90 {DecisionP90Us:F1}, p99.9 {DecisionP999Us:F0}, max {DecisionMaxUs:F0} us)  ({Decisions:N0} decisions, {RequestBlocksMean:F0} blocks per prompt)"));
            output.WriteLine(Invariant($"{"  release (not in the above)",-28} p50 {ReleaseP50Us,8:F2} us  p99 {ReleaseP99Us,8:F2} us  (first token + an earlier request's completion, when its stream ends)"));
            output.WriteLine(Invariant($"{"  index lookup alone",-28} p50 {LookupP50Us,8:F2} us  p99 {LookupP99Us,8:F2} us"));
            output.WriteLine(Invariant($"{"  prompt hashing alone",-28} p50 {HashingP50Us,8:F2} us  p99 {HashingP99Us,8:F2} us"));
            output.WriteLine(Invariant($"{"  allocated per decision",-28} {DecisionAllocatedBytes,8:F0} bytes  (gen0 GCs {DecisionGen0Collections}, gen2 GCs {DecisionGen2Collections} during {Decisions:N0} decisions)"));
        }

        /// <summary>One JSON object on one line (snake_case), then a newline.</summary>
        public void WriteJson(Stream output)
        {
            JsonReport.Write(output, indented: false, w =>
            {
                w.WriteNumber("workers", Workers);
                w.WriteNumber("indexed_blocks", IndexedBlocks);
                w.WriteNumber("distinct_blocks", DistinctBlocks);
                w.WriteNumber("events", Events);
                w.WriteNumber("event_blocks", EventBlocks);
                w.WriteNumber("events_per_second", EventsPerSecond);
                w.WriteNumber("event_blocks_per_second", EventBlocksPerSecond);
                w.WriteNumber("apply_gen2_collections", ApplyGen2Collections);
                w.WriteNumber("single_block_events", SingleBlockEvents);
                w.WriteNumber("single_block_events_per_second", SingleBlockEventsPerSecond);
                w.WriteNumber("json_events_per_second", JsonEventsPerSecond);
                w.WriteNumber("json_event_blocks_per_second", JsonEventBlocksPerSecond);
                w.WriteNumber("decisions", Decisions);
                w.WriteNumber("request_blocks_mean", Math.Round(RequestBlocksMean, 1));
                w.WriteNumber("decision_p50_us", DecisionP50Us);
                w.WriteNumber("decision_p90_us", DecisionP90Us);
                w.WriteNumber("decision_p99_us", DecisionP99Us);
                w.WriteNumber("decision_p999_us", DecisionP999Us);
                w.WriteNumber("decision_max_us", DecisionMaxUs);
                w.WriteNumber("release_p50_us", ReleaseP50Us);
                w.WriteNumber("release_p99_us", ReleaseP99Us);
                w.WriteNumber("lookup_p50_us", LookupP50Us);
                w.WriteNumber("lookup_p99_us", LookupP99Us);
                w.WriteNumber("hashing_p50_us", HashingP50Us);
                w.WriteNumber("hashing_p99_us", HashingP99Us);
                w.WriteNumber("decision_allocated_bytes", DecisionAllocatedBytes);
                w.WriteNumber("decision_gen0_collections", DecisionGen0Collections);
                w.WriteNumber("decision_gen2_collections", DecisionGen2Collections);
                w.WriteNumber("build_events", BuildEvents);
            });
        }

        private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
    }
}
