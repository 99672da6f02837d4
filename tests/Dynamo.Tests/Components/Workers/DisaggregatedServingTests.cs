using System.Text.Json;
using Dynamo.Components.KvTransfer;
using Dynamo.Components.Registry;
using Dynamo.Components.Workers;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;
using Dynamo.Tests.Engine.Serving;
using Dynamo.Tests.Frontend;

namespace Dynamo.Tests.Components.Workers;

/// <summary>
/// Disaggregated serving through the frontend, in one process (single-machine mode: in-process discovery and
/// request plane, the KV over a real loopback TCP transfer): long prompts prefill on prefill workers and their
/// KV moves to the decode worker; the output is that of aggregated serving; faults fall back to a local prefill.
/// </summary>
public sealed class DisaggregatedServingTests
{
    private const string Completions = "v1/completions";

    private static readonly DisaggregationSettings EveryLongPrompt = new() { MaxLocalPrefillLength = 8, MaxPrefillQueueSize = 1000 };

    [Fact]
    public async Task Mocker_LongPromptsInParallel_EachPrefilledOnceOnAPrefillWorkerAndAllComplete()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, Mocker());
        TestWorker[] prefill = [await AddPrefillAsync(h, Mocker()), await AddPrefillAsync(h, Mocker())];
        await WaitForSettingsAsync(h, EveryLongPrompt);

        int[][] prompts = [.. Enumerable.Range(0, 12).Select(i => Enumerable.Range(10 + (i * 7), 40 + i).ToArray())];
        (int Status, JsonElement Body)[] answers = await Task.WhenAll(prompts.Select(p => h.PostJsonAsync(Completions, Body(p, 6))));

        Assert.All(answers, a => Assert.Equal(200, a.Status));
        Assert.All(answers, a => Assert.Equal(6, a.Body.GetProperty("usage").GetProperty("completion_tokens").GetInt32()));
        WorkerDisaggregationStats d = decode.Worker!.Disaggregation;
        Assert.Equal(prompts.Length, d.RemotePrefills);
        Assert.Empty(d.LocalFallbacks);
        Assert.Equal(prompts.Length, prefill.Sum(p => p.Worker!.Disaggregation.PrefillsServed));
        Assert.Equal(prompts.Sum(p => (long)p.Length - 1), d.TransferTokensReceived);
        DisaggregationCounters routed = h.Server.Registry.DisaggregationOf(FrontendHarness.Model);
        Assert.Equal(prompts.Length, routed.Remote);
        Assert.Equal(prompts.Length, routed.RemoteCompleted);
        Assert.Equal(prompts.Length, routed.RouteWaits);
        Assert.True(routed.PrefillSeconds > 0);
        string metrics = await h.Http.GetStringAsync("/metrics");
        Assert.Contains($"dynamo_frontend_disagg_remote_prefills_total{{model=\"tiny\"}} {prompts.Length}", metrics);
        Assert.Contains($"dynamo_frontend_disagg_decisions_total{{model=\"tiny\",prefill=\"remote\",reason=\"long_prompt\"}} {prompts.Length}", metrics);
        Assert.All(prefill, p => Assert.Equal(0, p.Worker!.RequestErrors));
        await AssertNoBlocksHeldAsync(decode, prefill);
    }

    [Fact]
    public async Task Mocker_DataParallelDecodeAndPrefillWorkers_EveryPrefillRemoteOnTheRankTheRouterChose()
    {
        // Two ranks on each side, numbered from 2 and from 4 (as on a second node): the KV router names a decode rank and a
        // prefill rank, and the decode worker asks the prefill worker for that rank (a rank it has not would be refused).
        await using MockerEngine decodeRank1 = Mocker();
        await using MockerEngine prefillRank1 = Mocker();
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { Processing = FrontendOptions.Default.Processing with { RouterMode = RouterModes.Kv } });
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        KvTransferServer transfer = KvTransferServer.Start(KvTransferServerOptions.Default with { BindAddress = "127.0.0.1", PoolBuffers = true });
        TestWorker decode = await h.AddWorkerAsync([Mocker(), decodeRank1], options: EngineWorkerOptions.Default with { KvTransfer = transfer, FirstDpRank = 2 });
        TestWorker prefill = await h.AddWorkerAsync([Mocker(), prefillRank1], component: "prefill", role: "prefill", options: EngineWorkerOptions.Default with { FirstDpRank = 4 });
        await WaitForSettingsAsync(h, EveryLongPrompt);

        int[][] prompts = [.. Enumerable.Range(0, 8).Select(i => Enumerable.Range(10 + (i * 7), 40 + i).ToArray())];
        (int Status, JsonElement Body)[] answers = await Task.WhenAll(prompts.Select(p => h.PostJsonAsync(Completions, Body(p, 6))));

        Assert.All(answers, a => Assert.Equal(200, a.Status));
        Assert.Equal(prompts.Length, decode.Worker!.Disaggregation.RemotePrefills);
        Assert.Empty(decode.Worker.Disaggregation.LocalFallbacks);
        Assert.Equal(prompts.Length, prefill.Worker!.Disaggregation.PrefillsServed);
        Assert.Equal(0, prefill.Worker.RequestErrors);
        Assert.Equal(prompts.Length, decode.Worker.RankStats.Sum(r => r.RequestsFinished));
        Assert.Equal(prompts.Length, prefill.Worker.RankStats.Sum(r => r.RequestsFinished));
    }

    [Fact]
    public async Task Mocker_ShortPrompt_PrefillsOnTheDecodeWorkerAndIsCountedLocal()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, Mocker());
        TestWorker prefill = await AddPrefillAsync(h, Mocker());
        await WaitForSettingsAsync(h, EveryLongPrompt);

        Assert.Equal(200, (await h.PostJsonAsync(Completions, Body([.. Enumerable.Range(3, 8)], 4))).Status);

        Assert.Equal(0, decode.Worker!.Disaggregation.RemotePrefills);
        Assert.Equal(0, prefill.Worker!.RequestsTotal);
        Assert.Equal([(false, PrefillReasons.ShortPrompt, 1L)], h.Server.Registry.DisaggregationOf(FrontendHarness.Model).Snapshot());
    }

    [Fact]
    public async Task Settings_ChangedAtRunTime_TheNextRequestFollowsThem()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        TestWorker decode = await AddDecodeAsync(h, Mocker());
        await AddPrefillAsync(h, Mocker());
        int[] prompt = [.. Enumerable.Range(3, 60)];

        // The defaults: 60 tokens is short.
        Assert.Equal(200, (await h.PostJsonAsync(Completions, Body(prompt, 2))).Status);
        Assert.Equal(0, decode.Worker!.Disaggregation.RemotePrefills);

        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        await WaitForSettingsAsync(h, EveryLongPrompt);
        Assert.Equal(200, (await h.PostJsonAsync(Completions, Body([.. prompt.Select(t => t + 1)], 2))).Status);
        Assert.Equal(1, decode.Worker.Disaggregation.RemotePrefills);
    }

    [Fact]
    public async Task BuiltInEngine_GreedyWithLogprobs_DisaggregatedEqualsAggregatedBitForBit()
    {
        string model = FrontendHarness.TinyChatModel.Value;
        int[][] prompts = [[.. Enumerable.Range(7, 45)], [.. Enumerable.Range(7, 45), .. Enumerable.Range(100, 30)], [.. Enumerable.Range(200, 70)]];
        var reference = new List<string>();
        await using (FrontendHarness agg = await FrontendHarness.StartAsync())
        {
            await agg.AddWorkerAsync(InferenceEngineTests.Create(model, Roomy), contextLength: 2048);
            foreach (int[] p in prompts)
            {
                reference.Add(Choice(await agg.PostJsonAsync(Completions, Body(p, 12, logprobs: true))));
            }
        }

        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, InferenceEngineTests.Create(model, Roomy with { BlockSize = 5 }), contextLength: 2048);
        TestWorker prefill = await AddPrefillAsync(h, InferenceEngineTests.Create(model, Roomy), contextLength: 2048);
        await WaitForSettingsAsync(h, EveryLongPrompt);

        // Sequentially (the second prompt then hits the first one's prefix on both sides), then all at once.
        var sequential = new List<string>();
        foreach (int[] p in prompts)
        {
            sequential.Add(Choice(await h.PostJsonAsync(Completions, Body(p, 12, logprobs: true))));
        }

        string[] parallel = (await Task.WhenAll(prompts.Select(p => h.PostJsonAsync(Completions, Body(p, 12, logprobs: true))))).Select(Choice).ToArray();

        Assert.Equal(reference, sequential);
        Assert.Equal(reference, parallel);
        Assert.Equal(2 * prompts.Length, decode.Worker!.Disaggregation.RemotePrefills);
        Assert.Equal(2 * prompts.Length, prefill.Worker!.Disaggregation.PrefillsServed);
        Assert.Empty(decode.Worker.Disaggregation.LocalFallbacks);
        await AssertNoBlocksHeldAsync(decode, [prefill]);
    }

    [Fact]
    public async Task Mocker_SimulatedLink_KvWaitsTheLinkAndItsBytesAndTimeAreCounted()
    {
        // 49 tokens of KV x 10,000 bytes = 3.92 Mbit over 10 Mbit/s = 392 ms, plus 8 ms of latency.
        var link = new SimulatedKvLink { BytesPerToken = 10_000, Gbps = 0.01, Latency = TimeSpan.FromMilliseconds(8) };
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, Mocker(), link: link);
        TestWorker prefill = await AddPrefillAsync(h, Mocker());
        await WaitForSettingsAsync(h, EveryLongPrompt);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        (int status, JsonElement body) = await h.PostJsonAsync(Completions, Body([.. Enumerable.Range(3, 50)], 3));
        TimeSpan elapsed = clock.Elapsed;

        Assert.Equal(200, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        WorkerDisaggregationStats d = decode.Worker!.Disaggregation;
        Assert.Equal(1, d.RemotePrefills);
        Assert.Equal(49 * 10_000L, d.TransferBytesReceived);
        Assert.Equal(49, d.TransferTokensReceived);
        Assert.True(d.TransferSeconds >= 0.4, $"transfer {d.TransferSeconds} s counted");
        Assert.True(d.RemotePrefillSeconds >= 0.39, $"remote prefill {d.RemotePrefillSeconds} s measured");
        Assert.True(elapsed >= TimeSpan.FromSeconds(0.39), $"request took {elapsed}");
        Assert.Equal(0, prefill.Worker!.Disaggregation.TransferBytesSent);
        await AssertNoBlocksHeldAsync(decode, [prefill]);
    }

    [Fact]
    public async Task BuiltInEngine_SimulatedLink_PayloadWithDataDeliveredAsItCame()
    {
        string model = FrontendHarness.TinyChatModel.Value;
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, InferenceEngineTests.Create(model, Roomy), contextLength: 2048,
            link: new SimulatedKvLink { BytesPerToken = 1L << 20, Gbps = 1e6, Latency = TimeSpan.Zero });
        TestWorker prefill = await AddPrefillAsync(h, InferenceEngineTests.Create(model, Roomy), contextLength: 2048);
        await WaitForSettingsAsync(h, EveryLongPrompt);

        Assert.Equal(200, (await h.PostJsonAsync(Completions, Body([.. Enumerable.Range(7, 40)], 2))).Status);

        WorkerDisaggregationStats d = decode.Worker!.Disaggregation;
        Assert.Equal(1, d.RemotePrefills);
        Assert.Equal(39 * 2 * 2 * 2 * 16 * EngineOptions.Default.KvCacheDtype.ElementBytes(), d.TransferBytesReceived);
        Assert.Equal(prefill.Worker!.Disaggregation.TransferBytesSent, d.TransferBytesReceived);
    }

    [Fact]
    public async Task PrefillWorkerGone_RequestCompletesWithALocalPrefill()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, Mocker());

        // A prefill worker whose card is published but whose endpoint serves nothing: it never answers.
        await h.AddWorkerAsync(Mocker(), component: "prefill", role: "prefill", serve: false);
        await WaitForSettingsAsync(h, EveryLongPrompt);

        (int status, JsonElement body) = await h.PostJsonAsync(Completions, Body([.. Enumerable.Range(3, 50)], 3));

        Assert.Equal(200, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(0, decode.Worker!.Disaggregation.RemotePrefills);
        Assert.Equal([(PrefillReasons.PrefillFailed, 1L)], decode.Worker.Disaggregation.LocalFallbacks);
        await AssertNoBlocksHeldAsync(decode, []);
    }

    [Fact]
    public async Task ClientGoneDuringRemotePrefill_FreesThePrefillAndDecodeBlocks()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, Mocker());

        // A prefill worker whose engine is held before its first step: the request sits in the remote prefill.
        (TestWorker prefill, ManualResetEventSlim gate) = await AddHeldPrefillAsync(h);
        await WaitForSettingsAsync(h, EveryLongPrompt);

        try
        {
            using var cancel = new CancellationTokenSource();
            Task<HttpResponseMessage> request = h.PostAsync(Completions, Body([.. Enumerable.Range(3, 50)], 3), cancel.Token);
            await WaitUntilAsync(() => prefill.Worker!.InFlight == 1 && decode.Engine.Stats.AwaitingKvRequests == 1 && decode.Engine.Stats.KvBlocksUsed > 0);
            await cancel.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);

            // The decode worker's reserved blocks go at once; the prefill worker's request ends at its next step.
            await WaitUntilAsync(() => decode.Engine.Stats.KvBlocksUsed == 0 && decode.Engine.Stats.AwaitingKvRequests == 0);
        }
        finally
        {
            gate.Set();
        }

        await WaitUntilAsync(() => prefill.Worker!.InFlight == 0);
        await AssertNoBlocksHeldAsync(decode, [prefill]);
        Assert.Equal(0, prefill.Worker!.Disaggregation.PrefillsServed);
    }

    [Fact]
    public async Task PrefillWorkerStalls_DecodeWorkerGivesUpAfterItsStallTimeoutAndPrefillsLocally()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, Mocker(), stall: TimeSpan.FromSeconds(2));

        // Its engine never completes a step: alive on the request plane, silent on progress.
        (TestWorker prefill, ManualResetEventSlim gate) = await AddHeldPrefillAsync(h);
        await WaitForSettingsAsync(h, EveryLongPrompt);
        try
        {
            (int status, JsonElement body) = await h.PostJsonAsync(Completions, Body([.. Enumerable.Range(3, 50)], 3));
            Assert.Equal(200, status);
            Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            Assert.Equal([(PrefillReasons.PrefillFailed, 1L)], decode.Worker!.Disaggregation.LocalFallbacks);
            Assert.Equal(0, decode.Worker.Disaggregation.RemotePrefills);
        }
        finally
        {
            gate.Set();
        }

        // Giving up cancelled the prefill request: the prefill worker ends it at its next step.
        await WaitUntilAsync(() => prefill.Worker!.InFlight == 0);
        await AssertNoBlocksHeldAsync(decode, [prefill]);
    }

    [Fact]
    public async Task PrefillWorkerLeavesMidRequest_RequestCompletesWithALocalPrefill()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, Mocker());
        (TestWorker prefill, ManualResetEventSlim gate) = await AddHeldPrefillAsync(h);
        await WaitForSettingsAsync(h, EveryLongPrompt);
        try
        {
            Task<(int Status, JsonElement Body)> request = h.PostJsonAsync(Completions, Body([.. Enumerable.Range(3, 50)], 3));
            await WaitUntilAsync(() => prefill.Worker!.InFlight == 1);

            // As a process that dies: its runtime goes (discovery, request plane), its engine never answers.
            await prefill.Runtime.DisposeAsync();
            (int status, JsonElement body) = await request;
            Assert.Equal(200, status);
            Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            Assert.Equal([(PrefillReasons.PrefillFailed, 1L)], decode.Worker!.Disaggregation.LocalFallbacks);
        }
        finally
        {
            gate.Set();
        }

        await AssertNoBlocksHeldAsync(decode, []);
    }

    [Fact]
    public async Task PrefillWorkerOfAnotherModel_KvRefusedByTheDecodeWorker_LocalPrefillSameOutput()
    {
        string model = FrontendHarness.TinyChatModel.Value;
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, InferenceEngineTests.Create(model, Roomy), contextLength: 2048);
        int[] prompt = [.. Enumerable.Range(7, 45)];
        string reference = Choice(await h.PostJsonAsync(Completions, Body(prompt, 8, logprobs: true)));

        // The mocker's KV is no tensor the built-in engine can take.
        await AddPrefillAsync(h, Mocker(), contextLength: 2048);
        await WaitForSettingsAsync(h, EveryLongPrompt);
        string again = Choice(await h.PostJsonAsync(Completions, Body([.. prompt], 8, logprobs: true)));

        Assert.Equal(reference, again);
        Assert.Equal([(PrefillReasons.ImportRefused, 1L)], decode.Worker!.Disaggregation.LocalFallbacks);
        Assert.Equal(1, decode.Engine.Stats.KvImportsRefused);
        await AssertNoBlocksHeldAsync(decode, []);
    }

    [Fact]
    public async Task PrefillWorkerWithOtherWeightsUnderTheSameName_RefusesAndTheDecodeWorkerPrefillsLocally()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, Mocker(), fingerprint: "aaaa");
        TestWorker prefill = await h.AddWorkerAsync(Mocker(), component: "prefill", role: "prefill", options: EngineWorkerOptions.Default with { ModelFingerprint = "bbbb" });
        await WaitForSettingsAsync(h, EveryLongPrompt);

        (int status, JsonElement body) = await h.PostJsonAsync(Completions, Body([.. Enumerable.Range(3, 50)], 3));

        Assert.Equal(200, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal([(PrefillReasons.ModelMismatch, 1L)], decode.Worker!.Disaggregation.LocalFallbacks);
        Assert.Equal(0, prefill.Engine.Stats.RequestsFinished);
        await AssertNoBlocksHeldAsync(decode, [prefill]);
    }

    [Fact]
    public async Task TransferBreaks_PrefillWorkerCountsAFailedPushAndTheDecodeWorkerPrefillsLocally()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        KvTransferServer transfer = KvTransferServer.Start(KvTransferServerOptions.Default with { BindAddress = "127.0.0.1", PoolBuffers = true });
        TestWorker decode = await h.AddWorkerAsync(Mocker(), options: EngineWorkerOptions.Default with { KvTransfer = transfer });
        (TestWorker prefill, ManualResetEventSlim gate) = await AddHeldPrefillAsync(h);
        await WaitForSettingsAsync(h, EveryLongPrompt);
        try
        {
            Task<(int Status, JsonElement Body)> request = h.PostJsonAsync(Completions, Body([.. Enumerable.Range(3, 50)], 3));
            await WaitUntilAsync(() => prefill.Worker!.InFlight == 1);

            // The decode worker's transfer port goes away while the prefill is computed: the push cannot reach it.
            await transfer.DisposeAsync();
            gate.Set();
            (int status, JsonElement body) = await request;
            Assert.Equal(200, status);
            Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }
        finally
        {
            gate.Set();
        }

        Assert.Equal([(PrefillReasons.PrefillFailed, 1L)], decode.Worker!.Disaggregation.LocalFallbacks);
        await WaitUntilAsync(() => prefill.Worker!.InFlight == 0);
        Assert.Equal(1, prefill.Worker!.Disaggregation.TransferSendFailures);
        Assert.Equal(0, prefill.Worker.Disaggregation.PrefillsServed);
        await AssertNoBlocksHeldAsync(decode, [prefill]);
    }

    /// <summary>
    /// A TP=2 prefill worker (ranks as threads over the in-process collectives), each rank pushing its own KV heads over
    /// loopback TCP with its own client, to a TP=1 decode worker: the decode worker assembles the two parts and the
    /// greedy output is aggregated serving's. With rank 1's push refused, the request ends on the prefill worker with
    /// kv_transfer_failed and the decode worker prefills locally: the same output again.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task BuiltInEngine_Tp2PrefillWorker_EachRankPushesItsHeads_SameOutputAsAggregated(bool rankOneFails)
    {
        string model = Dynamo.Tests.Engine.Parallel.TensorParallelTests.WideModel;
        int[] prompt = [.. Enumerable.Range(0, 37).Select(i => 3 + (i * 13 % 90))];
        string reference;
        await using (FrontendHarness agg = await FrontendHarness.StartAsync())
        {
            await agg.AddWorkerAsync(InferenceEngineTests.Create(model, Roomy));
            reference = Text(await agg.PostJsonAsync(Completions, Body(prompt, 8)));
        }

        await using var ranks = new Dynamo.Tests.Engine.Parallel.TensorParallelTests.TpEngine(model, 2, Roomy with { BlockSize = 8 });
        var client = new KvTransferClient();
        ranks.Ranks.SetKvSender(rankOneFails ? new RefusingSender(client, firstHead: 2) : client);
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await DisaggregationSettingsStore.PutAsync(h.Runtime.Discovery, "dynamo", FrontendHarness.Model, EveryLongPrompt);
        TestWorker decode = await AddDecodeAsync(h, InferenceEngineTests.Create(model, Roomy with { BlockSize = 5 }));
        TestWorker prefill = await AddPrefillAsync(h, ranks.Engine);
        await WaitForSettingsAsync(h, EveryLongPrompt);

        // The same greedy text; not the same logprob bits: the ranks' KV differs from one process's in float rounding.
        Assert.Equal(reference, Text(await h.PostJsonAsync(Completions, Body(prompt, 8))));

        WorkerDisaggregationStats d = decode.Worker!.Disaggregation, p = prefill.Worker!.Disaggregation;
        if (rankOneFails)
        {
            Assert.Equal([(PrefillReasons.PrefillFailed, 1L)], d.LocalFallbacks);
            await WaitUntilAsync(() => prefill.Worker.InFlight == 0);
            Assert.Equal(1, p.TransferSendFailures);
            Assert.Equal(0, p.PrefillsServed);
        }
        else
        {
            Assert.Equal(1, d.RemotePrefills);
            Assert.Equal(2, d.TransferPartsReceived);
            await WaitUntilAsync(() => p.PrefillsServed == 1);
            Assert.Equal(2, p.TransferPartsSent);
            Assert.Equal(d.TransferBytesReceived, p.TransferBytesSent);
        }

        await AssertNoBlocksHeldAsync(decode, [prefill]);
    }

    private static string Text((int Status, JsonElement Body) answer)
    {
        Assert.Equal(200, answer.Status);
        return answer.Body.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    /// <summary>Sends through <paramref name="client"/>, but throws for the part that starts at <paramref name="firstHead"/>.</summary>
    private sealed class RefusingSender(IKvTransferSender client, int firstHead) : IKvTransferSender
    {
        public Task<TimeSpan> PushAsync(string address, string transferId, KvTransferPayload payload, CancellationToken cancellationToken = default) =>
            payload.Layout.FirstKvHead == firstHead
                ? Task.FromException<TimeSpan>(new KvTransferException(KvTransferError.Refused, $"KV transfer '{transferId}' to {address}: refused by the test"))
                : client.PushAsync(address, transferId, payload, cancellationToken);
    }

    private static readonly EngineOptions Roomy = EngineOptions.Default with { KvCacheMemory = 64L << 20 };

    private static MockerEngine Mocker() => new(MockerOptions.Default with { SpeedupRatio = 1000, VocabSize = 512, ContextLength = 256 });

    private static async Task<TestWorker> AddDecodeAsync(
        FrontendHarness h, IEngine engine, int contextLength = 256, TimeSpan? stall = null, string? fingerprint = null, SimulatedKvLink? link = null)
    {
        KvTransferServer transfer = KvTransferServer.Start(KvTransferServerOptions.Default with { BindAddress = "127.0.0.1", PoolBuffers = true });
        EngineWorkerOptions options = EngineWorkerOptions.Default with { KvTransfer = transfer, ModelFingerprint = fingerprint, SimulatedLink = link };
        return await h.AddWorkerAsync(engine, contextLength: contextLength, options: stall is { } s ? options with { RemotePrefillStallTimeout = s } : options);
    }

    /// <summary>A prefill worker whose engine waits before each step until the gate is set (set it before the harness is disposed).</summary>
    private static async Task<(TestWorker Worker, ManualResetEventSlim Gate)> AddHeldPrefillAsync(FrontendHarness h)
    {
        var gate = new ManualResetEventSlim();
        MockerEngine held = Mocker();
        held.Core.BeforeStep = _ => gate.Wait();
        return (await AddPrefillAsync(h, held), gate);
    }

    private static Task<TestWorker> AddPrefillAsync(FrontendHarness h, IEngine engine, int contextLength = 256) =>
        h.AddWorkerAsync(engine, component: "prefill", role: "prefill", contextLength: contextLength);

    /// <summary>Waits until the frontend routes with <paramref name="settings"/> and sees prefill workers.</summary>
    private static Task WaitForSettingsAsync(FrontendHarness h, DisaggregationSettings settings) =>
        WaitUntilAsync(() => h.Server.Registry.TargetFor(FrontendHarness.Model, new HashSet<long>())?.Router is DisaggregatedRouter
            && h.Server.Registry.SettingsFor(FrontendHarness.Model) == settings);

    /// <summary>Every block back in every engine's pool, and the pools' invariants hold.</summary>
    private static async Task AssertNoBlocksHeldAsync(TestWorker decode, IEnumerable<TestWorker> prefill)
    {
        foreach (TestWorker w in prefill.Prepend(decode))
        {
            await WaitUntilAsync(() => w.Engine.Stats.KvBlocksUsed == 0 && w.Engine.Stats.RunningRequests == 0 && w.Engine.Stats.AwaitingKvRequests == 0);
            Task<int> checkedPool = w.Engine switch
            {
                MockerEngine m => m.Core.InspectAsync(Check),
                InferenceEngine e => e.Core.InspectAsync(Check),
                _ => throw new InvalidOperationException($"no pool to check in {w.Engine.Name}"),
            };
            Assert.Equal(0, await checkedPool);
        }

        static int Check(KvBlockPool pool)
        {
            pool.CheckInvariants();
            return pool.UsedCount;
        }
    }

    private static string Body(int[] prompt, int maxTokens, bool logprobs = false) =>
        $$"""{"model":"{{FrontendHarness.Model}}","prompt":[{{string.Join(',', prompt)}}],"max_tokens":{{maxTokens}},"temperature":0,"ignore_eos":true{{(logprobs ? ",\"logprobs\":3" : "")}}}""";

    /// <summary>The choice's text and logprobs as JSON: equal strings, equal tokens and logprob bits.</summary>
    private static string Choice((int Status, JsonElement Body) answer)
    {
        Assert.Equal(200, answer.Status);
        JsonElement choice = answer.Body.GetProperty("choices")[0];
        return choice.GetProperty("text").GetString() + "|" + choice.GetProperty("logprobs").GetRawText();
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!condition())
        {
            await Task.Delay(10, timeout.Token);
        }
    }
}
