namespace Dynamo.Llm.Scheduling;

/// <summary>
/// A linear model of one step's time: <c>StepMs + PrefillMsPerToken x P + DecodeMsPerSequence x D</c> milliseconds for a
/// step of <c>P</c> prefill tokens (chunks of more than one token, or a prompt's last token) and <c>D</c> decoding
/// sequences (one token each). The shape of the mocker's cost model, and what <see cref="StepCostModel"/> learns.
/// </summary>
/// <param name="StepMs">Fixed cost of a step (one pass over the weights).</param>
/// <param name="PrefillMsPerToken">Cost of each prefill token.</param>
/// <param name="DecodeMsPerSequence">Cost of each decoding sequence.</param>
public readonly record struct StepCost(double StepMs, double PrefillMsPerToken, double DecodeMsPerSequence)
{
    /// <summary>The predicted time of a step, in milliseconds.</summary>
    public double Predict(int prefillTokens, int decodeTokens) => StepMs + PrefillMsPerToken * prefillTokens + DecodeMsPerSequence * decodeTokens;
}
