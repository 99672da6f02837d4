namespace Dynamo.Load.Benchmarks;

/// <summary>One sample of a Prometheus text exposition: the metric's name, its labels and its value.</summary>
internal sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    /// <summary>The value of label <paramref name="name"/>, or "" when the sample has none.</summary>
    public string Label(string name) => Labels.GetValueOrDefault(name) ?? "";
}
