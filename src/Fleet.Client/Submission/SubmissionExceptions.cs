namespace Fleet.Client;

/// <summary>The tasks are stored, but the broker did not confirm their messages; the relay publishes them later.</summary>
public sealed class TaskPublishException : Exception
{
    public TaskPublishException(IReadOnlyList<Guid> taskIds, Exception innerException)
        : base($"{taskIds.Count} tasks are stored but their publish was not confirmed: {innerException?.Message}", innerException)
    {
        TaskIds = taskIds;
    }

    public TaskPublishException()
    {
        TaskIds = [];
    }

    public TaskPublishException(string message)
        : base(message)
    {
        TaskIds = [];
    }

    public TaskPublishException(string message, Exception innerException)
        : base(message, innerException)
    {
        TaskIds = [];
    }

    /// <summary>The stored tasks that were not confirmed.</summary>
    public IReadOnlyList<Guid> TaskIds { get; }
}

/// <summary>The idempotency key was used before with a different request.</summary>
public sealed class IdempotencyConflictException : Exception
{
    public IdempotencyConflictException()
        : base("This idempotency key was already used for a different request.")
    {
    }

    public IdempotencyConflictException(string message)
        : base(message)
    {
    }

    public IdempotencyConflictException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
