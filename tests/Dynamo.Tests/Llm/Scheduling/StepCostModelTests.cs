using Dynamo.Llm.Scheduling;

namespace Dynamo.Tests.Llm.Scheduling;

/// <summary><see cref="StepCostModel"/>: the online estimate of a step's cost the step-time budget plans with.</summary>
public class StepCostModelTests
{
    private static readonly StepCost Truth = new(5, 1.2, 2.5);

    /// <summary>Steps of varied shapes: prefill alone, decodes alone, both.</summary>
    private static IEnumerable<(int Prefill, int Decode)> Shapes(int count, int seed)
    {
        var random = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            int prefill = random.Next(3) == 0 ? 0 : random.Next(1, 200);
            yield return (prefill, prefill > 0 && random.Next(2) == 0 ? 0 : random.Next(1, 40));
        }
    }

    private static void AssertNear(StepCost expected, StepCost actual, double relative)
    {
        Assert.Equal(expected.StepMs, actual.StepMs, expected.StepMs * relative);
        Assert.Equal(expected.PrefillMsPerToken, actual.PrefillMsPerToken, expected.PrefillMsPerToken * relative);
        Assert.Equal(expected.DecodeMsPerSequence, actual.DecodeMsPerSequence, expected.DecodeMsPerSequence * relative);
    }

    [Fact]
    public void Observe_LinearCosts_LearnsTheCoefficients()
    {
        var model = new StepCostModel();
        Assert.False(model.IsReady);
        foreach ((int p, int d) in Shapes(200, 1))
        {
            model.Observe(p, d, Truth.Predict(p, d));
        }

        Assert.True(model.IsReady);
        Assert.Equal(200, model.Observations);
        AssertNear(Truth, model.Current, 0.01);
        Assert.Equal(5 + 1.2 * 100 + 2.5 * 10, model.Predict(100, 10), 1.5);
    }

    [Fact]
    public void Observe_FirstStepPrefillAlone_DecodeCostTakenFromThePrefillCost()
    {
        var model = new StepCostModel();
        model.Observe(512, 0, 700);

        StepCost c = model.Current;
        Assert.Equal(700, model.Predict(512, 0), 0.01);
        Assert.InRange(c.PrefillMsPerToken, 1.2, 1.4);
        Assert.InRange(c.DecodeMsPerSequence, 0.8 * c.PrefillMsPerToken, 1.2 * c.PrefillMsPerToken);
    }

    [Fact]
    public void Observe_OneStall_MovesThePredictionLittle()
    {
        var model = new StepCostModel();
        foreach ((int p, int d) in Shapes(100, 2))
        {
            model.Observe(p, d, Truth.Predict(p, d));
        }

        double before = model.Predict(16, 20);
        model.Observe(16, 20, 10 * Truth.Predict(16, 20));

        Assert.InRange(model.Predict(16, 20), before, 1.5 * before);
    }

    [Fact]
    public void Observe_MachineTwiceAsSlow_FollowsTheNewCost()
    {
        var model = new StepCostModel(Truth);
        var slow = new StepCost(2 * Truth.StepMs, 2 * Truth.PrefillMsPerToken, 2 * Truth.DecodeMsPerSequence);
        foreach ((int p, int d) in Shapes(300, 3))
        {
            model.Observe(p, d, slow.Predict(p, d));
        }

        AssertNear(slow, model.Current, 0.05);
    }

    [Fact]
    public void Observe_OneShapeForLong_ThenAnotherShape_NoJump()
    {
        var model = new StepCostModel();
        foreach ((int p, int d) in Shapes(50, 4))
        {
            model.Observe(p, d, Truth.Predict(p, d));
        }

        // Hundreds of steps of one shape bring no news about the split; the uncertainty stays capped.
        for (int i = 0; i < 1000; i++)
        {
            model.Observe(16, 30, Truth.Predict(16, 30));
        }

        AssertNear(Truth, model.Current, 0.05);
    }

    [Fact]
    public void EfficientBatch_NineTenthsOfTheDecodeThroughput()
    {
        Assert.Equal(30, new StepCostModel(new StepCost(5, 1, 1.5)).EfficientBatch);
        Assert.Equal(1, new StepCostModel(new StepCost(0.1, 1, 10)).EfficientBatch);
        Assert.Equal(int.MaxValue, new StepCostModel(new StepCost(5, 1, 0)).EfficientBatch);
    }

    [Fact]
    public void PrefillTokensWithin_Budget_TheTokensThatFitBesideTheDecodes()
    {
        var model = new StepCostModel(new StepCost(5, 1, 1.5));

        Assert.Equal(30, model.PrefillTokensWithin(50, 10));
        Assert.Equal(0, model.PrefillTokensWithin(50, 30));
        Assert.Equal(int.MaxValue, new StepCostModel(new StepCost(5, 0, 1)).PrefillTokensWithin(50, 10));
    }

    [Fact]
    public void Observe_NonsenseTimes_Ignored()
    {
        var model = new StepCostModel(Truth);
        model.Observe(10, 1, double.NaN);
        model.Observe(10, 1, -1);
        model.Observe(0, 0, 5);

        Assert.Equal(0, model.Observations);
        Assert.Equal(Truth, model.Current);
    }
}
