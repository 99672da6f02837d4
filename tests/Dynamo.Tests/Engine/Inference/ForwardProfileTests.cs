using Dynamo.Engine.Inference;
using Dynamo.Engine.Models;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Engine.Inference;

/// <summary><see cref="ForwardProfile"/>: attaching it changes no logit, and it charges the phases a forward pass runs.</summary>
public sealed class ForwardProfileTests
{
    [Fact]
    public void Profile_Attached_SameLogitsAndEveryComputedPhaseCharged()
    {
        using var model = new Transformer(ModelLoader.Load(TestModels.Tiny.Value), maxBatch: 32);
        int vocab = model.Config.VocabSize;
        int[] prompt = [.. Enumerable.Range(0, 24).Select(i => (i * 31 + 5) % vocab)];
        float[] Run(ForwardProfile? profile)
        {
            model.Profile = profile;
            var cache = new SequenceKvCache(model.Config, prompt.Length + 1);
            var logits = new float[vocab];
            model.Forward(prompt, 0, cache, logits);
            model.Forward([1], prompt.Length, cache, logits);
            model.Profile = null;
            return logits;
        }

        float[] plain = Run(null);
        var profile = new ForwardProfile();
        float[] profiled = Run(profile);

        Assert.Equal(plain, profiled);
        IReadOnlyList<TimeSpan> times = profile.Times;
        Assert.Equal(ForwardProfile.Phases.Count, times.Count);
        foreach (string phase in new[] { "q/k/v projections", "attention", "output projection", "ffn gate/up", "ffn down", "logits" })
        {
            Assert.True(times[ForwardProfile.Phases.ToList().IndexOf(phase)] > TimeSpan.Zero, phase);
        }

        profile.Reset();
        Assert.All(profile.Times, t => Assert.Equal(TimeSpan.Zero, t));
    }
}
