using System.Text.Json;
using Fleet.Api.Submission;
using Fleet.Client;
using Fleet.Persistence.Scheduling;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.Api.Scheduling;

/// <summary>What one firing round did, and the earliest fire time it left (null when nothing is scheduled).</summary>
public readonly record struct FiringRound(bool HeldLock, int Fired, int Due, DateTimeOffset? NextDue);

/// <summary>
/// One round of firing: in one transaction under the firing lock (a PostgreSQL advisory lock, so that one API
/// replica fires at a time), reads the due schedules (<c>FOR UPDATE SKIP LOCKED</c>, so that even without the lock
/// two rounds never take the same schedule), creates ONE task per schedule through <see cref="TaskSubmitter"/>, and
/// moves each schedule's next fire time past now.
/// <para>
/// Exactly once: the task of a firing has an id derived from (name, fire time) (<see cref="ScheduleNames.TaskId"/>),
/// and <c>fleet.tasks</c> holds at most one task per (schedule_name, scheduled_for). A round that dies after the
/// task's insert and before its schedule's update is repeated by the next round for the same fire time, and inserts
/// nothing new (its message may be sent again; the worker's idempotent claim absorbs that).
/// </para>
/// <para>
/// Catch-up: a schedule due at a time long past (everything was down across several ticks) fires once, for the
/// latest tick not after now (<see cref="CronSchedule.LatestDue"/>), and then continues from the first tick after now.
/// </para>
/// </summary>
public sealed partial class ScheduleFirer(
    NpgsqlDataSource dataSource,
    TaskSubmitter submitter,
    TaskRequestReader reader,
    IOptions<ScheduleOptions> options,
    [FromKeyedServices(ScheduleFirer.ClockKey)] TimeProvider clock,
    ILogger<ScheduleFirer> logger)
{
    /// <summary>The key of the <see cref="TimeProvider"/> that schedules read "now" from (the system clock unless a test replaces it).</summary>
    public const string ClockKey = "fleet.schedules.clock";

    /// <summary>The firing lock, held to the end of a round's transaction.</summary>
    public const long LockKey = 0x666C_6565_7453_6368;

    public async Task<FiringRound> FireDueAsync(CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        var fired = 0;
        int due;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false))
        {
            await using (var tryLock = new NpgsqlCommand("SELECT pg_try_advisory_xact_lock(@key)", connection, transaction))
            {
                tryLock.Parameters.AddWithValue("key", LockKey);
                if (await tryLock.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not true)
                {
                    return new FiringRound(HeldLock: false, 0, 0, null);
                }
            }

            var schedules = await ReadDueAsync(connection, transaction, now, cancellationToken).ConfigureAwait(false);
            due = schedules.Count;
            foreach (var schedule in schedules)
            {
                if (await FireAsync(connection, transaction, schedule, now, cancellationToken).ConfigureAwait(false))
                {
                    fired++;
                }
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        await using var next = new NpgsqlCommand("SELECT min(next_fire_at) FROM fleet.schedules WHERE NOT paused", connection);
        var nextDue = await next.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is DateTime time
            ? new DateTimeOffset(DateTime.SpecifyKind(time, DateTimeKind.Utc))
            : (DateTimeOffset?)null;
        return new FiringRound(HeldLock: true, fired, due, nextDue);
    }

    private async Task<List<DueSchedule>> ReadDueAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("""
            SELECT name, cron, time_zone, task, next_fire_at FROM fleet.schedules
            WHERE NOT paused AND next_fire_at <= @now
            ORDER BY next_fire_at
            LIMIT @limit
            FOR UPDATE SKIP LOCKED
            """, connection, transaction);
        command.Parameters.AddWithValue("now", now);
        command.Parameters.AddWithValue("limit", options.Value.BatchSize);
        await using var rows = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var due = new List<DueSchedule>();
        while (await rows.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            due.Add(new DueSchedule(rows.GetString(0), rows.GetString(1), rows.GetString(2), rows.GetString(3), rows.GetFieldValue<DateTimeOffset>(4)));
        }

        return due;
    }

    /// <summary>Creates the task of the schedule's latest due fire time and moves it on; false when it created none.</summary>
    private async Task<bool> FireAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, DueSchedule schedule, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var cron = CronSchedule.Parse(schedule.Cron, schedule.TimeZone).Schedule;
        DateTimeOffset? fireAt = null, next = null;
        Guid? taskId = null;
        if (cron is null)
        {
            // Valid when stored; only a time zone the system no longer knows gets here. It stays, without a next time.
            LogUnreadable(schedule.Name, schedule.TimeZone);
        }
        else
        {
            (var fireTime, next) = cron.Fire(schedule.NextFireAt, now);
            fireAt = fireTime;
            taskId = await SubmitAsync(schedule, fireTime, cancellationToken).ConfigureAwait(false);
        }

        await using var update = new NpgsqlCommand("""
            UPDATE fleet.schedules
            SET next_fire_at = @next,
                last_fired_at = COALESCE(@fired_at, last_fired_at),
                last_task_id = COALESCE(@task_id, last_task_id)
            WHERE name = @name
            """, connection, transaction);
        update.Parameters.AddWithValue("name", schedule.Name);
        update.Parameters.Add(new NpgsqlParameter("next", NpgsqlDbType.TimestampTz) { Value = (object?)next ?? DBNull.Value });
        update.Parameters.Add(new NpgsqlParameter("fired_at", NpgsqlDbType.TimestampTz) { Value = taskId is null ? DBNull.Value : fireAt!.Value });
        update.Parameters.Add(new NpgsqlParameter("task_id", NpgsqlDbType.Uuid) { Value = (object?)taskId ?? DBNull.Value });
        await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        return taskId is not null;
    }

    /// <summary>The stored task request, read as POST /tasks reads it, submitted under the firing's id; null when it no longer validates.</summary>
    private async Task<Guid?> SubmitAsync(DueSchedule schedule, DateTimeOffset fireAt, CancellationToken cancellationToken)
    {
        using var document = JsonDocument.Parse(schedule.Task);

        // Read at each firing, not once: delaySeconds counts from the fire time, and the task types the API knows may
        // have changed since the schedule was stored (then the firing is skipped and logged, and the next one tried).
        var (request, error) = reader.ReadTask(document.RootElement);
        if (request is null)
        {
            LogInvalidTask(schedule.Name, error is IStatusCodeHttpResult { StatusCode: { } status } ? status : 400);
            return null;
        }

        var taskId = ScheduleNames.TaskId(schedule.Name, fireAt);
        await submitter.SubmitAsync([request with { TaskId = taskId, ScheduleName = schedule.Name, ScheduledFor = fireAt }], null, cancellationToken)
            .ConfigureAwait(false);
        return taskId;
    }

    private sealed record DueSchedule(string Name, string Cron, string TimeZone, string Task, DateTimeOffset NextFireAt);

    [LoggerMessage(Level = LogLevel.Error, Message = "Schedule {Name} cannot be read (time zone {TimeZone} unknown to this system); it will not fire until recreated")]
    private partial void LogUnreadable(string name, string timeZone);

    [LoggerMessage(Level = LogLevel.Error, Message = "Schedule {Name}: its task no longer validates as POST /tasks would take it ({Status}); this firing created no task")]
    private partial void LogInvalidTask(string name, int status);
}
