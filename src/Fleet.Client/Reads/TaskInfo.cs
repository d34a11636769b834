namespace Fleet.Client;

/// <summary>A task's state as stored in <c>fleet.tasks</c>.</summary>
public sealed record TaskInfo(
    Guid Id,
    string Type,
    string Queue,
    string Status,
    string Payload,
    string? Result,
    string? ErrorType,
    string? ErrorMessage,
    int Attempts,
    Guid? BatchId,
    DateTimeOffset SubmittedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? FinishedAt,
    string? WorkerId)
{
    /// <summary>0 to 9, higher first (<c>tasks.priority</c>).</summary>
    public int Priority { get; init; }

    /// <summary>The tenant the task belongs to (<c>tasks.tenant</c>); null when none was named.</summary>
    public string? Tenant { get; init; }

    /// <summary>The earliest start of a delayed task, or of a retry waiting out its backoff (<c>tasks.not_before</c>).</summary>
    public DateTimeOffset? NotBefore { get; init; }

    /// <summary>Whether the dispatcher publishes the task (<c>tasks.dispatched</c>): a tenant, a priority above 0, or a limited type.</summary>
    public bool Dispatched { get; init; }

    /// <summary>
    /// Why the task, queued and not yet published, is not running yet, as <c>fleet.v_waiting_tasks</c> says (see
    /// <see cref="WaitingReasons"/>); null for any other task.
    /// </summary>
    public string? WaitingFor { get; init; }

    /// <summary>For a later step of a chain: the step before it (<c>tasks.after_task_id</c>).</summary>
    public Guid? AfterTaskId { get; init; }

    /// <summary>The chain step after this one (<c>tasks.next_task_id</c>).</summary>
    public Guid? NextTaskId { get; init; }

    /// <summary>For a batch's onComplete task: the batch (<c>tasks.after_batch_id</c>).</summary>
    public Guid? AfterBatchId { get; init; }

    /// <summary>The final task this one runs again (<c>tasks.requeued_from</c>).</summary>
    public Guid? RequeuedFrom { get; init; }

    /// <summary>The latest progress its handler reported, 0 to 1 (<c>tasks.progress</c>).</summary>
    public double? Progress { get; init; }

    /// <summary>The note of the latest progress report (<c>tasks.progress_note</c>).</summary>
    public string? ProgressNote { get; init; }

    public bool IsFinal => Status is "succeeded" or "failed" or "timed_out" or "cancelled";
}

/// <summary>Counts of a batch's tasks by state.</summary>
public sealed record BatchProgress(Guid BatchId, long Total, long Queued, long Running, long Succeeded, long Failed, long TimedOut, long Cancelled)
{
    public long Final => Succeeded + Failed + TimedOut + Cancelled;

    public bool IsDone => Total > 0 && Final == Total;
}

/// <summary>The reasons of <c>fleet.v_waiting_tasks.waiting_for</c> (and of <c>waitingFor</c> in the HTTP API).</summary>
public static class WaitingReasons
{
    /// <summary>A later step of a chain waits for the step before it to succeed.</summary>
    public const string PreviousStep = "previous-step";

    /// <summary>A failed attempt waits out its backoff.</summary>
    public const string Retry = "retry";

    /// <summary>A delayed task waits for its <c>notBefore</c>.</summary>
    public const string Delay = "delay";

    /// <summary>Its time has come; the outbox relay publishes it.</summary>
    public const string Publish = "publish";

    /// <summary>The rate limit of its type or tenant holds it back.</summary>
    public const string RateLimit = "rate-limit";

    /// <summary>The running cap of its type or tenant holds it back.</summary>
    public const string ConcurrencyLimit = "concurrency-limit";

    /// <summary>Other tenants' turns come first (round robin across tenants).</summary>
    public const string TenantShare = "tenant-share";

    /// <summary>Tasks of higher priority come first.</summary>
    public const string Priority = "priority";

    /// <summary>Every reason, in the order the view tests them.</summary>
    public static IReadOnlyList<string> All { get; } = [PreviousStep, Retry, Delay, Publish, RateLimit, ConcurrencyLimit, TenantShare, Priority];
}
