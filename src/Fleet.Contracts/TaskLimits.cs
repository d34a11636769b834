namespace Fleet.Contracts;

/// <summary>The limits every part of the fleet agrees on: what a producer may ask, and what a worker honours.</summary>
public static class TaskLimits
{
    /// <summary>
    /// The longest time limit a task may ask for (<see cref="ProcessTask.TimeoutSeconds"/>), in seconds. A held
    /// message must be acknowledged within RabbitMQ's <c>consumer_timeout</c> (30 minutes by default), and the claim,
    /// the hard stop, the commit and a wait for a CPU-lane thread come on top of the run. A worker may cap lower
    /// (<c>Worker:MaxTimeoutSeconds</c>) and then says so in the task's timeout error.
    /// </summary>
    public const int MaxTimeoutSeconds = 1_500;

    /// <summary>
    /// The furthest ahead a delayed task may be asked to start, in seconds (366 days): <c>delaySeconds</c> at most
    /// this, <c>notBefore</c> at most this far from the submit. The HTTP API refuses more; a worker cuts a longer
    /// <c>delaySeconds</c> of a plain JSON message to it.
    /// </summary>
    public const int MaxDelaySeconds = 366 * 24 * 60 * 60;

    /// <summary>The lowest <see cref="ProcessTask.Priority"/>: the default, and a task published at once.</summary>
    public const int MinPriority = 0;

    /// <summary>
    /// The highest <see cref="ProcessTask.Priority"/>. A task above 0 goes through the dispatcher, which publishes the
    /// highest first (a waiting task gains one level per <c>Dispatch:AgingSeconds</c>, so none waits for ever).
    /// </summary>
    public const int MaxPriority = 9;

    /// <summary>The most steps a chain's first task may list in <c>then</c>.</summary>
    public const int MaxChainSteps = 100;

    /// <summary>The longest <c>uniqueKey</c>, in characters (<c>tasks.unique_key</c> is <c>varchar(200)</c>).</summary>
    public const int MaxUniqueKeyLength = 200;
}
