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
}
