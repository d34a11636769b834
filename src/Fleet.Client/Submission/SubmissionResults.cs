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

    /// <summary>
    /// The batch's <c>onComplete</c> task (needs <see cref="BatchId"/>): created once, when every task of the batch
    /// is final, whatever their outcomes, with the batch id in <c>tasks.after_batch_id</c>
    /// (<c>fleet.batch_callbacks</c>). May not have <see cref="TaskRequest.Then"/> steps or a time.
    /// </summary>
    public TaskRequest? OnComplete { get; init; }
}

/// <summary>
/// The ids of a submission's tasks in request order; <see cref="Replayed"/> when an earlier request under the same
/// idempotency key created them. <see cref="PublishError"/> is set when the tasks are stored but the broker did not
/// confirm them all: they are accepted all the same, and the relay publishes them.
/// </summary>
public sealed record SubmitResult(IReadOnlyList<Guid> TaskIds, Guid? BatchId, bool Replayed, Exception? PublishError = null)
{
    /// <summary>
    /// Per request, in request order, the ids of its <see cref="TaskRequest.Then"/> steps (empty for a request without
    /// steps); null when no request had steps.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<Guid>>? Steps { get; init; }

    /// <summary>
    /// The positions (in request order) whose <see cref="TaskRequest.UniqueKey"/> matched an active task: their id in
    /// <see cref="TaskIds"/> is that task's, and nothing new was stored for them. Null when none did.
    /// </summary>
    public IReadOnlySet<int>? Existing { get; init; }
}
