namespace Fleet.Worker.ProcessLane;

/// <summary>
/// A process-lane task that ended other than by its handler's own return: its child failed, died, was killed, or never
/// started. <see cref="ErrorType"/> is what <c>error_type</c> records; <see cref="Retryable"/> whether another attempt may
/// cure it.
/// </summary>
public class ProcessLaneException : Exception
{
    public ProcessLaneException(string errorType, string message, bool retryable)
        : base(message)
    {
        ErrorType = errorType;
        Retryable = retryable;
    }

    public ProcessLaneException()
        : this(ProcessLaneErrorTypes.ChildDied, "The process-lane child failed.", retryable: true)
    {
    }

    public ProcessLaneException(string message)
        : this(ProcessLaneErrorTypes.ChildDied, message, retryable: true)
    {
    }

    public ProcessLaneException(string message, Exception innerException)
        : base(message, innerException)
    {
        ErrorType = ProcessLaneErrorTypes.ChildDied;
        Retryable = true;
    }

    public string ErrorType { get; } = ProcessLaneErrorTypes.ChildDied;

    public bool Retryable { get; }

    /// <summary>Whether the child was killed because the task's time limit or a cancel fired (the task ends timed out or cancelled).</summary>
    public bool KilledAtLimit { get; init; }
}

/// <summary>The <c>error_type</c> values of process-lane endings that are not a handler's own exception.</summary>
public static class ProcessLaneErrorTypes
{
    /// <summary>The child died while it ran the task (a crash, <c>Environment.FailFast</c>, the kernel's OOM killer): retried.</summary>
    public const string ChildDied = "ProcessLaneChildDied";

    /// <summary>The child grew past <c>Worker:ProcessMaxRssMb</c> while it ran the task and was killed: final.</summary>
    public const string MemoryLimit = "ProcessLaneMemoryLimit";

    /// <summary>No child could be started (or it did not say it was ready in time): retried.</summary>
    public const string StartFailed = "ProcessLaneStartFailed";
}
