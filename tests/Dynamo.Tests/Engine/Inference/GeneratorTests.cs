using Dynamo.Engine.Inference;
using Dynamo.Engine.Models;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.Engines;
using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Engine.Inference;

/// <summary>The generation loop on stories260K (llama2.c checkpoint + tok512) and on a synthesized tiny GGUF.</summary>
public sealed class GeneratorTests
{
    private static readonly Lazy<string> SynthPath = new(() =>
    {
        string path = Path.Combine(Path.GetTempPath(), "dynamo-generator-tests", Guid.NewGuid().ToString("N"), "tiny.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = path, Format = SynthFormat.Gguf, Type = GgmlType.F32 });
        return path;
    });

    /// <summary>A loaded model with its transformer and a generator over them.</summary>
    private sealed class Session : IDisposable
    {
        public Session(string which)
        {
            Model = which switch
            {
                "stories260K" => LoadedModel.Load(SharedData.Path("models", "stories260K", "stories260K.bin"), SharedData.Path("models", "stories260K", "tok512.bin")),
                "synth" => LoadedModel.Load(SynthPath.Value),
                _ => throw new ArgumentOutOfRangeException(nameof(which)),
            };
            Transformer = new Transformer(Model.Weights);
            Generator = new Generator(Transformer, Model.Tokenizer);
        }

        public LoadedModel Model { get; }
        public Transformer Transformer { get; }
        public Generator Generator { get; }
        public int[] Bos => [Model.Tokenizer.BosTokenId ?? 1];

        public List<GenerationStep> Run(SamplingParams p, IReadOnlyList<int>? prompt = null, CancellationToken cancellationToken = default) =>
            [.. Generator.Generate(prompt ?? Bos, p, cancellationToken)];

        public void Dispose()
        {
            Transformer.Dispose();
            Model.Dispose();
        }
    }

    private static string Text(IEnumerable<GenerationStep> steps) => string.Concat(steps.Select(s => s.Text));

    /// <summary>
    /// What streaming must produce for <paramref name="generated"/> after <paramref name="prompt"/>: the decoded
    /// whole sequence minus the decoded prompt (a llama2.c tokenizer drops the leading space only after BOS).
    /// </summary>
    private static string Expected(Session s, IReadOnlyList<int> prompt, IEnumerable<int> generated)
    {
        string head = s.Model.Tokenizer.Decode(prompt, skipSpecialTokens: true);
        string all = s.Model.Tokenizer.Decode([.. prompt, .. generated], skipSpecialTokens: true);
        Assert.StartsWith(head, all, StringComparison.Ordinal);
        return all[head.Length..];
    }

    private static void AssertOnlyLastFinishes(List<GenerationStep> steps, FinishReason expected)
    {
        Assert.Equal(expected, steps[^1].Finish);
        Assert.All(steps[..^1], s => Assert.Null(s.Finish));
    }

    [SharedTheory]
    [InlineData("stories260K", 1)]
    [InlineData("stories260K", 37)]
    [InlineData("synth", 20)]
    public void Generate_GreedyMaxTokens_ExactlyNStepsEndingWithLength(string which, int n)
    {
        using var s = new Session(which);

        List<GenerationStep> steps = s.Run(SamplingParams.Greedy with { MaxTokens = n, IgnoreEos = true });

        Assert.Equal(n, steps.Count);
        AssertOnlyLastFinishes(steps, FinishReason.Length);
        Assert.All(steps, st => Assert.InRange(st.TokenId, 0, s.Model.Config.VocabSize - 1));
    }

    [SharedTheory]
    [InlineData("stories260K", 0f, 1UL, "")]
    [InlineData("stories260K", 1.2f, 5UL, "")]
    [InlineData("stories260K", 1f, 6UL, "Lily and Tom")]
    [InlineData("synth", 1f, 3UL, "")]
    [InlineData("synth", 2f, 4UL, "")]
    [InlineData("synth", 2f, 9UL, "ab cd")]
    public void Generate_StreamedText_EqualsDecodedContinuation(string which, float temperature, ulong seed, string promptText)
    {
        using var s = new Session(which);
        IReadOnlyList<int> prompt = promptText.Length == 0 ? s.Bos : s.Model.Tokenizer.Encode(promptText, addSpecialTokens: true);

        List<GenerationStep> steps = s.Run(new SamplingParams { Temperature = temperature, Seed = seed, MaxTokens = 200, IgnoreEos = true }, prompt);

        Assert.Equal(Expected(s, prompt, steps.Select(st => st.TokenId)), Text(steps));
    }

    [SharedFact]
    public void Generate_StopString_CutsTextBeforeItAndEndsWithStop()
    {
        using var s = new Session("stories260K");
        string full = Text(s.Run(SamplingParams.Greedy with { MaxTokens = 120 }));
        const string stop = "little";
        int at = full.IndexOf(stop, StringComparison.Ordinal);
        Assert.True(at > 0, $"greedy text should contain '{stop}': {full}");

        List<GenerationStep> steps = s.Run(SamplingParams.Greedy with { MaxTokens = 120, Stop = ["zzz-never", stop] });

        Assert.Equal(full[..at], Text(steps));
        AssertOnlyLastFinishes(steps, FinishReason.Stop);
        Assert.DoesNotContain(stop, Text(steps), StringComparison.Ordinal);
    }

    [SharedTheory]
    [InlineData("stories260K")]
    [InlineData("synth")]
    public void Generate_StopTokenId_EndsAtItsFirstOccurrenceWithStop(string which)
    {
        using var s = new Session(which);
        var p = new SamplingParams { Seed = 8, MaxTokens = 60, IgnoreEos = true };
        int[] free = [.. s.Run(p).Select(st => st.TokenId)];
        int stopId = free[10];
        int first = Array.IndexOf(free, stopId);

        List<GenerationStep> steps = s.Run(p with { StopTokenIds = [stopId] });

        Assert.Equal(first + 1, steps.Count);
        Assert.Equal(free[..(first + 1)], steps.Select(st => st.TokenId));
        AssertOnlyLastFinishes(steps, FinishReason.Stop);
        Assert.Equal(Expected(s, s.Bos, free[..first]), Text(steps));
    }

    [Fact]
    public void Generate_Eos_EndsWithStopUnlessIgnoreEos()
    {
        using var s = new Session("synth");
        int eos = Assert.Single(s.Model.Tokenizer.EosTokenIds);
        var p = new SamplingParams { Temperature = 2f, MaxTokens = 200 };
        // The first seed whose sampled run meets EOS (a random model at temperature 2 does so within a few seeds).
        (ulong seed, List<GenerationStep> steps) = Enumerable.Range(1, 100).Select(i => (ulong)i)
            .Select(seed => (seed, s.Run(p with { Seed = seed })))
            .First(r => r.Item2[^1].Finish == FinishReason.Stop);

        Assert.Equal(eos, steps[^1].TokenId);
        AssertOnlyLastFinishes(steps, FinishReason.Stop);
        List<GenerationStep> ignoring = s.Run(p with { Seed = seed, IgnoreEos = true });
        Assert.Equal(steps.Select(st => st.TokenId), ignoring.Take(steps.Count).Select(st => st.TokenId));
        Assert.Equal(200, ignoring.Count);
        AssertOnlyLastFinishes(ignoring, FinishReason.Length);
    }

    [SharedTheory]
    [InlineData("stories260K", 512)]
    [InlineData("stories260K", 700)]
    [InlineData("synth", 256)]
    public void Generate_PromptAtLeastContext_ThrowsNamingBothNumbers(string which, int promptLength)
    {
        using var s = new Session(which);
        int context = s.Model.Config.ContextLength;
        int[] prompt = [.. Enumerable.Repeat(5, promptLength)];

        ArgumentException e = Assert.Throws<ArgumentException>(() => s.Generator.Generate(prompt, SamplingParams.Greedy));

        Assert.Contains(promptLength.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
        Assert.Contains(context.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_InvalidParams_ThrowsBeforeIterating()
    {
        using var s = new Session("synth");

        Assert.Throws<ArgumentException>(() => s.Generator.Generate(s.Bos, SamplingParams.Default with { TopP = 0 }));
        Assert.Throws<ArgumentException>(() => s.Generator.Generate([], SamplingParams.Greedy));
    }

    [Fact]
    public void Generate_PromptNearContext_EndsWithLengthWhenContextFull()
    {
        using var s = new Session("synth");
        int context = s.Model.Config.ContextLength;
        int[] prompt = [.. Enumerable.Repeat(7, context - 5)];

        List<GenerationStep> steps = s.Run(SamplingParams.Greedy with { MaxTokens = 100, IgnoreEos = true }, prompt);

        Assert.Equal(6, steps.Count);
        AssertOnlyLastFinishes(steps, FinishReason.Length);
    }

    [Fact]
    public void Generate_CancelledMidway_FinalStepCancelled()
    {
        using var s = new Session("synth");
        using var cts = new CancellationTokenSource();
        var steps = new List<GenerationStep>();

        foreach (GenerationStep step in s.Generator.Generate(s.Bos, SamplingParams.Greedy with { MaxTokens = 100, IgnoreEos = true }, cts.Token))
        {
            steps.Add(step);
            if (steps.Count == 3)
            {
                cts.Cancel();
            }
        }

        Assert.Equal(4, steps.Count);
        AssertOnlyLastFinishes(steps, FinishReason.Cancelled);
        Assert.Equal(-1, steps[^1].TokenId);
        Assert.Equal(3, s.Generator.LastStats!.GeneratedTokens);
    }

    [SharedTheory]
    [InlineData("stories260K")]
    [InlineData("synth")]
    public void Generate_SameSeedTwoGenerators_SameTokensAndLogprobs(string which)
    {
        using var a = new Session(which);
        using var b = new Session(which);
        var p = new SamplingParams { Temperature = 1f, TopP = 0.9f, Seed = 77, MaxTokens = 80, IgnoreEos = true, Logprobs = true, TopLogprobs = 3 };

        List<GenerationStep> first = a.Run(p);
        List<GenerationStep> second = b.Run(p);
        List<GenerationStep> other = b.Run(p with { Seed = 78 });

        Assert.Equal(first.Select(st => (st.TokenId, st.Logprob)), second.Select(st => (st.TokenId, st.Logprob)));
        Assert.Equal(Text(first), Text(second));
        Assert.NotEqual(first.Select(st => st.TokenId), other.Select(st => st.TokenId));
        Assert.All(first, st => Assert.Equal(3, st.TopLogprobs!.Count));
        Assert.All(first, st => Assert.True(st.Logprob <= 0 && st.Logprob >= st.TopLogprobs![^1].Logprob - 50));
    }

    [SharedFact]
    public void LastStats_AfterGeneration_CountsPromptAndGenerated()
    {
        using var s = new Session("stories260K");
        IReadOnlyList<int> prompt = s.Model.Tokenizer.Encode("Once upon a time", addSpecialTokens: true);
        Assert.Null(s.Generator.LastStats);

        List<GenerationStep> steps = s.Run(SamplingParams.Greedy with { MaxTokens = 25, IgnoreEos = true }, prompt);

        GenerationStats stats = s.Generator.LastStats!;
        Assert.Equal(prompt.Count, stats.PromptTokens);
        Assert.Equal(25, stats.GeneratedTokens);
        Assert.Equal(steps.Count, stats.GeneratedTokens);
        Assert.True(stats.Prefill > TimeSpan.Zero && stats.Decode > TimeSpan.Zero);
        Assert.True(stats.PrefillTokensPerSecond > 0 && stats.DecodeTokensPerSecond > 0);
    }
}
