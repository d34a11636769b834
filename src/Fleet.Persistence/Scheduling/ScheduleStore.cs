using Npgsql;
using NpgsqlTypes;

namespace Fleet.Persistence.Scheduling;

/// <summary>One row of <c>fleet.schedules</c>; <see cref="Task"/> is the task request's JSON text.</summary>
public sealed record ScheduleRow(
    string Name,
    string Cron,
    string TimeZone,
    string Task,
    bool Paused,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    DateTimeOffset? NextFireAt,
    DateTimeOffset? LastFiredAt,
    Guid? LastTaskId);

/// <summary>
/// The definition side of <c>fleet.schedules</c> (create, list, pause, resume, remove), shared by the API and the
/// <c>fleet schedule</c> command so that both store the same next fire time. Firing is the API's
/// <c>ScheduleFirer</c>. Times come from the caller, whose <see cref="TimeProvider"/> tests can move.
/// </summary>
public sealed class ScheduleStore(NpgsqlDataSource dataSource)
{
    public const string Columns = "name, cron, time_zone, task, paused, created_at, updated_at, next_fire_at, last_fired_at, last_task_id";

    /// <summary>
    /// Stores a new schedule whose first fire time is the first occurrence after <paramref name="now"/>; null when the
    /// name is taken (nothing changes then).
    /// </summary>
    public async Task<ScheduleRow?> AddAsync(
        string name, string cron, string timeZone, CronSchedule schedule, string taskJson, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        await using var command = dataSource.CreateCommand($"""
            INSERT INTO fleet.schedules (name, cron, time_zone, task, paused, created_at, updated_at, next_fire_at)
            VALUES (@name, @cron, @time_zone, @task, false, @now, @now, @next)
            ON CONFLICT (name) DO NOTHING
            RETURNING {Columns}
            """);
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("cron", cron);
        command.Parameters.AddWithValue("time_zone", timeZone);
        command.Parameters.Add(new NpgsqlParameter("task", NpgsqlDbType.Jsonb) { Value = taskJson });
        command.Parameters.AddWithValue("now", now);
        command.Parameters.Add(new NpgsqlParameter("next", NpgsqlDbType.TimestampTz) { Value = (object?)schedule.NextAfter(now) ?? DBNull.Value });
        return await ReadOneAsync(command, cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<ScheduleRow>> ListAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"SELECT {Columns} FROM fleet.schedules ORDER BY name");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rows = new List<ScheduleRow>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(Read(reader));
        }

        return rows;
    }

    public async Task<ScheduleRow?> GetAsync(string name, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"SELECT {Columns} FROM fleet.schedules WHERE name = @name");
        command.Parameters.AddWithValue("name", name);
        return await ReadOneAsync(command, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes the schedule; false when there is none. The tasks it created stay.</summary>
    public async Task<bool> RemoveAsync(string name, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("DELETE FROM fleet.schedules WHERE name = @name");
        command.Parameters.AddWithValue("name", name);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0;
    }

    /// <summary>Pauses: no next fire time, so the firing loop passes it over. Null when there is no such schedule.</summary>
    public async Task<ScheduleRow?> PauseAsync(string name, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"""
            UPDATE fleet.schedules SET paused = true, next_fire_at = NULL,
                updated_at = CASE WHEN paused THEN updated_at ELSE @now END
            WHERE name = @name
            RETURNING {Columns}
            """);
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("now", now);
        return await ReadOneAsync(command, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Resumes from the first occurrence after <paramref name="now"/>: ticks that passed while it was paused are not
    /// fired. Resuming a running schedule changes nothing. Null when there is no such schedule.
    /// </summary>
    public async Task<ScheduleRow?> ResumeAsync(string name, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var row = await GetAsync(name, cancellationToken).ConfigureAwait(false);
        if (row is null || !row.Paused)
        {
            return row;
        }

        // The stored expression and zone were valid when stored; a zone the system no longer knows leaves no next time.
        var next = CronSchedule.Parse(row.Cron, row.TimeZone).Schedule?.NextAfter(now);
        await using var command = dataSource.CreateCommand($"""
            UPDATE fleet.schedules SET paused = false, next_fire_at = @next, updated_at = @now
            WHERE name = @name AND paused
            RETURNING {Columns}
            """);
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("now", now);
        command.Parameters.Add(new NpgsqlParameter("next", NpgsqlDbType.TimestampTz) { Value = (object?)next ?? DBNull.Value });

        // Null here: removed or resumed by someone else in between; the row as it is now answers either way.
        return await ReadOneAsync(command, cancellationToken).ConfigureAwait(false) ?? await GetAsync(name, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads a row of <see cref="Columns"/>, in that order.</summary>
    public static ScheduleRow Read(NpgsqlDataReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return new ScheduleRow(
            reader.GetString(0),
            reader.GetString(1),
            reader.GetString(2),
            reader.GetString(3),
            reader.GetBoolean(4),
            reader.GetFieldValue<DateTimeOffset>(5),
            reader.GetFieldValue<DateTimeOffset>(6),
            reader.IsDBNull(7) ? null : reader.GetFieldValue<DateTimeOffset>(7),
            reader.IsDBNull(8) ? null : reader.GetFieldValue<DateTimeOffset>(8),
            reader.IsDBNull(9) ? null : reader.GetGuid(9));
    }

    private static async Task<ScheduleRow?> ReadOneAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? Read(reader) : null;
    }
}
