namespace Fleet.Client;

/// <summary>One requeued task: the new task's <see cref="Id"/> and the final task it runs again.</summary>
public readonly record struct RequeuedTask(Guid Id, Guid RequeuedFrom);

/// <summary>
/// What a requeue created, in the order the old tasks were taken (earliest finished first); <see cref="Replayed"/>
/// when an earlier request under the same idempotency key created them. <see cref="PublishError"/> as in
/// <see cref="SubmitResult"/>: the tasks are stored, and the relay publishes them.
/// </summary>
public sealed record RequeueResult(IReadOnlyList<RequeuedTask> Tasks, bool Replayed, Exception? PublishError = null);

/// <summary>What a requeue of one task found.</summary>
public enum RequeueOutcome
{
    /// <summary>A new task runs the old one again.</summary>
    Requeued,

    NotFound,

    /// <summary>The task is still queued or running; nothing was created.</summary>
    NotFinal,
}

/// <summary>The outcome of requeueing one task; <see cref="Result"/> holds the new task when it is <see cref="RequeueOutcome.Requeued"/>.</summary>
public sealed record RequeueOneResult(RequeueOutcome Outcome, RequeueResult? Result = null, string? Status = null);
