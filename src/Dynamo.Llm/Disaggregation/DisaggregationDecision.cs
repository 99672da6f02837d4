namespace Dynamo.Llm.Disaggregation;

/// <summary>Where one request's prefill runs, and why (the reason is a metric label, see <see cref="PrefillReasons"/>).</summary>
public readonly record struct DisaggregationDecision(bool Remote, string Reason);
