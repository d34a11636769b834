using System.ComponentModel;
using System.Text.Json;
using Fleet.Api.Models;
using Fleet.Persistence.Scheduling;

namespace Fleet.Api.Scheduling;

/// <summary>The body of <c>POST /schedules</c>.</summary>
public sealed record ScheduleBody
{
    [Description("1 to 100 letters, digits, '-', '_' or '.'; unique.")]
    public required string Name { get; init; }

    [Description("Cron expression: 5 fields (minute hour day month weekday) or 6 with seconds first, e.g. \"*/2 * * * * *\".")]
    public required string Cron { get; init; }

    [Description("IANA time zone the expression is read in, e.g. Europe/Berlin; UTC when absent.")]
    public string? TimeZone { get; init; }

    [Description("The task each firing creates, exactly as POST /tasks accepts it (notBefore excepted: use delaySeconds).")]
    public required SubmitTaskBody Task { get; init; }
}

/// <summary>A schedule as the API shows it.</summary>
public sealed record ScheduleView(
    string Name,
    string Cron,
    string TimeZone,
    JsonElement Task,
    bool Paused,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    [property: Description("The next fire time; null while paused or when the expression has no later occurrence.")]
    DateTimeOffset? NextFireAt,
    [property: Description("The fire time of the last task it created (that task's scheduledFor).")]
    DateTimeOffset? LastFiredAt,
    Guid? LastTaskId)
{
    public static ScheduleView From(ScheduleRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        using var task = JsonDocument.Parse(row.Task);
        return new ScheduleView(
            row.Name, row.Cron, row.TimeZone, task.RootElement.Clone(), row.Paused, row.CreatedAt, row.UpdatedAt, row.NextFireAt, row.LastFiredAt, row.LastTaskId);
    }
}
