namespace Fleet.Persistence.Entities;

/// <summary>
/// One <c>Idempotency-Key</c> a producer sent with a submission (<c>fleet.idempotency_keys</c>). It is written in
/// the same transaction as the task rows, so a retried request finds either nothing (the first attempt never
/// committed) or exactly the tasks the first attempt created.
/// </summary>
public sealed class IdempotencyRecord
{
    /// <summary>The header value as sent.</summary>
    public required string Key { get; set; }

    /// <summary>SHA-256 (hex) of the endpoint and the request body; a different hash under the same key is a conflict.</summary>
    public required string RequestHash { get; set; }

    /// <summary>The tasks the first request created, in request order.</summary>
    public Guid[] TaskIds { get; set; } = [];

    /// <summary>The batch the first request created, for batch submissions.</summary>
    public Guid? BatchId { get; set; }

    public DateTimeOffset CreatedAt { get; set; }
}
