namespace Fleet.Persistence.Entities;

/// <summary>One row of <c>fleet.tasks</c>: a task and, once final, its single result.</summary>
public sealed class FleetTask
{
    public Guid Id { get; set; }

    public required string Type { get; set; }

    /// <summary>The queue it was sent to (<c>fleet-cpu</c> or <c>fleet-io</c>).</summary>
    public required string Queue { get; set; }

    /// <summary>One of <see cref="TaskState"/>.</summary>
    public required string Status { get; set; }

    /// <summary>The input, as JSON text (<c>jsonb</c>).</summary>
    public required string Payload { get; set; }

    /// <summary>The output, as JSON text (<c>jsonb</c>), once succeeded.</summary>
    public string? Result { get; set; }

    public string? ErrorType { get; set; }

    public string? ErrorMessage { get; set; }

    /// <summary>Executions started so far (each has a <c>fleet.task_attempts</c> row).</summary>
    public int Attempts { get; set; }

    public int MaxAttempts { get; set; } = 3;

    public int? TimeoutSeconds { get; set; }

    public int Priority { get; set; }

    public Guid? BatchId { get; set; }

    public DateTimeOffset SubmittedAt { get; set; }

    /// <summary>
    /// When the broker confirmed the publish; null while a submission awaits its publish (outbox), and while a delayed
    /// task or a retry waits for the due relay (a retry's commit sets it back to null).
    /// </summary>
    public DateTimeOffset? PublishedAt { get; set; }

    public DateTimeOffset? StartedAt { get; set; }

    public DateTimeOffset? FinishedAt { get; set; }

    /// <summary>The worker that ran the latest attempt.</summary>
    public string? WorkerId { get; set; }

    /// <summary>
    /// The earliest time a queued task may start: set by a delayed task's submission, and when a failed attempt is
    /// retried (its end + the backoff). Either way <see cref="PublishedAt"/> is null until the due relay publishes
    /// the task at this time, and the reconciler counts the task from it, never taking one that still waits.
    /// </summary>
    public DateTimeOffset? NotBefore { get; set; }

    /// <summary>The tenant the task belongs to, as submitted; null when none was named.</summary>
    public string? Tenant { get; set; }

    /// <summary>
    /// Whether the dispatcher decides when the task is published (schema version 9): set at submit for a task with a
    /// tenant, a priority above 0, or a type under a limit (<c>fleet.limits</c>). Such a task waits in PostgreSQL,
    /// <c>queued</c> with <see cref="PublishedAt"/> null, until the dispatcher publishes it to its lane's
    /// <c>.dispatch</c> queue, in priority order, round robin across tenants, within the limits. False for every
    /// other task, which is published at once as before.
    /// </summary>
    public bool Dispatched { get; set; }

    /// <summary>The schedule whose firing created the task; null for a task submitted directly.</summary>
    public string? ScheduleName { get; set; }

    /// <summary>The fire time the schedule created the task for; unique per schedule (<c>ux_tasks_schedule_fire</c>).</summary>
    public DateTimeOffset? ScheduledFor { get; set; }

    /// <summary>
    /// The chain step this task runs after (schema version 10): it waits, <c>queued</c> and unpublished with
    /// <see cref="NotBefore"/> at infinity, until that task succeeds; if that task ends any other way, this one ends
    /// <c>cancelled</c> (<c>ChainStopped</c>). Null for a task that is not a later step of a chain.
    /// </summary>
    public Guid? AfterTaskId { get; set; }

    /// <summary>The chain step that runs after this task (schema version 10); the trigger <c>fleet.chain_step_ended</c> releases or cancels it.</summary>
    public Guid? NextTaskId { get; set; }

    /// <summary>The batch whose end created this task, when it is that batch's <c>onComplete</c> callback (schema version 10).</summary>
    public Guid? AfterBatchId { get; set; }

    /// <summary>The final task this one was requeued from (schema version 10); a requeue is a new task, the old one never changes.</summary>
    public Guid? RequeuedFrom { get; set; }

    /// <summary>
    /// The key that makes the task unique while it is active (schema version 10): while a task with the key is
    /// <c>queued</c> or <c>running</c>, a submission with the same key gets that task's id instead of a new task
    /// (<c>ux_tasks_unique_active</c>).
    /// </summary>
    public string? UniqueKey { get; set; }

    /// <summary>The latest progress its handler reported, 0 to 1 (schema version 10); null when it reported none.</summary>
    public double? Progress { get; set; }

    /// <summary>The short note that came with <see cref="Progress"/>.</summary>
    public string? ProgressNote { get; set; }

    /// <summary>When the worker wrote <see cref="Progress"/> (the worker's clock).</summary>
    public DateTimeOffset? ProgressAt { get; set; }

    /// <summary>
    /// When a cancel of the running task was asked for. Recorded so that the request outlives the broadcast: a
    /// redelivered message of such a task is not run again, and the reconciler ends it <c>cancelled</c> when no
    /// live worker holds it.
    /// </summary>
    public DateTimeOffset? CancelRequestedAt { get; set; }
}
