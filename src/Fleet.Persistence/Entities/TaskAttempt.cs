namespace Fleet.Persistence.Entities;

/// <summary>One execution of a task (<c>fleet.task_attempts</c>). Duplicate executions after crashes stay visible here.</summary>
public sealed class TaskAttempt
{
    public Guid TaskId { get; set; }

    /// <summary>1 for the first execution; taken from <c>fleet.tasks.attempts</c> when the execution starts.</summary>
    public int Attempt { get; set; }

    public required string WorkerId { get; set; }

    public DateTimeOffset StartedAt { get; set; }

    public DateTimeOffset? FinishedAt { get; set; }

    /// <summary><c>running</c> while executing, then the final state this execution reached.</summary>
    public required string Outcome { get; set; }

    public string? ErrorType { get; set; }

    public string? ErrorMessage { get; set; }

    public double? WallMs { get; set; }

    public double? CpuMs { get; set; }

    /// <summary>From submit to the start of this execution.</summary>
    public double? QueueWaitMs { get; set; }
}
