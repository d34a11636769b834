using System.ComponentModel;
using Fleet.Persistence.Limits;

namespace Fleet.Api.Limits;

/// <summary>The body of <c>PUT /limits/{scope}/{key}</c>: at least one of <c>perSecond</c> and <c>maxRunning</c>.</summary>
public sealed record LimitBody
{
    [Description("The most tasks started per second, fleet-wide: above 0, at most 1,000,000, fractions allowed (0.5 is one every 2 s). Absent: no rate limit.")]
    public double? PerSecond { get; init; }

    [Description("How many may start at once after a quiet spell (1-1,000,000); only with perSecond. Absent: one second's worth, at least 1.")]
    public int? Burst { get; init; }

    [Description("The most tasks published to workers or running at once, fleet-wide (1-1,000,000). Absent: no concurrency limit.")]
    public int? MaxRunning { get; init; }
}

/// <summary>A limit as the API shows it.</summary>
public sealed record LimitView(
    [property: Description("type or tenant.")] string Scope,
    [property: Description("The task type or the tenant the limit is for.")] string Key,
    double? PerSecond,
    int? Burst,
    int? MaxRunning,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    [property: Description("\"rate-limit\" or \"concurrency-limit\" while the dispatcher holds tasks back under this limit; null when it held none back in its latest round.")] string? BlockedReason,
    [property: Description("Since when blockedReason holds.")] DateTimeOffset? BlockedSince)
{
    public static LimitView From(LimitRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        return new LimitView(row.Scope, row.Key, row.PerSecond, row.Burst, row.MaxRunning, row.CreatedAt, row.UpdatedAt, row.BlockedReason, row.BlockedSince);
    }
}
