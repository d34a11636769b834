namespace Fleet.Contracts;

/// <summary>
/// Asks whichever worker is running <see cref="TaskId"/> to cancel it: its handler's token fires and the task ends
/// <c>cancelled</c>. Broadcast on the <see cref="TaskQueues.Control"/> fanout exchange, which every worker binds with
/// a queue of its own, because the sender cannot know which worker holds the task.
/// </summary>
public sealed record CancelTask
{
    public Guid TaskId { get; init; }

    /// <summary>Why, for the task's <c>error_message</c>.</summary>
    public string? Reason { get; init; }
}
