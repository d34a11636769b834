namespace Fleet.Persistence.Entities;

/// <summary>
/// One recurring schedule (<c>fleet.schedules</c>): a cron expression in a time zone and the task each firing
/// creates. The firing loop of the API moves <see cref="NextFireAt"/> forward as it fires.
/// </summary>
public sealed class Schedule
{
    /// <summary>1 to 100 letters, digits, <c>-</c>, <c>_</c> or <c>.</c> (<see cref="Scheduling.ScheduleNames"/>).</summary>
    public required string Name { get; set; }

    /// <summary>The cron expression as given: 5 fields, or 6 with seconds first.</summary>
    public required string Cron { get; set; }

    /// <summary>The IANA time zone the expression is read in.</summary>
    public string TimeZone { get; set; } = "UTC";

    /// <summary>The task request (jsonb) as <c>POST /tasks</c> accepts it, read again at each firing.</summary>
    public required string Task { get; set; }

    public bool Paused { get; set; }

    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>The last change by a person (create, pause, resume), not by a firing.</summary>
    public DateTimeOffset UpdatedAt { get; set; }

    /// <summary>The next fire time; null while paused or when the expression has no later occurrence.</summary>
    public DateTimeOffset? NextFireAt { get; set; }

    /// <summary>The fire time of the last task created (its <c>scheduled_for</c>).</summary>
    public DateTimeOffset? LastFiredAt { get; set; }

    public Guid? LastTaskId { get; set; }
}
