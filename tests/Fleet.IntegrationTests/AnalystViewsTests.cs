using Fleet.IntegrationTests.Support;
using Fleet.Persistence;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.IntegrationTests;

/// <summary>
/// The analysts' views of schema version 3 (docs/sql.md) on a small data set written straight into the tables, with
/// every expected number worked out by hand in the comments. Times are offsets from the start of the current minute
/// (B), so that the per-minute buckets are known.
/// </summary>
public sealed class AnalystViewsTests(FleetFixture fleet) : FleetTest(fleet)
{
    private static readonly Guid Batch = Guid.Parse("0000000b-0000-0000-0000-000000000001");

    // id, type, status, attempts, in the batch, submitted and finished (seconds from B).
    private static readonly TaskRow[] Tasks =
    [
        new(1, "alpha", "succeeded", 1, true, -301, -290),
        new(2, "alpha", "succeeded", 1, true, -301, -280),
        new(3, "alpha", "succeeded", 1, false, -301, -270),
        new(4, "alpha", "failed", 1, true, -301, -115),
        new(5, "alpha", "succeeded", 1, false, -172_900, -172_800), // two days ago: outside every window
        new(6, "beta", "timed_out", 1, true, -301, -260),
        new(7, "beta", "cancelled", 0, false, -301, -250),          // cancelled while queued: no execution
        new(8, "gamma", "succeeded", 2, false, -1900, -1800),       // failed, then retried: not a duplicate
        new(9, "gamma", "succeeded", 2, false, -1900, -1800),       // two executions both succeeded: a duplicate
        new(10, "gamma", "succeeded", 2, false, -1900, -1800),      // its first worker died: abandoned, not a duplicate
        new(11, "gamma", "running", 2, false, -1900, null),         // died once, running again
        new(12, "delta", "queued", 0, true, -300, null),
    ];

    // task, attempt, worker, started (seconds from B), finished, outcome, wall_ms, cpu_ms, queue_wait_ms.
    private static readonly AttemptRow[] Attempts =
    [
        new(1, 1, "w-a", -291, -290, "succeeded", 100, 40, 10),
        new(2, 1, "w-a", -281, -280, "succeeded", 200, 80, 20),
        new(3, 1, "w-b", -271, -270, "succeeded", 300, 180, 30),
        new(4, 1, "w-b", -116, -115, "failed", 5, null, 40),
        new(5, 1, "w-old", -172_801, -172_800, "succeeded", 9999, 9999, 0),
        new(6, 1, "w-a", -261, -260, "timed_out", 1000, null, 0),
        new(8, 1, "w-a", -1850, -1849, "failed", 50, null, 0),
        new(8, 2, "w-b", -1801, -1800, "succeeded", 60, null, 0),
        new(9, 1, "w-a", -1850, -1800, "succeeded", 70, null, 0),
        new(9, 2, "w-b", -1820, -1801, "succeeded", 80, null, 0),
        new(10, 1, "w-old", -1850, -1820, "abandoned", null, null, 0),
        new(10, 2, "w-a", -1820, -1800, "succeeded", 90, null, 0),
        new(11, 1, "w-old", -1850, -1820, "abandoned", null, null, 0),
        new(11, 2, "w-old", -1820, null, "running", null, null, 0),
    ];

    [Fact]
    public async Task ThroughputPerMinute_HasSixtyMinutes_WithTheTasksFinishedInEach()
    {
        var b = await InsertDataSetAsync();

        var rows = await ListAsync(
            "SELECT minute, finished, succeeded, failed, timed_out, cancelled, per_second FROM fleet.v_throughput_per_minute",
            r => (Minute: r.GetFieldValue<DateTimeOffset>(0), Counts: (r.GetInt64(1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4), r.GetInt64(5)), PerSecond: r.GetDecimal(6)));

        Assert.Equal(60, rows.Count);
        Assert.Equal(59, (rows.Max(r => r.Minute) - rows.Min(r => r.Minute)).TotalMinutes);
        var byMinute = rows.ToDictionary(r => r.Minute);

        // B-5 min: tasks 1, 2, 3 succeeded, 6 timed out, 7 cancelled. B-2 min: task 4 failed. B-30 min: 8, 9, 10.
        Assert.Equal((5L, 3L, 0L, 1L, 1L), byMinute[b.AddMinutes(-5)].Counts);
        Assert.Equal(0.08m, byMinute[b.AddMinutes(-5)].PerSecond);
        Assert.Equal((1L, 0L, 1L, 0L, 0L), byMinute[b.AddMinutes(-2)].Counts);
        Assert.Equal((3L, 3L, 0L, 0L, 0L), byMinute[b.AddMinutes(-30)].Counts);
        Assert.Equal(9, rows.Sum(r => r.Counts.Item1));
    }

    [Fact]
    public async Task TypeStats_CountStatesFailureRateAndPercentiles_OfTheLast24Hours()
    {
        await InsertDataSetAsync();

        var rows = (await ListAsync(
            """
            SELECT type, finished, succeeded, failed, timed_out, cancelled, failure_rate, executions,
                   p50_ms, p95_ms, max_ms, avg_cpu_ms, p50_queue_wait_ms, p95_queue_wait_ms
            FROM fleet.v_type_stats
            """,
            r => new
            {
                Type = r.GetString(0),
                Counts = (r.GetInt64(1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4), r.GetInt64(5)),
                FailureRate = r.GetDecimal(6),
                Executions = r.GetInt64(7),
                RunMs = (Nullable(r, 8), Nullable(r, 9), Nullable(r, 10)),
                AvgCpuMs = Nullable(r, 11),
                QueueWaitMs = (Nullable(r, 12), Nullable(r, 13)),
            })).ToDictionary(r => r.Type);

        Assert.Equal(["alpha", "beta", "gamma"], rows.Keys.Order());

        // alpha: tasks 1-4 (task 5 is two days old). Succeeded run times 100, 200, 300: p50 200, p95 = 200 + 0.9 x 100.
        // Queue waits of the first executions 10, 20, 30, 40: p50 25, p95 = 30 + 0.85 x 10.
        var alpha = rows["alpha"];
        Assert.Equal((4L, 3L, 1L, 0L, 0L), alpha.Counts);
        Assert.Equal(0.25m, alpha.FailureRate);
        Assert.Equal(4, alpha.Executions);
        Assert.Equal((200.0m, 290.0m, 300.0m), alpha.RunMs);
        Assert.Equal(100.0m, alpha.AvgCpuMs);
        Assert.Equal((25.0m, 38.5m), alpha.QueueWaitMs);

        // beta: one timed out (counts as a failure), one cancelled (does not), one execution and no success.
        var beta = rows["beta"];
        Assert.Equal((2L, 0L, 0L, 1L, 1L), beta.Counts);
        Assert.Equal(0.5m, beta.FailureRate);
        Assert.Equal(1, beta.Executions);
        Assert.Equal((null, null, null), beta.RunMs);

        // gamma: tasks 8, 9, 10 are final (11 is running), with two executions each; succeeded run times 60, 70, 80,
        // 90: p50 75, p95 = 80 + 0.85 x 10.
        var gamma = rows["gamma"];
        Assert.Equal((3L, 3L, 0L, 0L, 0L), gamma.Counts);
        Assert.Equal(0m, gamma.FailureRate);
        Assert.Equal(6, gamma.Executions);
        Assert.Equal((75.0m, 88.5m, 90.0m), gamma.RunMs);
    }

    [Fact]
    public async Task WorkerStats_ShowLivenessCountersAndTheLast24HoursOfEachWorker()
    {
        await InsertDataSetAsync();

        var rows = (await ListAsync(
            """
            SELECT worker_id, state, live, tasks_succeeded, tasks_skipped, executions_24h, succeeded_24h, failed_24h,
                   avg_ms_24h, p95_ms_24h, cpu_s_24h
            FROM fleet.v_worker_stats WHERE worker_id LIKE 'w-%'
            """,
            r => new
            {
                Id = r.GetString(0),
                State = (r.GetString(1), r.GetBoolean(2)),
                Counters = (r.GetInt64(3), r.GetInt64(4)),
                Executions = (r.GetInt64(5), r.GetInt64(6), r.GetInt64(7)),
                Ms = (Nullable(r, 8), Nullable(r, 9)),
                CpuSeconds = Nullable(r, 10),
            })).ToDictionary(r => r.Id);

        Assert.Equal(["w-a", "w-b", "w-old"], rows.Keys.Order());

        // w-a ran 1, 2 (succeeded 100, 200), 6 (timed out), 8.1 (failed), 9.1 (70), 10.2 (90):
        // average of 70, 90, 100, 200 = 115; p95 = 100 + 0.85 x 100; CPU 40 + 80 ms.
        var a = rows["w-a"];
        Assert.Equal(("running", true), a.State);
        Assert.Equal((4L, 0L), a.Counters);
        Assert.Equal((6L, 4L, 2L), a.Executions);
        Assert.Equal((115.0m, 185.0m), a.Ms);
        Assert.Equal(0.1m, a.CpuSeconds);

        // w-b (stopped) ran 3 (300), 4 (failed), 8.2 (60), 9.2 (80): average 146.67; p95 = 80 + 0.9 x 220.
        var b = rows["w-b"];
        Assert.Equal(("stopped", false), b.State);
        Assert.Equal((3L, 1L), b.Counters);
        Assert.Equal((4L, 3L, 1L), b.Executions);
        Assert.Equal((146.7m, 278.0m), b.Ms);

        // w-old still says running but has been silent for 2 minutes: not live. Its execution of task 5 is two days old.
        var old = rows["w-old"];
        Assert.Equal(("running", false), old.State);
        Assert.Equal((3L, 0L, 0L), old.Executions);
        Assert.Equal((null, null), old.Ms);
    }

    [Fact]
    public async Task DuplicateExecutions_ListOnlyTasksThatRanToAnOutcomeTwice_NotRetriesOrCrashes()
    {
        await InsertDataSetAsync();

        var rows = await ListAsync(
            "SELECT task_id, type, status, attempts, executions, retried, duplicates, abandoned, workers, history FROM fleet.v_duplicate_executions",
            r => (Id: r.GetGuid(0), Type: r.GetString(1), Status: r.GetString(2), Attempts: r.GetInt32(3),
                  Counts: (r.GetInt64(4), r.GetInt64(5), r.GetInt64(6), r.GetInt64(7)),
                  Workers: r.GetFieldValue<string[]>(8), History: r.GetString(9)));

        var row = Assert.Single(rows);
        Assert.Equal((Id(9), "gamma", "succeeded", 2), (row.Id, row.Type, row.Status, row.Attempts));
        Assert.Equal((2L, 0L, 1L, 0L), row.Counts);
        Assert.Equal(["w-a", "w-b"], row.Workers.Order());
        Assert.Equal("1: succeeded on w-a; 2: succeeded on w-b", row.History);
    }

    [Fact]
    public async Task BatchProgress_CountsTheBatch_AndIsReadThroughTheBatchIndex()
    {
        var b = await InsertDataSetAsync();

        var row = Assert.Single(await ListAsync(
            """
            SELECT tasks, queued, running, succeeded, failed, timed_out, cancelled, percent_done,
                   first_submitted_at, last_finished_at, wall_seconds, tasks_per_second
            FROM fleet.v_batch_progress WHERE batch_id = @batch
            """,
            r => new
            {
                Counts = (r.GetInt64(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4), r.GetInt64(5), r.GetInt64(6)),
                PercentDone = r.GetDecimal(7),
                Span = (r.GetFieldValue<DateTimeOffset>(8), r.GetFieldValue<DateTimeOffset>(9)),
                WallSeconds = r.GetDecimal(10),
                PerSecond = r.GetDecimal(11),
            },
            ("batch", Batch)));

        // Tasks 1, 2 (succeeded), 4 (failed), 6 (timed out) and 12 (queued): 4 of 5 final. First submit B-301 s
        // (tasks 1, 2, 4, 6), last finish B-115 s (task 4): 186 s; 4 / 186 = 0.02 tasks/s.
        Assert.Equal((5L, 1L, 0L, 2L, 1L, 1L, 0L), row.Counts);
        Assert.Equal(80.0m, row.PercentDone);
        Assert.Equal((b.AddSeconds(-301), b.AddSeconds(-115)), row.Span);
        Assert.Equal(186.000m, row.WallSeconds);
        Assert.Equal(0.0m, row.PerSecond);

        // The filter reaches the table under the GROUP BY, so a batch is read through its index however big the table.
        // (Seq scans off: on a dozen rows the planner would rightly prefer one, which says nothing about big tables.)
        await using var connection = await Fleet.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var noSeqScan = new NpgsqlCommand("SET LOCAL enable_seqscan = off", connection, transaction))
        {
            await noSeqScan.ExecuteNonQueryAsync();
        }

        await using var explain = new NpgsqlCommand("EXPLAIN SELECT * FROM fleet.v_batch_progress WHERE batch_id = @batch", connection, transaction);
        explain.Parameters.AddWithValue("batch", Batch);
        await using var reader = await explain.ExecuteReaderAsync();
        var plan = new List<string>();
        while (await reader.ReadAsync())
        {
            plan.Add(reader.GetString(0));
        }

        Assert.Contains("ix_tasks_batch", string.Join('\n', plan), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SchemaVersion_IsTheNumberOfAppliedMigrations()
    {
        var options = new DbContextOptionsBuilder<FleetDbContext>();
        options.UseFleetNpgsql(Fleet.DataSource);
        await using var db = new FleetDbContext(options.Options);
        var migrations = db.Database.GetMigrations().ToList();

        var (version, migration) = Assert.Single(await ListAsync("SELECT version, migration_id FROM fleet.schema_version", r => (r.GetInt32(0), r.GetString(1))));

        Assert.True(version >= 3, $"schema version {version}: the views arrived in version 3");
        Assert.Equal(migrations.Count, version);
        Assert.Equal(migrations[^1], migration);
    }

    private static Guid Id(int n) => Guid.Parse($"00000000-0000-0000-0000-{n:D12}");

    private static decimal? Nullable(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetDecimal(ordinal);

    /// <summary>Writes the data set in one transaction (one <c>now()</c>) and returns B, the start of its minute.</summary>
    private async Task<DateTimeOffset> InsertDataSetAsync()
    {
        await using var connection = await Fleet.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new("""
                    INSERT INTO fleet.workers (id, host, pid, queues, cpu_concurrency, io_concurrency, started_at, last_seen_at, state,
                                               tasks_succeeded, tasks_failed, tasks_skipped)
                    VALUES ('w-a', 'host-a', 1, '{fleet-cpu,fleet-io}', 2, 64, now() - interval '1 hour', now(), 'running', 4, 2, 0),
                           ('w-b', 'host-b', 2, '{fleet-cpu,fleet-io}', 2, 64, now() - interval '1 hour', now() - interval '10 minutes', 'stopped', 3, 1, 1),
                           ('w-old', 'host-c', 3, '{fleet-cpu,fleet-io}', 2, 64, now() - interval '3 days', now() - interval '2 minutes', 'running', 0, 0, 0)
                    """),
                new("""
                    INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority, batch_id, submitted_at, published_at, finished_at)
                    SELECT t.id, t.type, 'fleet-cpu', t.status, '{}', t.attempts, 0, t.batch_id,
                           b + make_interval(secs => t.submitted), b + make_interval(secs => t.submitted), b + make_interval(secs => t.finished)
                    FROM date_trunc('minute', now()) AS b,
                         unnest(@id, @type, @status, @attempts, @batch_id, @submitted, @finished) AS t(id, type, status, attempts, batch_id, submitted, finished)
                    """)
                {
                    Parameters =
                    {
                        Array("id", NpgsqlDbType.Uuid, Tasks.Select(t => Id(t.N))),
                        Array("type", NpgsqlDbType.Text, Tasks.Select(t => t.Type)),
                        Array("status", NpgsqlDbType.Text, Tasks.Select(t => t.Status)),
                        Array("attempts", NpgsqlDbType.Integer, Tasks.Select(t => t.Attempts)),
                        Array("batch_id", NpgsqlDbType.Uuid, Tasks.Select(t => t.InBatch ? Batch : (Guid?)null)),
                        Array("submitted", NpgsqlDbType.Double, Tasks.Select(t => (double)t.SubmittedS)),
                        Array("finished", NpgsqlDbType.Double, Tasks.Select(t => (double?)t.FinishedS)),
                    },
                },
                new("""
                    INSERT INTO fleet.task_attempts (task_id, attempt, worker_id, started_at, finished_at, outcome, wall_ms, cpu_ms, queue_wait_ms)
                    SELECT a.task_id, a.attempt, a.worker_id, b + make_interval(secs => a.started), b + make_interval(secs => a.finished),
                           a.outcome, a.wall_ms, a.cpu_ms, a.queue_wait_ms
                    FROM date_trunc('minute', now()) AS b,
                         unnest(@task_id, @attempt, @worker_id, @started, @finished, @outcome, @wall_ms, @cpu_ms, @queue_wait_ms)
                             AS a(task_id, attempt, worker_id, started, finished, outcome, wall_ms, cpu_ms, queue_wait_ms)
                    """)
                {
                    Parameters =
                    {
                        Array("task_id", NpgsqlDbType.Uuid, Attempts.Select(a => Id(a.Task))),
                        Array("attempt", NpgsqlDbType.Integer, Attempts.Select(a => a.Attempt)),
                        Array("worker_id", NpgsqlDbType.Text, Attempts.Select(a => a.Worker)),
                        Array("started", NpgsqlDbType.Double, Attempts.Select(a => (double)a.StartedS)),
                        Array("finished", NpgsqlDbType.Double, Attempts.Select(a => (double?)a.FinishedS)),
                        Array("outcome", NpgsqlDbType.Text, Attempts.Select(a => a.Outcome)),
                        Array("wall_ms", NpgsqlDbType.Double, Attempts.Select(a => a.WallMs)),
                        Array("cpu_ms", NpgsqlDbType.Double, Attempts.Select(a => a.CpuMs)),
                        Array("queue_wait_ms", NpgsqlDbType.Double, Attempts.Select(a => a.QueueWaitMs)),
                    },
                },
            },
        };
        await batch.ExecuteNonQueryAsync();
        await using var minute = new NpgsqlCommand("SELECT date_trunc('minute', now())", connection, transaction);
        var b = (DateTime)(await minute.ExecuteScalarAsync())!;
        await transaction.CommitAsync();
        return new DateTimeOffset(b, TimeSpan.Zero);
    }

    private static NpgsqlParameter Array<T>(string name, NpgsqlDbType elementType, IEnumerable<T> values) =>
        new(name, NpgsqlDbType.Array | elementType) { Value = values.ToArray() };

    private sealed record TaskRow(int N, string Type, string Status, int Attempts, bool InBatch, int SubmittedS, int? FinishedS);

    private sealed record AttemptRow(int Task, int Attempt, string Worker, int StartedS, int? FinishedS, string Outcome, double? WallMs, double? CpuMs, double QueueWaitMs);
}
