using Dynamo.Engine.Inference;
using Dynamo.Engine.Models;
using Dynamo.Llm.Scheduling;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Engine.Inference;

/// <summary><see cref="Transformer.WarmUp"/>: runs, and leaves nothing behind that changes a later forward pass.</summary>
public sealed class TransformerWarmUpTests
{
    [Fact]
    public void WarmUp_ThenForward_SameLogitsAsAColdTransformer()
    {
        using var warm = new Transformer(ModelLoader.Load(TestModels.Tiny.Value), maxBatch: 32);
        using var cold = new Transformer(ModelLoader.Load(TestModels.Tiny.Value), maxBatch: 32);
        int vocab = warm.Config.VocabSize;
        int[] prompt = [.. Enumerable.Range(0, 20).Select(i => (i * 13 + 2) % vocab)];
        float[] Logits(Transformer t)
        {
            var cache = new SequenceKvCache(t.Config, prompt.Length);
            var logits = new float[vocab];
            t.Forward(prompt, 0, cache, logits);
            return logits;
        }

        TimeSpan took = warm.WarmUp(TimeSpan.FromMilliseconds(50));

        Assert.True(took > TimeSpan.Zero);
        Assert.Equal(Logits(cold), Logits(warm));
    }

    [Fact]
    public void MeasureStepCost_AfterWarmUp_FiniteCosts()
    {
        using var warm = new Transformer(ModelLoader.Load(TestModels.Tiny.Value), maxBatch: 32);
        warm.WarmUp(TimeSpan.FromMilliseconds(10));

        StepCost cost = warm.MeasureStepCost();

        Assert.True(double.IsFinite(cost.StepMs) && cost.StepMs > 0);
        Assert.True(double.IsFinite(cost.PrefillMsPerToken) && cost.PrefillMsPerToken >= 0);
        Assert.Equal(cost.PrefillMsPerToken, cost.DecodeMsPerSequence);
    }
}
