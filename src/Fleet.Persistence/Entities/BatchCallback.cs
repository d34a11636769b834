namespace Fleet.Persistence.Entities;

/// <summary>
/// The <c>onComplete</c> task of a batch (<c>fleet.batch_callbacks</c>, schema version 10): created exactly once,
/// when every task of the batch is final, by the batch watcher of whichever process leads. Nothing on a task's own
/// path writes here, so a batch with a callback costs its tasks no extra update.
/// </summary>
public sealed class BatchCallback
{
    public Guid BatchId { get; set; }

    /// <summary>The task request (jsonb) as <c>POST /tasks</c> accepts it.</summary>
    public required string Task { get; set; }

    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>The callback task's id, reserved at submit; the task row exists once <see cref="FiredAt"/> is set.</summary>
    public Guid TaskId { get; set; }

    /// <summary>When the watcher found every task of the batch final and created the callback task; null until then.</summary>
    public DateTimeOffset? FiredAt { get; set; }

    /// <summary>
    /// The watcher's place in the batch, in <c>ix_tasks_batch</c> order (<c>submitted_at</c>, <c>id</c>): every task
    /// before it was final when last looked at, so the next look starts here and a batch is read about once overall.
    /// </summary>
    public DateTimeOffset? CheckedSubmittedAt { get; set; }

    /// <summary>With <see cref="CheckedSubmittedAt"/>, the id of the first task found still open.</summary>
    public Guid? CheckedTaskId { get; set; }
}
