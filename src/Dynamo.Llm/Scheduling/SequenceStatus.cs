namespace Dynamo.Llm.Scheduling;

public enum SequenceStatus
{
    /// <summary>Queued (new, or preempted and waiting to be recomputed).</summary>
    Waiting = 1,

    /// <summary>In the running batch: prefilling in chunks or decoding.</summary>
    Running = 2,

    /// <summary>Ended (finished or cancelled); its blocks are released.</summary>
    Finished = 3,

    /// <summary>
    /// Holds blocks reserved for its first tokens, whose keys and values the engine's caller will write (a deferred
    /// KV import), and is not queued: never scheduled until <see cref="Scheduler.EnqueueComputed"/> or
    /// <see cref="Scheduler.ReleaseReservation"/>.
    /// </summary>
    Reserved = 4,
}
