using Fleet.Contracts;

namespace Fleet.Client;

/// <summary>One task message and the queue (lane) it goes to.</summary>
public readonly record struct OutgoingTask(string Queue, ProcessTask Message)
{
    /// <summary>The schedule whose firing this task is (stored in <c>tasks.schedule_name</c>, not sent).</summary>
    public string? ScheduleName { get; init; }

    /// <summary>The fire time of <see cref="ScheduleName"/> (stored in <c>tasks.scheduled_for</c>, not sent).</summary>
    public DateTimeOffset? ScheduledFor { get; init; }

    /// <summary>
    /// Whether the dispatcher publishes the task (stored in <c>tasks.dispatched</c>, not sent): then the submission
    /// stores it and publishes nothing, and <see cref="Queue"/> stays its lane.
    /// </summary>
    public bool Dispatched { get; init; }

    /// <summary>
    /// The executions the task had when this message was built (0 for a new submission; a relayed retry's count), not
    /// sent. The <c>published_at</c> stamp after the confirm marks only a row still at this count: a task that ran and
    /// failed into a retry meanwhile waits for the due relay, and a stale stamp would hide it from that relay.
    /// </summary>
    public int Attempts { get; init; }

    /// <summary>The chain step that runs after this task (stored in <c>tasks.next_task_id</c>, not sent).</summary>
    public Guid? NextTaskId { get; init; }

    /// <summary>The key that keeps this task unique while it is active (stored in <c>tasks.unique_key</c>, not sent).</summary>
    public string? UniqueKey { get; init; }

    /// <summary>The final task this one was requeued from (stored in <c>tasks.requeued_from</c>, not sent).</summary>
    public Guid? RequeuedFrom { get; init; }
}

/// <summary>
/// Sends task messages to their queues. <see cref="PublishAsync"/> completes only when the broker has confirmed
/// every message (publisher confirms); it throws when any of them was not confirmed. <see cref="TaskSubmitter"/>
/// stamps <c>published_at</c> only after it returns, which is what makes the outbox relay's work well defined.
/// </summary>
public interface ITaskPublisher
{
    Task PublishAsync(IReadOnlyList<OutgoingTask> tasks, CancellationToken cancellationToken);
}
