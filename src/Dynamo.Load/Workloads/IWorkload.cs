namespace Dynamo.Load.Workloads;

/// <summary>A named way of making the requests of a run (chosen by name in <see cref="WorkloadParser.Parse"/>).</summary>
internal interface IWorkload
{
    /// <summary>The name as given to <c>--workload</c>.</summary>
    string Name { get; }

    /// <summary>The conversations of a run, <see cref="LoadOptions.NumPrompts"/> turns in all (fewer only if a trace is shorter).</summary>
    IReadOnlyList<LoadConversation> Build(LoadOptions options);
}
