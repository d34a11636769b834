using Cronos;

namespace Fleet.Persistence.Scheduling;

/// <summary>
/// A schedule's cron expression in its time zone (Cronos): when it fires next, and which fire time a late round
/// takes. 5 fields (minute first) or 6 (second first), chosen by the field count; daylight-saving gaps and overlaps
/// are handled as Cronos defines them (docs/scheduling.md, "Time zones and DST").
/// </summary>
public sealed class CronSchedule
{
    /// <summary>The time zone of a schedule that names none.</summary>
    public const string DefaultTimeZone = "UTC";

    private readonly CronExpression _expression;

    private CronSchedule(CronExpression expression, TimeZoneInfo zone)
    {
        _expression = expression;
        Zone = zone;
    }

    public TimeZoneInfo Zone { get; }

    /// <summary>The schedule, or why the expression or the time zone is refused (each error null when that part is valid).</summary>
    public static (CronSchedule? Schedule, string? CronError, string? TimeZoneError) Parse(string? cron, string? timeZone)
    {
        string? cronError = null, zoneError = null;
        CronExpression? expression = null;
        TimeZoneInfo? zone = null;
        var text = cron?.Trim() ?? "";
        var fields = text.Split(' ', '\t').Count(f => f.Length > 0);
        if (fields is not (5 or 6) && !text.StartsWith('@'))
        {
            cronError = $"Must have 5 fields (minute hour day month weekday) or 6 (second first); this one has {fields}.";
        }
        else
        {
            try
            {
                expression = CronExpression.Parse(text, fields == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard);
            }
            catch (CronFormatException ex)
            {
                cronError = ex.Message;
            }
        }

        try
        {
            zone = TimeZoneInfo.FindSystemTimeZoneById(string.IsNullOrWhiteSpace(timeZone) ? DefaultTimeZone : timeZone);
        }
        catch (Exception ex) when (ex is TimeZoneNotFoundException or InvalidTimeZoneException or ArgumentException)
        {
            zoneError = $"Unknown time zone '{timeZone}'; use an IANA id such as UTC or Europe/Berlin.";
        }

        return cronError is null && zoneError is null ? (new CronSchedule(expression!, zone!), null, null) : (null, cronError, zoneError);
    }

    /// <summary>The first fire time strictly after <paramref name="time"/>; null when the expression has none.</summary>
    /// <remarks>In UTC, as every time Fleet stores (Cronos answers with the zone's offset, which Npgsql refuses for timestamptz).</remarks>
    public DateTimeOffset? NextAfter(DateTimeOffset time) => _expression.GetNextOccurrence(time, Zone, inclusive: false)?.ToUniversalTime();

    /// <summary>
    /// What a firing round at <paramref name="now"/> does to a schedule due at <paramref name="due"/>: the fire time of
    /// its one task (<see cref="LatestDue"/>), and its next fire time, the first occurrence after now.
    /// </summary>
    public (DateTimeOffset FireAt, DateTimeOffset? Next) Fire(DateTimeOffset due, DateTimeOffset now) => (LatestDue(due, now), NextAfter(now));

    /// <summary>
    /// The fire time a round at <paramref name="now"/> takes for a schedule that was due at <paramref name="due"/>:
    /// the LATEST occurrence from <paramref name="due"/> to <paramref name="now"/>, so that ticks missed while the
    /// fleet was down fire once, not once each (the catch-up policy). Searches back from <paramref name="now"/> in
    /// doubling windows, so a month-long outage of an every-second schedule is not millions of steps.
    /// </summary>
    public DateTimeOffset LatestDue(DateTimeOffset due, DateTimeOffset now)
    {
        if (now <= due)
        {
            return due.ToUniversalTime();
        }

        for (var window = TimeSpan.FromSeconds(1); ; window *= 2)
        {
            var start = now - window <= due ? due : now - window;
            DateTimeOffset? latest = null;
            foreach (var occurrence in _expression.GetOccurrences(start, now, Zone, fromInclusive: true, toInclusive: true))
            {
                latest = occurrence;
            }

            if (latest is not null)
            {
                return latest.Value.ToUniversalTime();
            }

            if (start == due)
            {
                // No occurrence in [due, now]: due itself was the stored fire time; it is the one missed.
                return due.ToUniversalTime();
            }
        }
    }
}
