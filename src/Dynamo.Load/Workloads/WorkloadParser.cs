namespace Dynamo.Load.Workloads;

/// <summary>The one place that turns a <c>--workload</c> value into a workload.</summary>
internal static class WorkloadParser
{
    public const string Names = "random, random-tokens, shared-prefix, multi-turn or trace:FILE";

    public static IWorkload Parse(string value) => value switch
    {
        RandomWorkload.WorkloadName => new RandomWorkload(),
        RandomTokensWorkload.WorkloadName => new RandomTokensWorkload(),
        SharedPrefixWorkload.WorkloadName => new SharedPrefixWorkload(),
        MultiTurnWorkload.WorkloadName => new MultiTurnWorkload(),
        _ when value.StartsWith("trace:", StringComparison.Ordinal) && value.Length > "trace:".Length => new TraceWorkload(value["trace:".Length..]),
        _ => throw new ArgumentException($"--workload: '{value}' is not {Names}"),
    };
}
