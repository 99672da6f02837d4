namespace Dynamo.Load.Workloads;

/// <summary>The one place that turns a <c>--workload</c> value into a workload.</summary>
internal static class WorkloadParser
{
    public const string Names = "random, random-tokens, shared-prefix, multi-turn, trace:FILE or trace-tokens:FILE";

    public static IWorkload Parse(string value) => value switch
    {
        RandomWorkload.WorkloadName => new RandomWorkload(),
        RandomTokensWorkload.WorkloadName => new RandomTokensWorkload(),
        SharedPrefixWorkload.WorkloadName => new SharedPrefixWorkload(),
        MultiTurnWorkload.WorkloadName => new MultiTurnWorkload(),
        _ when value.StartsWith(TraceWorkload.WorkloadPrefix, StringComparison.Ordinal) && value.Length > TraceWorkload.WorkloadPrefix.Length => new TraceWorkload(value[TraceWorkload.WorkloadPrefix.Length..]),
        _ when value.StartsWith(TraceWorkload.TokenWorkloadPrefix, StringComparison.Ordinal) && value.Length > TraceWorkload.TokenWorkloadPrefix.Length => new TraceWorkload(value[TraceWorkload.TokenWorkloadPrefix.Length..], tokenIds: true),
        _ => throw new ArgumentException($"--workload: '{value}' is not {Names}"),
    };
}
