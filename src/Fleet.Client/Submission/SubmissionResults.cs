namespace Fleet.Client;

/// <summary>What a producer asks of one submission besides the tasks themselves.</summary>
public sealed record SubmitOptions
{
    /// <summary>
    /// The producer's <c>Idempotency-Key</c>. Stored in <c>fleet.idempotency_keys</c> in the same transaction as the
    /// tasks: a second submission under the same key creates nothing and returns the first one's ids.
    /// </summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>A hash of what was asked (endpoint and body); the same key with another hash is a conflict.</summary>
    public string? RequestHash { get; init; }

    /// <summary>The batch every task of this submission belongs to (set on tasks that name none).</summary>
    public Guid? BatchId { get; init; }
}

/// <summary>
/// The ids of a submission's tasks in request order; <see cref="Replayed"/> when an earlier request under the same
/// idempotency key created them. <see cref="PublishError"/> is set when the tasks are stored but the broker did not
/// confirm them all: they are accepted all the same, and the relay publishes them.
/// </summary>
public sealed record SubmitResult(IReadOnlyList<Guid> TaskIds, Guid? BatchId, bool Replayed, Exception? PublishError = null);
