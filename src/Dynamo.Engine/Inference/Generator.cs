using System.Diagnostics;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Sampling;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Tokenizers;

namespace Dynamo.Engine.Inference;

/// <summary>
/// Generates one sequence at a time: prefill of the whole prompt in one pass, then one token per step,
/// with sampling, stop tokens, stop strings and streaming-safe text.
/// </summary>
public sealed class Generator(Transformer model, ITokenizer tokenizer)
{
    /// <summary>The element type of each generation's KV cache (<c>generate --kv-cache-dtype</c>); F16 as the serving engine.</summary>
    public KvCacheDtype KvCacheDtype { get; init; } = KvCacheDtype.F16;

    /// <summary>Counts and times of the last finished generation.</summary>
    public GenerationStats? LastStats { get; private set; }

    public IEnumerable<GenerationStep> Generate(IReadOnlyList<int> prompt, SamplingParams parameters, CancellationToken cancellationToken = default)
    {
        parameters.Validate();
        int context = model.Config.ContextLength;
        if (prompt.Count == 0)
        {
            throw new ArgumentException("the prompt has no tokens (an empty prompt starts from BOS, but this model has none)");
        }

        if (prompt.Count >= context)
        {
            throw new ArgumentException($"the prompt has {prompt.Count} tokens, but the model's context length is {context} (at least one token must be left to generate)");
        }

        return Run(prompt, parameters, cancellationToken);
    }

    private IEnumerable<GenerationStep> Run(IReadOnlyList<int> prompt, SamplingParams p, CancellationToken cancellationToken)
    {
        int context = model.Config.ContextLength;
        int capacity = (int)Math.Min(context, (long)prompt.Count + p.MaxTokens);
        var cache = new SequenceKvCache(model.Config, capacity, KvCacheDtype);
        var logits = new float[model.Config.VocabSize];
        var sampler = new Sampler(p, prompt);
        var detokenizer = new IncrementalDetokenizer(tokenizer, skipSpecialTokens: true, prompt);
        var stops = new StopStringMatcher(p.Stop);
        var ends = new HashSet<int>(p.StopTokenIds);
        if (!p.IgnoreEos)
        {
            ends.UnionWith(tokenizer.EosTokenIds);
        }

        var clock = Stopwatch.StartNew();
        int[] promptIds = [.. prompt];
        model.Forward(promptIds, 0, cache, logits);
        TimeSpan prefill = clock.Elapsed;
        int generated = 0;
        int position = prompt.Count;
        try
        {
            while (true)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    yield return new GenerationStep(-1, Finish(detokenizer, stops), 0, null, FinishReason.Cancelled);
                    yield break;
                }

                List<TokenLogprob>? top = p.Logprobs && p.TopLogprobs > 0 ? new List<TokenLogprob>(p.TopLogprobs + 1) : null;
                int token = sampler.Sample(logits, top, out float logprob);
                generated++;
                if (ends.Contains(token))
                {
                    yield return new GenerationStep(token, Finish(detokenizer, stops), logprob, top, FinishReason.Stop);
                    yield break;
                }

                string text = stops.Push(detokenizer.Push(token));
                if (stops.Stopped)
                {
                    yield return new GenerationStep(token, text, logprob, top, FinishReason.Stop);
                    yield break;
                }

                if (generated >= p.MaxTokens)
                {
                    yield return new GenerationStep(token, text + Finish(detokenizer, stops), logprob, top, FinishReason.Length);
                    yield break;
                }

                if (position >= capacity)
                {
                    yield return new GenerationStep(token, text + Finish(detokenizer, stops), logprob, top, FinishReason.Length);
                    yield break;
                }

                yield return new GenerationStep(token, text, logprob, top, null);
                model.Forward([token], position, cache, logits);
                position++;
            }
        }
        finally
        {
            LastStats = new GenerationStats(prompt.Count, generated, prefill, clock.Elapsed - prefill);
        }
    }

    private static string Finish(IncrementalDetokenizer detokenizer, StopStringMatcher stops)
    {
        string text = stops.Push(detokenizer.Flush());
        return stops.Stopped ? text : text + stops.Flush();
    }
}
