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
    public bool IsFinal => Status is "succeeded" or "failed" or "timed_out" or "cancelled";
}

/// <summary>Counts of a batch's tasks by state.</summary>
public sealed record BatchProgress(Guid BatchId, long Total, long Queued, long Running, long Succeeded, long Failed, long TimedOut, long Cancelled)
{
    public long Final => Succeeded + Failed + TimedOut + Cancelled;

    public bool IsDone => Total > 0 && Final == Total;
}
