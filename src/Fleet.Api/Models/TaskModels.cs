using System.ComponentModel;
using System.Text.Json;

namespace Fleet.Api.Models;

/// <summary>The body of <c>POST /tasks</c> and each item of a batch. Only <c>type</c> is required.</summary>
public sealed record SubmitTaskBody
{
    [Description("Task type, e.g. sha256. Must be a built-in type or one listed in Api:KnownTypes.")]
    public required string Type { get; init; }

    [Description("The handler's input, a JSON object; {} when absent.")]
    public JsonElement? Payload { get; init; }

    [Description("0 (the default) to 9, higher first: a task above 0 is published by the dispatcher, ahead of lower priorities waiting in its lane; a waiting task gains one level per Dispatch:AgingSeconds.")]
    public int? Priority { get; init; }

    [Description("Time limit of one execution in seconds (1-1500, the largest any worker runs); absent means the worker's default.")]
    public int? TimeoutSeconds { get; init; }

    [Description("Stored with the task (1-100, default 3).")]
    public int? MaxAttempts { get; init; }

    [Description("fleet-cpu, fleet-io, or a worker group's queue declared in Api:Queues (docs/worker-groups.md); absent means by type (CPU types to fleet-cpu).")]
    public string? Queue { get; init; }

    [Description("Earliest start, RFC 3339 with an offset or Z (stored in UTC), at most 366 days ahead; a past time starts at once. Not with delaySeconds.")]
    public DateTimeOffset? NotBefore { get; init; }

    [Description("Earliest start as seconds after the submit (0 to 31622400, i.e. 366 days; fractions allowed). Not with notBefore.")]
    public double? DelaySeconds { get; init; }

    [Description("The tenant the task belongs to: a non-empty string of at most 200 characters without control characters, stored in tasks.tenant. A task with a tenant is published by the dispatcher, round robin across tenants and within the tenant's limit.")]
    public string? Tenant { get; init; }

    [Description("A chain: 1 to 100 task requests run one after another after this task, each only once the one before it succeeded (its handler gets that task's id, TaskContext.AfterTaskId). A step that ends otherwise ends the rest cancelled (ChainStopped). Steps have no then, notBefore, delaySeconds or uniqueKey.")]
    public IReadOnlyList<SubmitTaskBody>? Then { get; init; }

    [Description("1 to 200 characters. While a task with this key is queued or running, a submission with it creates nothing and answers 200 with that task's id (existing: true).")]
    public string? UniqueKey { get; init; }
}

/// <summary>The body of <c>POST /tasks/batch</c>.</summary>
public sealed record SubmitBatchBody
{
    [Description("1 to Api:MaxBatchTasks (10,000) tasks, all stored in one transaction under one new batch id.")]
    public required IReadOnlyList<SubmitTaskBody> Tasks { get; init; }

    [Description("A task created once, when every task of the batch is final, whatever the outcomes; its handler gets the batch id (TaskContext.AfterBatchId, tasks.after_batch_id). No then, notBefore, delaySeconds or uniqueKey.")]
    public SubmitTaskBody? OnComplete { get; init; }
}

/// <summary>202 of <c>POST /tasks</c> (200 when its uniqueKey matched an active task).</summary>
public sealed record TaskAccepted(Guid Id, string StatusUrl)
{
    [Description("The ids of the then steps, in order; absent without steps.")]
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<Guid>? Then { get; init; }

    [Description("True when the uniqueKey matched a queued or running task: id is that task's and nothing was created.")]
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public bool Existing { get; init; }
}

/// <summary>202 of <c>POST /tasks/batch</c>: the ids in request order.</summary>
public sealed record BatchAccepted(Guid BatchId, int Count, IReadOnlyList<Guid> Ids, string StatusUrl)
{
    [Description("Per task, in request order, the ids of its then steps (empty without); absent when no task has steps.")]
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<IReadOnlyList<Guid>>? Then { get; init; }

    [Description("The positions whose uniqueKey matched an active task (their id is that task's); absent when none did.")]
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? Existing { get; init; }
}

/// <summary>One task in a listing (<c>GET /tasks</c>).</summary>
public sealed record TaskSummary(
    Guid Id,
    string Type,
    string Queue,
    string Status,
    string? ErrorType,
    string? ErrorMessage,
    int Attempts,
    DateTimeOffset SubmittedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? FinishedAt,
    string? WorkerId,
    Guid? BatchId);

/// <summary>A page of <c>GET /tasks</c>, newest first; <c>next</c> is the opaque cursor of the following page, null on the last.</summary>
public sealed record TaskPage(IReadOnlyList<TaskSummary> Items, string? Next);

/// <summary>One execution of a task (<c>fleet.task_attempts</c>).</summary>
public sealed record TaskExecution(
    int Attempt,
    string WorkerId,
    string Outcome,
    DateTimeOffset StartedAt,
    DateTimeOffset? FinishedAt,
    string? ErrorType,
    string? ErrorMessage,
    double? WallMs,
    double? CpuMs,
    double? QueueWaitMs);

/// <summary><c>GET /tasks/{id}</c>: the listing's fields, plus input, output and every execution.</summary>
public sealed record TaskDetail(
    Guid Id,
    string Type,
    string Queue,
    string Status,
    string? ErrorType,
    string? ErrorMessage,
    int Attempts,
    DateTimeOffset SubmittedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? FinishedAt,
    string? WorkerId,
    Guid? BatchId,
    [property: Description("The input as submitted (a JSON value).")] JsonElement Payload,
    [property: Description("The output once succeeded (a JSON object), else null.")] JsonElement? Result,
    int Priority,
    int? TimeoutSeconds,
    int MaxAttempts,
    DateTimeOffset? PublishedAt,
    [property: Description("The earliest start of a delayed task (or of a retry waiting out its backoff), UTC.")] DateTimeOffset? NotBefore,
    string? Tenant,
    [property: Description("The schedule whose firing created the task, if any.")] string? ScheduleName,
    [property: Description("The fire time the schedule created the task for.")] DateTimeOffset? ScheduledFor,
    [property: Description("Whether the dispatcher publishes the task (a tenant, a priority above 0, or a type under a limit).")] bool Dispatched,
    [property: Description("Why a queued task is not running yet, as fleet.v_waiting_tasks says: \"previous-step\" (a chain step waits for the step before it to succeed), \"delay\" (its notBefore is ahead), \"retry\" (a failed attempt waits out its backoff), \"publish\" (its time has come; the outbox relay publishes it), \"rate-limit\" or \"concurrency-limit\" (a limit of its type or tenant holds it back), \"tenant-share\" (other tenants' turns come first), \"priority\" (higher priorities come first). Null otherwise.")] string? WaitingFor,
    IReadOnlyList<TaskExecution> Executions)
{
    [Description("For a later step of a chain: the step before it (its result is that task's). Null otherwise.")]
    public Guid? AfterTaskId { get; init; }

    [Description("The chain step that runs after this task once it succeeds (cancelled if it ends otherwise). Null otherwise.")]
    public Guid? NextTaskId { get; init; }

    [Description("For a batch's onComplete task: the batch whose tasks were all final when it was created.")]
    public Guid? AfterBatchId { get; init; }

    [Description("The final task this one runs again (POST /tasks/{id}/requeue). Null otherwise.")]
    public Guid? RequeuedFrom { get; init; }

    [Description("The key that keeps the task unique while it is queued or running.")]
    public string? UniqueKey { get; init; }

    [Description("The latest progress its handler reported, 0 to 1; null when it reported none.")]
    public double? Progress { get; init; }

    [Description("The short note of the latest progress report.")]
    public string? ProgressNote { get; init; }

    [Description("When the worker wrote the latest progress (UTC).")]
    public DateTimeOffset? ProgressAt { get; init; }
}

/// <summary>Answer of <c>POST /tasks/{id}/cancel</c>: <c>cancelled</c> (200) for a task that was queued, <c>running</c> with <c>cancelRequested</c> (202) for one that runs.</summary>
public sealed record CancelAccepted(Guid Id, string Status, bool CancelRequested);

/// <summary><c>GET /batches/{id}</c>: counts by state; <c>finishedAt</c> once every task is final.</summary>
public sealed record BatchStatus(
    Guid Id,
    long Total,
    long Queued,
    long Running,
    long Succeeded,
    long Failed,
    long TimedOut,
    long Cancelled,
    bool Done,
    DateTimeOffset SubmittedAt,
    DateTimeOffset? FinishedAt)
{
    [Description("Whether the batch was submitted with an onComplete task.")]
    public bool HasOnComplete { get; init; }

    [Description("The onComplete task's id once it is created (every task of the batch final); null until then, and without onComplete.")]
    public Guid? OnCompleteTaskId { get; init; }
}
