namespace Dynamo.Llm.Scheduling;

public enum SequenceStatus
{
    /// <summary>Queued (new, or preempted and waiting to be recomputed).</summary>
    Waiting = 1,

    /// <summary>In the running batch: prefilling in chunks or decoding.</summary>
    Running = 2,

    /// <summary>Ended (finished or cancelled); its blocks are released.</summary>
    Finished = 3,
}
