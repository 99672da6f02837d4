using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;

namespace Dynamo.Tests.Llm.Engines;

/// <summary>
/// What every <see cref="IEngine"/> must do, run once per engine by a subclass that builds it: the built-in
/// engine on the tiny synthesized model (<c>InferenceEngineContractTests</c>), the mocker
/// (<c>MockerEngineContractTests</c>) and the echo engine (<c>EchoEngineContractTests</c>). Every engine is set up
/// alike: vocabulary 512, context 256. What an engine genuinely lacks is a capability property the tests assert
/// against (the echo engine has no prefix cache: its dump is empty and its KV events null), never a skipped test.
/// What only one engine does (the built-in engine's batch invariance, the mocker's cost model) stays in that
/// engine's own test class.
/// </summary>
public abstract class EngineContractTests
{
    /// <summary>The tiny synthesized model's vocabulary and context, which the other engines are given too.</summary>
    private protected const int Vocab = 512;

    private protected const int Context = 256;

    /// <summary>An engine's shape in engine-neutral terms; each subclass maps it onto its options.</summary>
    private protected sealed record EngineSetup
    {
        public int BlockSize { get; init; } = 16;

        /// <summary>KV pool size in blocks; null: far more than any test needs.</summary>
        public int? Blocks { get; init; }

        public int MaxNumSeqs { get; init; } = 128;

        public int MaxNumBatchedTokens { get; init; } = 512;

        public bool PrefixCaching { get; init; } = true;

        public long WorkerId { get; init; }
    }

    private protected abstract IEngine Create(EngineSetup setup);

    /// <summary>Runs <paramref name="action"/> on the engine's block pool between steps.</summary>
    private protected abstract Task<T> InspectAsync<T>(IEngine engine, Func<KvBlockPool, T> action);

    /// <summary>Sets the hook the engine calls with the step number before each step.</summary>
    private protected abstract void SetBeforeStep(IEngine engine, Action<long> hook);

    /// <summary>The flag the message of a prompt too long for the KV pool names.</summary>
    private protected abstract string PoolFlag { get; }

    /// <summary>The dtype of the KV an engine exports (<see cref="EngineRequest.ExportKv"/>); null when it has none to transfer (imports are refused, nothing is exported).</summary>
    private protected abstract string? KvTransferDtype { get; }

    /// <summary>Whether the engine has a prefix cache (hits, KV events, a dump); without one it reports no cached tokens, null KV events and an empty dump.</summary>
    private protected virtual bool HasPrefixCache => true;

    /// <summary>Tokens a request generates when neither a stop token nor the context ends it first: max_tokens (the echo engine: at most its prompt).</summary>
    private protected virtual int Generated(int promptLength, int maxTokens) => maxTokens;

    private static SamplingParams Tokens(int maxTokens) => SamplingParams.Greedy with { MaxTokens = maxTokens, IgnoreEos = true };

    internal static async Task<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)> CollectAsync(IEngine engine, EngineRequest request, CancellationToken cancellationToken = default)
    {
        var tokens = new List<int>();
        var logprobs = new List<float>();
        EngineOutput? last = null;
        await foreach (EngineOutput o in engine.SubmitAsync(request, cancellationToken))
        {
            tokens.AddRange(o.TokenIds);
            logprobs.AddRange(o.Logprobs ?? []);
            last = o;
        }

        return (tokens, logprobs, last ?? throw new InvalidOperationException("empty stream"));
    }

    private static async Task<List<EngineOutput>> OutputsAsync(IEngine engine, EngineRequest request, CancellationToken cancellationToken = default)
    {
        var outputs = new List<EngineOutput>();
        await foreach (EngineOutput o in engine.SubmitAsync(request, cancellationToken))
        {
            outputs.Add(o);
        }

        return outputs;
    }

    internal static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (int i = 0; i < 3000 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition(), "timed out waiting");
    }

    /// <summary>The stats once the engine has looked at its queue again (so the last step's snapshot is published).</summary>
    private async Task<EngineStats> SettledStatsAsync(IEngine engine)
    {
        await InspectAsync(engine, _ => 0);
        return engine.Stats;
    }

    /// <summary>An engine that stops before step <paramref name="step"/> until the returned gate opens.</summary>
    private (IEngine Engine, ManualResetEventSlim Gate) Paused(EngineSetup setup, long step)
    {
        IEngine engine = Create(setup);
        var gate = new ManualResetEventSlim(false);
        SetBeforeStep(engine, n =>
        {
            if (n == step)
            {
                gate.Wait(TimeSpan.FromSeconds(30));
            }
        });
        return (engine, gate);
    }

    [Fact]
    public async Task Submit_MaxTokens_EndsWithLengthAfterThatManyTokensOnePerOutput()
    {
        await using IEngine engine = Create(new EngineSetup());
        List<EngineOutput> outputs = await OutputsAsync(engine, new EngineRequest("a", [.. Enumerable.Range(1, 20)], Tokens(12)));
        Assert.Equal(Generated(20, 12), outputs.Count);
        Assert.All(outputs, o => Assert.InRange(Assert.Single(o.TokenIds), 0, Vocab - 1));
        Assert.All(outputs, o => Assert.Null(o.Logprobs));
        Assert.All(outputs, o => Assert.Equal(20, o.PromptTokens));
        Assert.All(outputs[..^1], o => Assert.Null(o.FinishReason));
        Assert.Equal(FinishReason.Length, outputs[^1].FinishReason);
    }

    [Fact]
    public async Task Submit_StopTokenIdGenerated_EndsWithStopAtItsFirstOccurrence()
    {
        await using IEngine engine = Create(new EngineSetup());
        int[] prompt = [3, 1, 4, 1, 5, 9, 2, 6];
        var reference = await CollectAsync(engine, new EngineRequest("ref", prompt, Tokens(10)));
        var stopped = await CollectAsync(engine, new EngineRequest("stop", prompt, Tokens(10) with { StopTokenIds = [reference.Tokens[4]] }));
        int firstStop = reference.Tokens.IndexOf(reference.Tokens[4]);
        Assert.Equal(reference.Tokens[..(firstStop + 1)], stopped.Tokens);
        Assert.Equal(FinishReason.Stop, stopped.Last.FinishReason);
    }

    [Fact]
    public async Task Submit_Logprobs_OnePerTokenAndTopListsOfTheAskedLengthLedByTheChosenToken()
    {
        await using IEngine engine = Create(new EngineSetup());
        List<EngineOutput> outputs = await OutputsAsync(engine, new EngineRequest("lp", [1, 2, 3, 4], Tokens(3) with { Logprobs = true, TopLogprobs = 3 }));
        Assert.Equal(3, outputs.Count);
        Assert.All(outputs, o =>
        {
            float logprob = Assert.Single(o.Logprobs!);
            Assert.True(logprob <= 0);
            IReadOnlyList<TokenLogprob> top = Assert.Single(o.TopLogprobs!);
            Assert.Equal(3, top.Count);
            Assert.Equal(o.TokenIds[0], top[0].TokenId);
            Assert.Equal(logprob, top[0].Logprob);
            Assert.True(top[0].Logprob >= top[1].Logprob && top[1].Logprob >= top[2].Logprob);
        });
    }

    [Fact]
    public async Task Submit_SharedPrefix_LaterRequestsSkipTheSharedFullBlocksAndGiveTheSameTokens()
    {
        await using IEngine engine = Create(new EngineSetup());
        int[] first = [.. Enumerable.Range(10, 70)];
        int[] second = [.. first[..50], .. Enumerable.Range(300, 25)];
        var a = await CollectAsync(engine, new EngineRequest("a", first, Tokens(8) with { Logprobs = true }));
        var b = await CollectAsync(engine, new EngineRequest("b", second, Tokens(8)));
        var again = await CollectAsync(engine, new EngineRequest("again", first, Tokens(8) with { Logprobs = true }));
        Assert.Equal(0, a.Last.CachedTokens);
        Assert.Equal(HasPrefixCache ? 48 : 0, b.Last.CachedTokens);
        Assert.Equal(HasPrefixCache ? 64 : 0, again.Last.CachedTokens);
        Assert.Equal(75, b.Last.PromptTokens);
        Assert.Equal(a.Tokens, again.Tokens);
        Assert.Equal(a.Logprobs.Select(BitConverter.SingleToInt32Bits), again.Logprobs.Select(BitConverter.SingleToInt32Bits));
        EngineStats stats = await SettledStatsAsync(engine);
        Assert.Equal(HasPrefixCache ? 48 + 64 : 0, stats.PrefixHitTokens);
        Assert.Equal(70 + 75 + 70, stats.PrefixQueryTokens);
        Assert.Equal(70 + 75 + 70, stats.PromptTokens);
        Assert.True(stats.Steps > 0);
    }

    [Fact]
    public async Task KvEvents_AfterRequests_ReplayAndDumpGiveTheCachedSetWithTheRouterHashes()
    {
        await using IEngine engine = Create(new EngineSetup { WorkerId = 9 });
        var replay = new KvCachedSet();
        Assert.Equal(HasPrefixCache, engine.KvEvents is not null);
        if (engine.KvEvents is { } log)
        {
            log.Published += e => replay.Apply(e);
        }

        int[] first = [.. Enumerable.Range(1, 70)];
        int[] second = [.. first[..50], .. Enumerable.Range(300, 25)];
        var a = await CollectAsync(engine, new EngineRequest("a", first, Tokens(10)));
        var b = await CollectAsync(engine, new EngineRequest("b", second, Tokens(10)));
        HashSet<ulong> cached = await InspectAsync(engine, pool =>
        {
            pool.CheckInvariants();
            return pool.CachedHashes.ToHashSet();
        });
        KvEventDump dump = await engine.DumpKvAsync();
        var fromDump = new KvCachedSet();
        fromDump.Load(dump);
        Assert.Equal(cached, replay.BlockHashes.ToHashSet());
        Assert.Equal(cached, fromDump.BlockHashes.ToHashSet());

        // The router computes the same hashes from token ids alone: every full block of prompt and computed output tokens.
        int[] allA = [.. first, .. a.Tokens];
        int[] allB = [.. second, .. b.Tokens];
        HashSet<ulong> expected = HasPrefixCache
            ? [.. BlockHasher.SequenceHashes(allA.AsSpan(0, allA.Length - 1), 16), .. BlockHasher.SequenceHashes(allB.AsSpan(0, allB.Length - 1), 16)]
            : [];
        Assert.Equal(expected, cached);
        if (engine.KvEvents is { } events)
        {
            Assert.True(events.TryGetSince(0, out IReadOnlyList<KvEvent> all));
            Assert.All(all, e => Assert.Equal(9, e.WorkerId));
            Assert.Equal(9, dump.WorkerId);
            Assert.Equal(events.LastEventId, dump.LastEventId);
        }
        else
        {
            Assert.Empty(dump.Stored);
            Assert.Equal(0UL, dump.LastEventId);
        }
    }

    [Fact]
    public async Task Submit_PrefixCachingOff_NoEventsNoHits()
    {
        await using IEngine engine = Create(new EngineSetup { PrefixCaching = false });
        int[] prompt = [.. Enumerable.Range(10, 40)];
        await CollectAsync(engine, new EngineRequest("a", prompt, Tokens(4)));
        var again = await CollectAsync(engine, new EngineRequest("b", prompt, Tokens(4)));
        Assert.Null(engine.KvEvents);
        Assert.Equal(0, again.Last.CachedTokens);
        Assert.Equal(0, engine.Stats.KvBlocksCached);
        Assert.Empty((await engine.DumpKvAsync()).Stored);
    }

    [Fact]
    public async Task Submit_BadRequests_AreRejectedAtSubmitAndOthersKeepRunning()
    {
        await using IEngine engine = Create(new EngineSetup { Blocks = 4 });
        Task<(List<int> Tokens, List<float>, EngineOutput)> good = CollectAsync(engine, new EngineRequest("good", [.. Enumerable.Range(1, 10)], Tokens(8)));
        Assert.Contains($"context length is {Context}", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("a", new int[Context], Tokens(4)))).Message);
        string tooLongForPool = Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("b", new int[64], Tokens(4)))).Message;
        Assert.Contains("KV cache holds 64", tooLongForPool);
        Assert.Contains($"raise {PoolFlag}", tooLongForPool);
        Assert.Contains("outside the vocabulary", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("c", [1, Vocab], Tokens(4)))).Message);
        Assert.Contains("outside the vocabulary", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("c", [-1], Tokens(4)))).Message);
        Assert.Contains("no tokens", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("d", [], Tokens(4)))).Message);
        Assert.Contains("no id", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("", [1], Tokens(4)))).Message);
        Assert.Contains("temperature", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("e", [1], Tokens(4) with { Temperature = 3 }))).Message);
        Assert.Contains("max_tokens", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("f", [1], Tokens(4) with { MaxTokens = 0 }))).Message);
        Assert.Equal(Generated(10, 8), (await good).Tokens.Count);
        Assert.Equal(10, (await SettledStatsAsync(engine)).PromptTokens);
    }

    [Fact]
    public async Task Submit_DuplicateLiveId_IsRejectedAndTheIdIsFreeAgainAfterwards()
    {
        var (engine, gate) = Paused(new EngineSetup(), step: 1);
        await using IEngine _ = engine;
        IAsyncEnumerable<EngineOutput> first = engine.SubmitAsync(new EngineRequest("dup", [.. Enumerable.Range(1, 10)], Tokens(5)));
        Assert.Contains("already running", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("dup", [1, 2], Tokens(5)))).Message);
        gate.Set();
        int count = 0;
        await foreach (EngineOutput o in first)
        {
            count += o.TokenIds.Count;
        }

        Assert.Equal(Generated(10, 5), count);
        Assert.Equal(Generated(10, 5), (await CollectAsync(engine, new EngineRequest("dup", [.. Enumerable.Range(1, 10)], Tokens(5)))).Tokens.Count);
    }

    [Fact]
    public async Task Submit_SequenceReachingThePoolSize_EndsWithLength()
    {
        await using IEngine engine = Create(new EngineSetup { BlockSize = 4, Blocks = 5 });
        var (tokens, _, last) = await CollectAsync(engine, new EngineRequest("x", [.. Enumerable.Range(1, 12)], Tokens(100)));
        Assert.Equal(FinishReason.Length, last.FinishReason);
        Assert.Equal(20 - 12, tokens.Count);
    }

    [Fact]
    public async Task Cancel_RunningRequest_EndsItAndFreesItsBlocksAtOnce()
    {
        var (engine, gate) = Paused(new EngineSetup(), step: 3);
        await using IEngine _ = engine;
        var outputs = new List<EngineOutput>();
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("long", [.. Enumerable.Range(1, 40)], Tokens(200))))
        {
            outputs.Add(o);
            if (outputs.Count == 3)
            {
                Assert.True(engine.Cancel("long"));
                gate.Set();
            }
        }

        Assert.Equal(5, outputs.Count);
        Assert.Equal(FinishReason.Cancelled, outputs[^1].FinishReason);
        Assert.Empty(outputs[^1].TokenIds);
        Assert.Equal(40, outputs[^1].PromptTokens);
        Assert.Equal(0, outputs[^1].ImportedTokens);
        Assert.Equal(0, await InspectAsync(engine, pool => pool.UsedCount));
        await WaitUntilAsync(() => engine.Stats.RequestsFinished == 1);
        EngineStats stats = engine.Stats;
        Assert.Equal(0, stats.KvBlocksUsed);

        // 40 prompt and 4 generated tokens: the first 43 have their KV, two full blocks stay cached.
        Assert.Equal(HasPrefixCache ? 2 : 0, stats.KvBlocksCached);
        Assert.Equal(0, stats.RunningRequests + stats.WaitingRequests);
        Assert.False(engine.Cancel("long"));
        Assert.False(engine.Cancel("never-submitted"));
    }

    [Fact]
    public async Task Submit_TokenCancelled_FreesTheRequest()
    {
        var (engine, gate) = Paused(new EngineSetup(), step: 2);
        await using IEngine _ = engine;
        using var cts = new CancellationTokenSource();
        var outputs = new List<EngineOutput>();
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("x", [.. Enumerable.Range(5, 20)], Tokens(200)), cts.Token))
        {
            outputs.Add(o);
            if (outputs.Count == 2)
            {
                await cts.CancelAsync();
                gate.Set();
            }
        }

        Assert.Equal(FinishReason.Cancelled, outputs[^1].FinishReason);
        Assert.Equal(4, outputs.Count);
        Assert.Equal(0, await InspectAsync(engine, pool => pool.UsedCount));
        await WaitUntilAsync(() => engine.Stats.RequestsFinished == 1);
        Assert.Equal(0, engine.Stats.RunningRequests + engine.Stats.WaitingRequests);
    }

    [Fact]
    public async Task Submit_AbandonedEnumeration_CancelsTheRequestAndFreesItsBlocks()
    {
        var (engine, gate) = Paused(new EngineSetup(), step: 1);
        await using IEngine _ = engine;
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("y", [.. Enumerable.Range(5, 20)], Tokens(200))))
        {
            break;
        }

        gate.Set();
        await WaitUntilAsync(() => engine.Stats.RequestsFinished == 1);
        Assert.Equal(0, await InspectAsync(engine, pool => pool.UsedCount));
        Assert.Equal(0, engine.Stats.KvBlocksUsed);
        Assert.True(engine.Stats.GeneratedTokens < 10);
    }

    [Fact]
    public async Task Stats_WhileRunning_CountRequestsAndBlocks()
    {
        using var reached = new ManualResetEventSlim(false);
        using var start = new ManualResetEventSlim(false);
        using var resume = new ManualResetEventSlim(false);
        await using IEngine engine = Create(new EngineSetup { MaxNumSeqs = 2 });
        SetBeforeStep(engine, n =>
        {
            if (n == 0)
            {
                reached.Set();
                start.Wait(TimeSpan.FromSeconds(30));
            }
            else if (n == 2)
            {
                resume.Wait(TimeSpan.FromSeconds(30));
            }
        });

        // The first request is planned alone; the others arrive during its first step, and the next admits one
        // of them (two at most run): after that step, two run and two wait.
        var tasks = new List<Task<(List<int> Tokens, List<float>, EngineOutput)>> { CollectAsync(engine, new EngineRequest("s0", [1, 2, 3, 4], Tokens(200))) };
        Assert.True(reached.Wait(TimeSpan.FromSeconds(30)));
        tasks.AddRange(Enumerable.Range(1, 3).Select(i => CollectAsync(engine, new EngineRequest($"s{i}", [1, 2, 3, i + 4], Tokens(200)))));
        start.Set();
        await WaitUntilAsync(() => engine.Stats.Steps == 2);
        EngineStats running = engine.Stats;
        resume.Set();
        var results = await Task.WhenAll(tasks);
        Assert.Equal(2, running.RunningRequests);
        Assert.Equal(2, running.WaitingRequests);
        Assert.True(running.KvBlocksUsed > 0);
        Assert.Equal(16, running.PromptTokens);
        EngineStats end = await SettledStatsAsync(engine);
        Assert.All(results, r => Assert.Equal(Generated(4, 200), r.Tokens.Count));
        Assert.Equal(16, end.PromptTokens);
        Assert.Equal(4 * Generated(4, 200), end.GeneratedTokens);
        Assert.Equal(4, end.RequestsFinished);
        Assert.Equal(0, end.RunningRequests + end.WaitingRequests);
        Assert.Equal(0, end.KvBlocksUsed);
    }

    [Fact]
    public async Task Submit_SmallPool_PreemptsAndStillFinishesEveryRequest()
    {
        await using IEngine engine = Create(new EngineSetup { BlockSize = 8, Blocks = 40, MaxNumBatchedTokens = 48, MaxNumSeqs = 32 });
        var random = new Random(3);
        int[][] prompts = [.. Enumerable.Range(0, 24).Select(_ => Enumerable.Range(0, random.Next(5, 60)).Select(_ => random.Next(Vocab)).ToArray())];
        var results = await Task.WhenAll(prompts.Select((p, i) => CollectAsync(engine, new EngineRequest($"p{i}", p, Tokens(24)))));
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(Generated(prompts[i].Length, 24), results[i].Tokens.Count);
        }

        await InspectAsync(engine, pool =>
        {
            pool.CheckInvariants();
            return 0;
        });
        EngineStats stats = engine.Stats;
        Assert.True(stats.Preemptions > 0, "a pool of 40 blocks of 8 must preempt 24 requests");
        Assert.Equal(0, stats.KvBlocksUsed);
        Assert.Equal(prompts.Sum(p => Generated(p.Length, 24)), stats.GeneratedTokens);
        Assert.Equal(24, stats.RequestsFinished);
    }

    [Fact]
    public async Task Submit_128ConcurrentRequests_AllCompleteAndShareTheSystemPrompt()
    {
        await using IEngine engine = Create(new EngineSetup { MaxNumSeqs = 64, MaxNumBatchedTokens = 512 });
        int[] system = [.. Enumerable.Range(1, 64)];
        var results = await Task.WhenAll(Enumerable.Range(0, 128).Select(i =>
            CollectAsync(engine, new EngineRequest($"c{i}", [.. system, .. Enumerable.Range(100 + i, 1 + i % 30)], Tokens(16 + i % 8)))));
        for (int i = 0; i < 128; i++)
        {
            Assert.Equal(16 + i % 8, results[i].Tokens.Count);
            Assert.Equal(FinishReason.Length, results[i].Last.FinishReason);
        }

        EngineStats stats = await SettledStatsAsync(engine);
        Assert.Equal(128, stats.RequestsFinished);
        Assert.Equal(0, stats.KvBlocksUsed);
        if (HasPrefixCache)
        {
            Assert.True(stats.PrefixHitTokens >= 127 * 64 - 64 * 64, $"the shared 64-token system prompt should hit for most requests (hit {stats.PrefixHitTokens})");
        }
        else
        {
            Assert.Equal(0, stats.PrefixHitTokens);
        }
    }

    [Fact]
    public async Task ExportKv_PrefillOnOneEngineDecodeOnAnother_ImportsThePromptAndGivesTheTokensOfALocalPrefill()
    {
        int[] prompt = [.. Enumerable.Range(7, 45)];
        await using IEngine prefill = Create(new EngineSetup());
        var first = await CollectAsync(prefill, new EngineRequest("p", prompt, Tokens(1)) { ExportKv = true });
        KvTransferPayload? kv = first.Last.Kv;
        Assert.Equal(KvTransferDtype, kv?.Layout.Dtype);
        if (kv is not null)
        {
            Assert.Equal(prompt.Length, kv.Layout.TokenCount);
            Assert.Equal(16, kv.Layout.BlockSize);
            Assert.Equal(kv.Layout.ByteCount, kv.Data.Length);
        }

        // Another block size: the transfer is token-major.
        await using IEngine decode = Create(new EngineSetup { BlockSize = 5 });
        int[] next = [.. prompt, first.Tokens[0]];
        var rest = await CollectAsync(decode, new EngineRequest("d", next, Tokens(8)) { Kv = kv });
        Assert.Equal(kv is null ? 0 : prompt.Length, rest.Last.ImportedTokens);
        EngineStats stats = await SettledStatsAsync(decode);
        Assert.Equal(0, stats.KvImportsRefused);
        Assert.Equal(0, stats.KvBlocksUsed);
        var local = await CollectAsync(decode, new EngineRequest("l", next, Tokens(8)));
        Assert.Equal(Generated(next.Length, 8), rest.Tokens.Count);
        Assert.Equal(local.Tokens, rest.Tokens);
    }

    [Fact]
    public async Task ImportKv_ForeignLayout_IsRefusedAndPrefilledLocallyWithTheSameOutput()
    {
        int[] prompt = [.. Enumerable.Range(20, 46)];
        await using IEngine engine = Create(new EngineSetup());
        var reference = await CollectAsync(engine, new EngineRequest("ref", prompt, Tokens(8)));

        // Tensors of another model's shape (the tiny model has 2 layers, 2 KV heads of 16), and of its shape in too short a buffer.
        KvTransferPayload[] foreign =
        [
            new(new KvTransferLayout { Layers = 2, KvHeads = 2, HeadDim = 4, Dtype = "f32", BlockSize = 16, TokenCount = 45 }, new byte[2 * 2 * 45 * 2 * 4 * 4]),
            new(new KvTransferLayout { Layers = 3, KvHeads = 2, HeadDim = 16, Dtype = "f32", BlockSize = 16, TokenCount = 29 }, new byte[10]),
            new(new KvTransferLayout { Layers = 2, KvHeads = 2, HeadDim = 16, Dtype = "f32", BlockSize = 16, TokenCount = 29 }, new byte[10]),
        ];
        for (int i = 0; i < foreign.Length; i++)
        {
            var again = await CollectAsync(engine, new EngineRequest($"again{i}", prompt, Tokens(8)) { Kv = foreign[i] });
            Assert.Equal(reference.Tokens, again.Tokens);
            Assert.Equal(0, again.Last.ImportedTokens);
        }

        Assert.Equal(foreign.Length, (await SettledStatsAsync(engine)).KvImportsRefused);
    }

    /// <summary>What a prefill worker sends: the KV of <paramref name="prompt"/>'s first <paramref name="tokens"/> tokens, run with max_tokens 1 on an engine of its own (null for an engine with no KV to transfer).</summary>
    private async Task<KvTransferPayload?> RemotePrefillAsync(int[] prompt, int tokens)
    {
        await using IEngine prefill = Create(new EngineSetup());
        var result = await CollectAsync(prefill, new EngineRequest("prefill", prompt[..tokens], Tokens(1)) { ExportKv = true });
        Assert.Equal(KvTransferDtype is null ? null : tokens, result.Last.Kv?.Layout.TokenCount);
        return result.Last.Kv;
    }

    /// <summary>The status of a deferred import that ended as <paramref name="status"/> on an engine with a KV store; without one nothing is reserved.</summary>
    private KvImportStatus Deferred(KvImportStatus status) => KvTransferDtype is null ? KvImportStatus.NotReserved : status;

    [Fact]
    public async Task DeferredKv_Delivered_ImportsThePromptAndGivesTheTokensOfALocalPrefill()
    {
        int[] prompt = [.. Enumerable.Range(7, 50)];

        // Another block size than the prefill's: the transfer is token-major.
        await using IEngine decode = Create(new EngineSetup { BlockSize = 5 });
        var import = new DeferredKvImport(45);
        var decoding = CollectAsync(decode, new EngineRequest("d", prompt, Tokens(8)) { DeferredKv = import });
        bool reserved = await import.Reserved;
        Assert.Equal(KvTransferDtype is not null, reserved);
        KvTransferPayload? kv = await RemotePrefillAsync(prompt, 45);
        if (reserved)
        {
            // Parked: its 9 blocks of 5 are held, and it is neither running nor waiting.
            await WaitUntilAsync(() => decode.Stats.AwaitingKvRequests == 1);
            EngineStats parked = decode.Stats;
            Assert.Equal(9, parked.KvBlocksUsed);
            Assert.Equal(0, parked.RunningRequests + parked.WaitingRequests);
            import.Deliver(kv!);
        }

        var rest = await decoding;
        KvImportOutcome outcome = await import.Completed;
        Assert.Equal(Deferred(KvImportStatus.Imported), outcome.Status);
        Assert.Equal(reserved, outcome.Imported);
        Assert.Equal(reserved ? 45 : 0, rest.Last.ImportedTokens);
        Assert.Equal(0, rest.Last.CachedTokens);
        EngineStats stats = await SettledStatsAsync(decode);
        Assert.Equal(0, stats.KvImportsRefused);
        Assert.Equal(0, stats.KvBlocksUsed + stats.AwaitingKvRequests);
        Assert.Equal(50, stats.PromptTokens);
        var local = await CollectAsync(decode, new EngineRequest("l", prompt, Tokens(8)));
        Assert.Equal(Generated(prompt.Length, 8), rest.Tokens.Count);
        Assert.Equal(local.Tokens, rest.Tokens);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DeferredKv_Failed_ReleasesTheBlocksAndPrefillsLocallyWithTheSameTokens(bool beforeSubmit)
    {
        int[] prompt = [.. Enumerable.Range(30, 50)];
        await using IEngine engine = Create(new EngineSetup());
        var import = new DeferredKvImport(45);
        if (beforeSubmit)
        {
            import.Fail("the prefill worker went away");
        }

        var running = CollectAsync(engine, new EngineRequest("d", prompt, Tokens(8)) { DeferredKv = import });
        Assert.Equal(KvTransferDtype is not null, await import.Reserved);
        import.Fail(beforeSubmit ? "a second failure" : "the prefill worker went away");
        var result = await running;
        KvImportOutcome outcome = await import.Completed;
        Assert.Equal(Deferred(KvImportStatus.Failed), outcome.Status);
        Assert.Equal(KvTransferDtype is null ? "the echo engine has no KV to import" : "the prefill worker went away", outcome.Detail);
        Assert.Equal(0, result.Last.ImportedTokens);
        EngineStats stats = await SettledStatsAsync(engine);
        Assert.Equal(0, stats.KvImportsRefused);
        Assert.Equal(0, stats.KvBlocksUsed + stats.AwaitingKvRequests);
        var reference = await CollectAsync(engine, new EngineRequest("ref", prompt, Tokens(8)));
        Assert.Equal(reference.Tokens, result.Tokens);
    }

    [Fact]
    public async Task DeferredKv_PayloadOfAnotherTokenCountOrLayout_IsRefusedAndPrefilledLocally()
    {
        int[] prompt = [.. Enumerable.Range(60, 50)];
        await using IEngine engine = Create(new EngineSetup());
        KvTransferPayload foreign = new(new KvTransferLayout { Layers = 3, KvHeads = 2, HeadDim = 16, Dtype = "f32", BlockSize = 16, TokenCount = 45 }, new byte[2 * 3 * 45 * 2 * 16 * 4]);
        KvTransferPayload[] payloads = [await RemotePrefillAsync(prompt, 30) ?? foreign, foreign];
        var results = new List<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)>();
        for (int i = 0; i < payloads.Length; i++)
        {
            var import = new DeferredKvImport(45);
            var running = CollectAsync(engine, new EngineRequest($"d{i}", prompt, Tokens(8)) { DeferredKv = import });
            Assert.Equal(KvTransferDtype is not null, await import.Reserved);
            import.Deliver(payloads[i]);
            results.Add(await running);
            KvImportOutcome outcome = await import.Completed;
            Assert.Equal(Deferred(KvImportStatus.Refused), outcome.Status);
            if (KvTransferDtype is not null)
            {
                Assert.Contains(i == 0 ? "the payload has 30 tokens, 45 were reserved" : "cannot import a payload of layout", outcome.Detail);
            }
        }

        var reference = await CollectAsync(engine, new EngineRequest("ref", prompt, Tokens(8)));
        Assert.All(results, r => Assert.Equal(reference.Tokens, r.Tokens));
        Assert.All(results, r => Assert.Equal(0, r.Last.ImportedTokens));
        EngineStats stats = await SettledStatsAsync(engine);
        Assert.Equal(KvTransferDtype is null ? 0 : 2, stats.KvImportsRefused);
        Assert.Equal(0, stats.KvBlocksUsed);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DeferredKv_CancelledWhileParked_FreesItsBlocksAtOnceAndLaterArrivalsAreNoOps(bool byToken)
    {
        // Paused before the first step: the echo engine, which reserves nothing, is cancelled in its queue.
        var (engine, gate) = Paused(new EngineSetup(), step: 0);
        await using IEngine _ = engine;
        using var cts = new CancellationTokenSource();
        var import = new DeferredKvImport(45);
        Task<List<EngineOutput>> reading = OutputsAsync(engine, new EngineRequest("d", [.. Enumerable.Range(1, 50)], Tokens(8)) { DeferredKv = import }, cts.Token);
        bool reserved = await import.Reserved;
        Assert.Equal(KvTransferDtype is not null, reserved);
        if (byToken)
        {
            await cts.CancelAsync();
        }
        else
        {
            Assert.True(engine.Cancel("d"));
        }

        gate.Set();
        List<EngineOutput> outputs = await reading;
        Assert.Equal(FinishReason.Cancelled, outputs[^1].FinishReason);
        Assert.Equal(0, outputs[^1].ImportedTokens);
        Assert.Equal(0, await InspectAsync(engine, pool =>
        {
            pool.CheckInvariants();
            return pool.UsedCount;
        }));
        await WaitUntilAsync(() => engine.Stats.RequestsFinished == 1);
        Assert.Equal(0, engine.Stats.KvBlocksUsed + engine.Stats.AwaitingKvRequests);
        KvImportOutcome outcome = await import.Completed;
        Assert.Equal(Deferred(KvImportStatus.Cancelled), outcome.Status);

        import.Deliver(new KvTransferPayload(new KvTransferLayout { Layers = 0, KvHeads = 0, HeadDim = 0, Dtype = KvTransferDtype ?? "f32", BlockSize = 16, TokenCount = 45 }, ReadOnlyMemory<byte>.Empty));
        import.Fail("too late");
        Assert.Same(outcome, await import.Completed);
        var after = await CollectAsync(engine, new EngineRequest("after", [.. Enumerable.Range(1, 50)], Tokens(8)));
        Assert.Equal(Generated(50, 8), after.Tokens.Count);
        EngineStats stats = await SettledStatsAsync(engine);
        Assert.Equal(0, stats.KvImportsRefused);
        Assert.Equal(0, stats.KvBlocksUsed);
    }

    [Fact]
    public async Task DeferredKv_DisposedWhileParked_EndsTheStreamWithObjectDisposedException()
    {
        var (engine, gate) = Paused(new EngineSetup(), step: 0);
        var import = new DeferredKvImport(45);
        var running = CollectAsync(engine, new EngineRequest("d", [.. Enumerable.Range(1, 50)], Tokens(200)) { DeferredKv = import });
        Assert.Equal(KvTransferDtype is not null, await import.Reserved);
        Task disposing = engine.DisposeAsync().AsTask();
        gate.Set();
        await disposing;
        await Assert.ThrowsAsync<ObjectDisposedException>(() => running);
        Assert.Equal(Deferred(KvImportStatus.Cancelled), (await import.Completed).Status);
        import.Fail("too late");
    }

    [Fact]
    public async Task DeferredKv_TooFewFreeBlocks_IsNotReservedAndTheRequestStillCompletes()
    {
        await using IEngine engine = Create(new EngineSetup { Blocks = 8 });

        // 100 tokens hold 7 of the 8 blocks; 40 more need 3.
        var holding = new DeferredKvImport(100);
        var big = CollectAsync(engine, new EngineRequest("big", [.. Enumerable.Range(1, 101)], Tokens(4)) { DeferredKv = holding });
        Assert.Equal(KvTransferDtype is not null, await holding.Reserved);
        var starved = new DeferredKvImport(40);
        var small = CollectAsync(engine, new EngineRequest("small", [.. Enumerable.Range(200, 41)], Tokens(4)) { DeferredKv = starved });
        Assert.False(await starved.Reserved);
        KvImportOutcome outcome = await starved.Completed;
        Assert.Equal(KvImportStatus.NotReserved, outcome.Status);
        Assert.Contains(KvTransferDtype is null ? "no KV to import" : "too few free KV blocks for 40 tokens (3 needed, 1 free)", outcome.Detail);
        holding.Fail("timed out");
        Assert.Equal(Generated(41, 4), (await small).Tokens.Count);
        Assert.Equal(Generated(101, 4), (await big).Tokens.Count);
        Assert.Equal(Deferred(KvImportStatus.Failed), (await holding.Completed).Status);
        await InspectAsync(engine, pool =>
        {
            pool.CheckInvariants();
            return 0;
        });
        EngineStats stats = await SettledStatsAsync(engine);
        Assert.Equal(0, stats.KvBlocksUsed + stats.AwaitingKvRequests);
        Assert.Equal(0, stats.KvImportsRefused);
    }

    [Fact]
    public async Task DeferredKv_TokenCountNotBelowThePromptLength_IsNotReservedAndPrefilledLocally()
    {
        await using IEngine engine = Create(new EngineSetup());
        var import = new DeferredKvImport(10);
        var result = await CollectAsync(engine, new EngineRequest("d", [.. Enumerable.Range(1, 10)], Tokens(4)) { DeferredKv = import });
        Assert.False(await import.Reserved);
        KvImportOutcome outcome = await import.Completed;
        Assert.Equal(KvImportStatus.NotReserved, outcome.Status);
        Assert.Contains(KvTransferDtype is null ? "no KV to import" : "10 tokens of KV for a prompt of 10", outcome.Detail);
        Assert.Equal(Generated(10, 4), result.Tokens.Count);
        Assert.Equal(0, result.Last.ImportedTokens);
    }

    [Fact]
    public async Task DeferredKv_Parked_IsNotScheduledWhileStepsRunForOtherRequests()
    {
        int[] prompt = [.. Enumerable.Range(1, 50)];
        await using IEngine engine = Create(new EngineSetup());
        var import = new DeferredKvImport(45);
        int outputs = 0;
        var parkedRequest = new EngineRequest("parked", prompt, Tokens(8)) { DeferredKv = import };
        Task<List<int>> parked = Task.Run(async () =>
        {
            var tokens = new List<int>();
            await foreach (EngineOutput o in engine.SubmitAsync(parkedRequest))
            {
                Interlocked.Increment(ref outputs);
                tokens.AddRange(o.TokenIds);
            }

            return tokens;
        });
        bool reserved = await import.Reserved;
        Assert.Equal(KvTransferDtype is not null, reserved);
        if (reserved)
        {
            var other = await CollectAsync(engine, new EngineRequest("other", [.. Enumerable.Range(300, 20)], Tokens(24)));
            Assert.Equal(24, other.Tokens.Count);
            EngineStats stats = await SettledStatsAsync(engine);
            Assert.True(stats.Steps >= 24, $"{stats.Steps} steps");
            Assert.Equal(0, Volatile.Read(ref outputs));
            Assert.Equal(1, stats.AwaitingKvRequests);
            Assert.Equal(0, stats.RunningRequests + stats.WaitingRequests);
            import.Deliver((await RemotePrefillAsync(prompt, 45))!);
        }

        List<int> tokens = await parked;
        var local = await CollectAsync(engine, new EngineRequest("local", prompt, Tokens(8)));
        Assert.Equal(local.Tokens, tokens);
        Assert.Equal(Deferred(KvImportStatus.Imported), (await import.Completed).Status);
    }

    [Fact]
    public async Task DeferredKv_SubmitRejectedOrImportReused_CompletesTheImportOrThrows()
    {
        await using IEngine engine = Create(new EngineSetup());
        var rejected = new DeferredKvImport(4);
        Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("r", [1, Vocab], Tokens(4)) { DeferredKv = rejected }));
        Assert.False(await rejected.Reserved);
        KvImportOutcome outcome = await rejected.Completed;
        Assert.Equal(KvImportStatus.Cancelled, outcome.Status);
        Assert.Contains("outside the vocabulary", outcome.Detail);
        Assert.Contains("already submitted", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("again", [1, 2, 3, 4, 5], Tokens(4)) { DeferredKv = rejected })).Message);
        KvTransferPayload kv = new(new KvTransferLayout { Layers = 0, KvHeads = 0, HeadDim = 0, Dtype = "f32", BlockSize = 16, TokenCount = 4 }, ReadOnlyMemory<byte>.Empty);
        Assert.Contains("both Kv and DeferredKv", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("both", [1, 2, 3, 4, 5], Tokens(4)) { Kv = kv, DeferredKv = new DeferredKvImport(4) })).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeferredKvImport(0));
    }

    [Fact]
    public async Task DisposeAsync_WithLiveRequests_EndsTheirStreamsWithObjectDisposedException()
    {
        var (engine, gate) = Paused(new EngineSetup(), step: 2);
        Task<(List<int>, List<float>, EngineOutput)> running = CollectAsync(engine, new EngineRequest("live", [.. Enumerable.Range(1, 40)], Tokens(200)));
        await WaitUntilAsync(() => engine.Stats.GeneratedTokens > 0);
        Task disposing = engine.DisposeAsync().AsTask();
        gate.Set();
        await disposing;
        await Assert.ThrowsAsync<ObjectDisposedException>(() => running);
        Assert.Throws<ObjectDisposedException>(() => engine.SubmitAsync(new EngineRequest("late", [1], Tokens(1))));
        Assert.False(engine.Cancel("live"));
        await engine.DisposeAsync();
    }
}
