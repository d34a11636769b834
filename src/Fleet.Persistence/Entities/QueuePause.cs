namespace Fleet.Persistence.Entities;

/// <summary>
/// A paused queue (<c>fleet.queue_pauses</c>, schema version 10): while the row exists, no worker takes from the
/// queue, including workers started later; deleting it resumes the queue.
/// </summary>
public sealed class QueuePause
{
    /// <summary>The queue, e.g. <c>fleet-io</c>.</summary>
    public required string Queue { get; set; }

    public DateTimeOffset PausedAt { get; set; }

    /// <summary>Why, as the operator said; optional.</summary>
    public string? Reason { get; set; }
}
