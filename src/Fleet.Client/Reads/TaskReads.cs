using Npgsql;

namespace Fleet.Client;

/// <summary>
/// The reads of <c>fleet.tasks</c> (and its attempts) that producers make, shared by <see cref="FleetClient"/> and
/// the CLI: one task by id, a batch's progress (polled while it runs) and a batch's report (printed once it is done).
/// Each read is one statement through an index (<c>pk_tasks</c>, <c>ix_tasks_batch</c>); the API reads the same rows
/// through EF (<c>TaskQueries</c>), shaped for paging.
/// </summary>
public sealed class TaskReads(NpgsqlDataSource dataSource)
{
    // The reason a task waits comes from fleet.v_waiting_tasks, the one definition the API and SQL use too.
    private const string SelectTaskSql = """
        SELECT t.id, t.type, t.queue, t.status, t.payload::text, t.result::text, t.error_type, t.error_message, t.attempts, t.batch_id,
               t.submitted_at, t.started_at, t.finished_at, t.worker_id, t.priority, t.tenant, t.not_before, t.dispatched, w.waiting_for,
               t.after_task_id, t.next_task_id, t.after_batch_id, t.requeued_from, t.progress, t.progress_note
        FROM fleet.tasks t LEFT JOIN fleet.v_waiting_tasks w ON w.id = t.id
        WHERE t.id = @id
        """;

    /// <summary>
    /// How many queued tasks wait, by reason: one aggregate over <c>fleet.v_waiting_tasks</c>, shared by
    /// <c>fleet status</c> and the API's <c>fleet_tasks_waiting</c> gauge.
    /// </summary>
    public const string WaitingCountsSql = "SELECT waiting_for, count(*) FROM fleet.v_waiting_tasks GROUP BY 1";

    private const string BatchProgressSql = """
        SELECT count(*),
               count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'running'),
               count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'),
               count(*) FILTER (WHERE status = 'timed_out'), count(*) FILTER (WHERE status = 'cancelled')
        FROM fleet.tasks WHERE batch_id = @batch_id
        """;

    private const string BatchOverviewSql = """
        SELECT count(*) AS tasks,
               count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'timed_out') AS timed_out,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
               extract(epoch FROM max(finished_at) - min(submitted_at))::float8 AS wall_s,
               sum(attempts) AS attempts
        FROM fleet.tasks
        WHERE batch_id = @batch
        """;

    private const string BatchTimingSql = """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a.wall_ms) AS run_p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY a.wall_ms) AS run_p95,
               avg(a.cpu_ms) AS cpu_avg,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.finished_at - t.submitted_at) * 1000) AS latency_p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM t.finished_at - t.submitted_at) * 1000) AS latency_p95
        FROM fleet.tasks t
        JOIN fleet.task_attempts a ON a.task_id = t.id AND a.attempt = t.attempts
        WHERE t.batch_id = @batch AND t.status = 'succeeded'
        """;

    private const string BatchPerWorkerSql = """
        SELECT coalesce(w.host, '?') AS host, t.worker_id, count(*) AS tasks, avg(a.wall_ms) AS avg_ms
        FROM fleet.tasks t
        JOIN fleet.task_attempts a ON a.task_id = t.id AND a.attempt = t.attempts
        LEFT JOIN fleet.workers w ON w.id = t.worker_id
        WHERE t.batch_id = @batch
        GROUP BY 1, 2
        ORDER BY 3 DESC
        """;

    private const string BatchErrorsSql = """
        SELECT error_type, left(error_message, 120), count(*)
        FROM fleet.tasks
        WHERE batch_id = @batch AND status <> 'succeeded'
        GROUP BY 1, 2
        ORDER BY 3 DESC
        LIMIT 5
        """;

    /// <summary>Reads one task, or null when no task has that id.</summary>
    public async Task<TaskInfo?> GetAsync(Guid taskId, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand(SelectTaskSql);
        command.Parameters.AddWithValue("id", taskId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        return new TaskInfo(
            reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4),
            reader.IsDBNull(5) ? null : reader.GetString(5), reader.IsDBNull(6) ? null : reader.GetString(6),
            reader.IsDBNull(7) ? null : reader.GetString(7), reader.GetInt32(8), reader.IsDBNull(9) ? null : reader.GetGuid(9),
            reader.GetFieldValue<DateTimeOffset>(10), reader.IsDBNull(11) ? null : reader.GetFieldValue<DateTimeOffset>(11),
            reader.IsDBNull(12) ? null : reader.GetFieldValue<DateTimeOffset>(12), reader.IsDBNull(13) ? null : reader.GetString(13))
        {
            Priority = reader.GetInt32(14),
            Tenant = reader.IsDBNull(15) ? null : reader.GetString(15),
            NotBefore = reader.IsDBNull(16) || reader.GetFieldValue<DateTimeOffset>(16) == DateTimeOffset.MaxValue ? null : reader.GetFieldValue<DateTimeOffset>(16),
            Dispatched = reader.GetBoolean(17),
            WaitingFor = reader.IsDBNull(18) ? null : reader.GetString(18),
            AfterTaskId = reader.IsDBNull(19) ? null : reader.GetGuid(19),
            NextTaskId = reader.IsDBNull(20) ? null : reader.GetGuid(20),
            AfterBatchId = reader.IsDBNull(21) ? null : reader.GetGuid(21),
            RequeuedFrom = reader.IsDBNull(22) ? null : reader.GetGuid(22),
            Progress = reader.IsDBNull(23) ? null : reader.GetDouble(23),
            ProgressNote = reader.IsDBNull(24) ? null : reader.GetString(24),
        };
    }

    /// <summary>
    /// The queued tasks not yet published, counted by why they wait (<see cref="WaitingReasons"/>); a reason no task
    /// has is absent.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, long>> GetWaitingCountsAsync(CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand(WaitingCountsSql);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            counts[reader.GetString(0)] = reader.GetInt64(1);
        }

        return counts;
    }

    /// <summary>Counts a batch's tasks by state (one indexed aggregate).</summary>
    public async Task<BatchProgress> GetBatchProgressAsync(Guid batchId, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand(BatchProgressSql);
        command.Parameters.AddWithValue("batch_id", batchId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return new BatchProgress(batchId, reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3),
            reader.GetInt64(4), reader.GetInt64(5), reader.GetInt64(6));
    }

    /// <summary>A batch's outcome: counts, run times and latencies of its successes, work per worker, its commonest errors.</summary>
    public async Task<BatchReport> GetBatchReportAsync(Guid batchId, CancellationToken cancellationToken = default)
    {
        var overview = await ReadAsync(BatchOverviewSql, batchId, r => new BatchOverview(
            r.GetInt64(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4),
            r.IsDBNull(5) ? 0 : r.GetDouble(5), r.IsDBNull(6) ? 0 : r.GetInt64(6)), cancellationToken).ConfigureAwait(false);

        // Aggregates over no successes come back as one row of nulls.
        var timing = await ReadAsync(BatchTimingSql, batchId, r => r.IsDBNull(0) ? null : new BatchTiming(
            r.GetDouble(0), r.GetDouble(1), r.IsDBNull(2) ? 0 : r.GetDouble(2), r.GetDouble(3), r.GetDouble(4)), cancellationToken).ConfigureAwait(false);
        var workers = await ReadAsync(BatchPerWorkerSql, batchId, r => new BatchWorkerLine(
            r.GetString(0), r.IsDBNull(1) ? null : r.GetString(1), r.GetInt64(2), r.IsDBNull(3) ? 0 : r.GetDouble(3)), cancellationToken).ConfigureAwait(false);
        var errors = await ReadAsync(BatchErrorsSql, batchId, r => new BatchErrorLine(
            r.IsDBNull(0) ? null : r.GetString(0), r.IsDBNull(1) ? null : r.GetString(1), r.GetInt64(2)), cancellationToken).ConfigureAwait(false);
        return new BatchReport(batchId, overview[0], timing.FirstOrDefault(), workers, errors);
    }

    private async Task<List<T>> ReadAsync<T>(string sql, Guid batchId, Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(sql);
        command.Parameters.AddWithValue("batch", batchId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rows = new List<T>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(read(reader));
        }

        return rows;
    }
}
