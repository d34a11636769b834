namespace Fleet.Persistence.Entities;

/// <summary>
/// A fleet-wide limit on the tasks of one type or one tenant (<c>fleet.limits</c>, schema version 9): at most
/// <see cref="PerSecond"/> starts per second (a token bucket of <see cref="Burst"/>) and at most
/// <see cref="MaxRunning"/> published or running at once. The dispatcher enforces it; tasks it holds back wait in
/// PostgreSQL, not in a worker slot.
/// </summary>
public sealed class TaskLimit
{
    /// <summary><c>type</c> or <c>tenant</c>.</summary>
    public required string Scope { get; set; }

    /// <summary>The task type or the tenant the limit is for.</summary>
    public required string Key { get; set; }

    /// <summary>The most tasks started per second, fleet-wide; null for no rate limit.</summary>
    public double? PerSecond { get; set; }

    /// <summary>How many starts may come at once after a quiet spell; null means one second's worth (at least 1).</summary>
    public int? Burst { get; set; }

    /// <summary>The most tasks running (or published to a worker) at once, fleet-wide; null for no such limit.</summary>
    public int? MaxRunning { get; set; }

    public DateTimeOffset CreatedAt { get; set; }

    public DateTimeOffset UpdatedAt { get; set; }

    /// <summary>
    /// Written by the dispatcher: <c>rate-limit</c> or <c>concurrency-limit</c> while the limit holds tasks back, null
    /// when it held none back in its latest round.
    /// </summary>
    public string? BlockedReason { get; set; }

    /// <summary>Since when <see cref="BlockedReason"/> holds; null with it.</summary>
    public DateTimeOffset? BlockedSince { get; set; }
}
