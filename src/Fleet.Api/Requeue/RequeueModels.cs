using System.ComponentModel;

namespace Fleet.Api.Requeue;

/// <summary>The body of <c>POST /tasks/requeue</c>: which final tasks to run again. Only <c>status</c> is required.</summary>
public sealed record RequeueBody
{
    [Description("One final state or an array of them: succeeded, failed, timed_out, cancelled.")]
    public required IReadOnlyList<string> Status { get; init; }

    [Description("Only tasks of this type.")]
    public string? Type { get; init; }

    [Description("Only tasks of this batch (the new tasks belong to no batch).")]
    public Guid? BatchId { get; init; }

    [Description("Only tasks finished at or after this time, RFC 3339 with an offset or Z.")]
    public DateTimeOffset? FinishedSince { get; init; }

    [Description("Only tasks finished before this time, RFC 3339 with an offset or Z.")]
    public DateTimeOffset? FinishedUntil { get; init; }

    [Description("At most this many tasks, the earliest finished first: 1 to 10000, default 1000.")]
    public int? Limit { get; init; }

    [Description("Also take tasks that were requeued before (default false: the same request run twice requeues once).")]
    public bool? Again { get; init; }
}

/// <summary>202 of <c>POST /tasks/{id}/requeue</c>: the new task, and the task it runs again.</summary>
public sealed record RequeueAccepted(Guid Id, string StatusUrl, Guid RequeuedFrom);

/// <summary>202 of <c>POST /tasks/requeue</c>: the new tasks and, at the same positions, the tasks they run again.</summary>
public sealed record RequeueBulkAccepted(int Count, IReadOnlyList<Guid> Ids, IReadOnlyList<Guid> RequeuedFrom);
