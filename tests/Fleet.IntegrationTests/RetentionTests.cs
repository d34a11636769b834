using System.Diagnostics;
using System.Globalization;
using Fleet.Api.Retention;
using Fleet.IntegrationTests.Support;
using Fleet.Persistence;
using Npgsql;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// <see cref="RetentionService"/> and <c>fleet retention</c>: old final tasks go with their attempts, keys and stale
/// worker rows; open and recent ones stay; workers writing at the same time never wait on its locks. No speed
/// assertion: the times are printed (docs/sql.md quotes them), only a generous "it completes" bound is enforced.
/// </summary>
public sealed class RetentionTests(FleetFixture fleet, ITestOutputHelper output) : FleetTest(fleet)
{
    private const string OldWorker = "retention-old:1:000000";
    private const string ContenderApplication = "retention-contender";

    // One INSERT ... SELECT generate_series statement writes every old task and its attempt row: finished 41 to 51
    // days ago, so all of them are past a 30-day cutoff. Ids are sequential, like the time-ordered ids producers use.
    private const string InsertOldSql = """
        WITH old AS (
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority, submitted_at, published_at,
                                     started_at, finished_at, worker_id)
            SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 'noop', 'fleet-io',
                   (ARRAY['succeeded', 'failed', 'timed_out', 'cancelled'])[1 + g % 4], '{}', 1, 0,
                   ts, ts, ts, ts + interval '1 second', @worker
            FROM (SELECT g, now() - interval '51 days' + g * (interval '10 days' / @rows) AS ts
                  FROM generate_series(1, @rows) AS g) AS s
            RETURNING id, status, started_at, finished_at
        )
        INSERT INTO fleet.task_attempts (task_id, attempt, worker_id, started_at, finished_at, outcome, wall_ms, queue_wait_ms)
        SELECT id, 1, @worker, started_at, finished_at, status, 1, 0 FROM old
        """;

    // Recent final tasks (a day old), open tasks as old as the old ones (never deleted, however old), keys and
    // workers on both sides of the cutoff.
    private const string InsertOthersSql = """
        WITH recent AS (
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority, submitted_at, published_at, started_at, finished_at, worker_id)
            SELECT gen_random_uuid(), 'noop', 'fleet-io', 'succeeded', '{}', 1, 0, ts, ts, ts, ts + interval '1 second', 'retention-recent'
            FROM (SELECT now() - interval '1 day' - g * interval '1 minute' AS ts FROM generate_series(1, 100) AS g) AS s
            RETURNING id, started_at, finished_at
        ), recent_attempts AS (
            INSERT INTO fleet.task_attempts (task_id, attempt, worker_id, started_at, finished_at, outcome, wall_ms, queue_wait_ms)
            SELECT id, 1, 'retention-recent', started_at, finished_at, 'succeeded', 1, 0 FROM recent
        ), open AS (
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority, submitted_at, started_at, worker_id)
            SELECT gen_random_uuid(), 'noop', 'fleet-io', CASE WHEN g <= 3 THEN 'queued' ELSE 'running' END, '{}',
                   CASE WHEN g <= 3 THEN 0 ELSE 1 END, 0, now() - interval '60 days',
                   CASE WHEN g <= 3 THEN NULL ELSE now() - interval '60 days' END, 'retention-open'
            FROM generate_series(1, 6) AS g
            RETURNING id, status, started_at
        ), open_attempts AS (
            INSERT INTO fleet.task_attempts (task_id, attempt, worker_id, started_at, outcome, queue_wait_ms)
            SELECT id, 1, 'retention-open', started_at, 'running', 0 FROM open WHERE status = 'running'
        ), keys AS (
            INSERT INTO fleet.idempotency_keys (key, request_hash, task_ids, created_at)
            VALUES ('old-1', 'h', '{}', now() - interval '40 days'), ('old-2', 'h', '{}', now() - interval '31 days'),
                   ('new', 'h', '{}', now() - interval '1 day')
        ), callbacks AS (
            -- Batches' onComplete rows that fired 40 days and 1 day ago.
            INSERT INTO fleet.batch_callbacks (batch_id, task, created_at, task_id, fired_at)
            VALUES ('00000000-0000-4000-9000-000000000001', '{}', now() - interval '41 days', gen_random_uuid(), now() - interval '40 days'),
                   ('00000000-0000-4000-9000-000000000002', '{}', now() - interval '2 days', gen_random_uuid(), now() - interval '1 day')
        )
        INSERT INTO fleet.workers (id, host, pid, queues, cpu_concurrency, io_concurrency, started_at, last_seen_at, state,
                                   tasks_succeeded, tasks_failed, tasks_skipped)
        VALUES ('old-stopped-1', 'h', 1, '{fleet-io}', 1, 1, now() - interval '41 days', now() - interval '40 days', 'stopped', 0, 0, 0),
               ('old-stopped-2', 'h', 2, '{fleet-io}', 1, 1, now() - interval '41 days', now() - interval '35 days', 'stopped', 0, 0, 0),
               ('old-dead', 'h', 3, '{fleet-io}', 1, 1, now() - interval '41 days', now() - interval '40 days', 'running', 0, 0, 0),
               ('recent-stopped', 'h', 4, '{fleet-io}', 1, 1, now() - interval '2 days', now() - interval '1 day', 'stopped', 0, 0, 0)
        """;

    /// <summary>
    /// Old rows in the big test. 1,000,000 took about 3 minutes on a loaded 2-core machine, too long for every
    /// `make test`; FLEET_RETENTION_ROWS=1000000 runs that size (docs/sql.md has the figures).
    /// </summary>
    private static int OldRows => int.TryParse(Environment.GetEnvironmentVariable("FLEET_RETENTION_ROWS"), CultureInfo.InvariantCulture, out var rows) ? rows : 200_000;

    [Fact]
    public async Task Retention_DeletesOldFinalTasksInBatches_KeepsOpenAndRecentOnes_AndNeverBlocksWorkers()
    {
        var rows = OldRows;
        var clock = Stopwatch.StartNew();
        await ExecuteAsync(InsertOldSql, TimeSpan.FromMinutes(5), ("worker", OldWorker), ("rows", rows));
        var inserted = clock.Elapsed;
        await ExecuteAsync(InsertOthersSql, TimeSpan.FromMinutes(1));
        var queuedId = await ScalarAsync<Guid>("SELECT id FROM fleet.tasks WHERE status = 'queued' AND worker_id = 'retention-open' LIMIT 1");

        // Another session holds one old final task, as a second retention run would: this run must skip it, not wait.
        await using var holder = await Fleet.DataSource.OpenConnectionAsync();
        await using var held = await holder.BeginTransactionAsync();
        await using (var lockOne = new NpgsqlCommand("SELECT id FROM fleet.tasks WHERE worker_id = @worker ORDER BY finished_at LIMIT 1 FOR UPDATE", holder, held))
        {
            lockOne.Parameters.AddWithValue("worker", OldWorker);
            await lockOne.ExecuteScalarAsync();
        }

        // Meanwhile a worker's writes: the real claim and complete statements on fresh tasks, and plain updates of an
        // open task row, from sessions that give up on any lock after 5 s (lock_timeout).
        var contender = new NpgsqlConnectionStringBuilder(Fleet.PostgresConnectionString) { ApplicationName = ContenderApplication, Options = "-c lock_timeout=5000" };
        await using var contenderSource = NpgsqlDataSource.Create(contender.ConnectionString);
        var work = new ContendingWork(contenderSource, Fleet.DataSource, queuedId);
        work.Start();

        clock.Restart();
        var result = await new RetentionService(Fleet.DataSource).DeleteAsync(DateTimeOffset.UtcNow.AddDays(-30)).WaitAsync(TimeSpan.FromMinutes(10));
        var deleting = clock.Elapsed;
        var (cycles, updates, allCycles, slowestCycle, longestLockWait) = await work.StopAsync();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{rows:N0} old tasks + attempts inserted in {inserted.TotalSeconds:0.0} s; retention: {result.Tasks:N0} tasks, {result.Attempts:N0} attempts, {result.IdempotencyKeys} keys, {result.Workers} workers in {result.Batches} batches, {deleting.TotalSeconds:0.0} s"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"meanwhile: {cycles} claim+complete cycles (slowest {slowestCycle.TotalMilliseconds:0} ms), {updates} open-row updates; longest lock wait seen {longestLockWait.TotalMilliseconds:0} ms"));

        Assert.Equal((rows - 1L, rows - 1L, 2L, 1L, 3L), (result.Tasks, result.Attempts, result.IdempotencyKeys, result.BatchCallbacks, result.Workers));
        Assert.True(cycles > 0 && updates > 0, "no worker write finished while retention ran");
        Assert.True(longestLockWait < TimeSpan.FromSeconds(5), $"a worker write waited {longestLockWait.TotalSeconds:0.0} s for a lock");

        Assert.Equal(1L, await CountAsync($"fleet.tasks WHERE worker_id = '{OldWorker}'"));
        Assert.Equal(1L, await CountAsync($"fleet.task_attempts WHERE worker_id = '{OldWorker}'"));
        Assert.Equal(100L, await CountAsync("fleet.tasks WHERE worker_id = 'retention-recent'"));
        Assert.Equal(100L, await CountAsync("fleet.task_attempts WHERE worker_id = 'retention-recent'"));
        Assert.Equal(6L, await CountAsync("fleet.tasks WHERE worker_id = 'retention-open' AND status IN ('queued', 'running')"));
        Assert.Equal(3L, await CountAsync("fleet.task_attempts WHERE worker_id = 'retention-open'"));
        Assert.Equal(allCycles, await CountAsync($"fleet.tasks WHERE worker_id = '{ContendingWork.WorkerId}' AND status = 'succeeded'"));
        Assert.Equal(["new"], await ListAsync("SELECT key FROM fleet.idempotency_keys WHERE key IN ('old-1', 'old-2', 'new')", r => r.GetString(0)));
        Assert.Equal(0L, await CountAsync("fleet.workers WHERE id LIKE 'old-%'"));
        Assert.Equal(1L, await CountAsync("fleet.workers WHERE id = 'recent-stopped'"));
        Assert.Equal(["00000000-0000-4000-9000-000000000002"], await ListAsync("SELECT batch_id::text FROM fleet.batch_callbacks", r => r.GetString(0)));

        await held.CommitAsync();
        var second = await new RetentionService(Fleet.DataSource).DeleteAsync(DateTimeOffset.UtcNow.AddDays(-30));
        Assert.Equal((1L, 1L), (second.Tasks, second.Attempts));
        Assert.Equal(0L, await CountAsync($"fleet.tasks WHERE worker_id = '{OldWorker}'"));
    }

    [Fact]
    public async Task RetentionVerb_DryRunOnlyCounts_ThenDeletesInBatches_AndRefusesABadAge()
    {
        await ExecuteAsync(InsertOldSql, TimeSpan.FromMinutes(1), ("worker", OldWorker), ("rows", 10));

        var dryRun = await FleetCliAsync("retention", "--older-than", "30d", "--dry-run");
        Assert.Equal(0, dryRun.ExitCode);
        Assert.Contains("would delete 10 tasks, 10 attempt rows, 0 idempotency keys, 0 batch callbacks, 0 worker rows", dryRun.Output, StringComparison.Ordinal);
        Assert.Equal(10L, await CountAsync("fleet.tasks"));

        var run = await FleetCliAsync("retention", "--older-than", "720h", "--batch-size", "3");
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("deleted 10 tasks, 10 attempt rows, 0 idempotency keys, 0 batch callbacks, 0 worker rows in 4 batches", run.Output, StringComparison.Ordinal);
        Assert.Equal(0L, await CountAsync("fleet.tasks"));
        Assert.Equal(0L, await CountAsync("fleet.task_attempts"));

        var bad = await FleetCliAsync("retention", "--older-than", "30s");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("not an age like 30d, 12h or 90m", bad.Output, StringComparison.Ordinal);
    }

    /// <summary>
    /// <c>Retention:KeepDays</c> on the API: passes every 0.6 s on the retention login (the owner), none while another
    /// process holds the retention lock (this test's session, as a second API's pass would), then one that deletes
    /// the old rows, keeps the rest, and says so in its log line and on /metrics.
    /// </summary>
    [Fact]
    public async Task ApiWithKeepDays_DeletesOldRowsByItself_OneProcessAtATime()
    {
        await ExecuteAsync(InsertOldSql, TimeSpan.FromMinutes(1), ("worker", OldWorker), ("rows", 50));
        await ExecuteAsync(InsertOthersSql, TimeSpan.FromMinutes(1));

        // By id: the API's relay and the fixture's worker may run these meanwhile (they are open), but never delete them.
        var open = await ListAsync("SELECT id FROM fleet.tasks WHERE worker_id = 'retention-open'", r => r.GetGuid(0));

        await using var otherPass = await Fleet.DataSource.OpenConnectionAsync();
        await AdvisoryLockAsync(otherPass, "pg_advisory_lock");

        var owner = Fleet.Servers.Logins?.Owner.Postgres(Fleet.PostgresConnectionString) ?? Fleet.PostgresConnectionString;
        await using var api = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?>
        {
            ["Retention:KeepDays"] = "30",
            ["Retention:IntervalMinutes"] = "0.01",
            ["Retention:BatchSize"] = "20",
            ["Api:IdempotencyKeyHours"] = "8760", // the relay's own key expiry (24 h) would take the keys first
            [$"ConnectionStrings:{RetentionOptions.ConnectionStringName}"] = owner,
            [$"Logging:LogLevel:{typeof(AutoRetentionService).FullName}"] = "Information",
        });
        using var client = api.CreateClient(ApiHost.ReadKey);
        var metrics = "";
        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await client.GetStringAsync(new Uri("metrics", UriKind.Relative));
            return PrometheusText.Sum(metrics, "fleet_retention_passes_total", "outcome=\"skipped\"") >= 2;
        }, TimeSpan.FromSeconds(30)), $"no skipped passes while the lock was held:\n{PrometheusText.Lines(metrics)}");
        Assert.Null(PrometheusText.Sum(metrics, "fleet_retention_passes_total", "outcome=\"ran\""));
        Assert.Equal(50L, await CountAsync($"fleet.tasks WHERE worker_id = '{OldWorker}'"));

        await AdvisoryLockAsync(otherPass, "pg_advisory_unlock");
        Assert.True(await EventuallyAsync(async () => await CountAsync($"fleet.tasks WHERE worker_id = '{OldWorker}'") == 0, TimeSpan.FromSeconds(30)));
        Assert.Equal(0L, await CountAsync($"fleet.task_attempts WHERE worker_id = '{OldWorker}'"));
        Assert.Equal(100L, await CountAsync("fleet.tasks WHERE worker_id = 'retention-recent'"));
        Assert.Equal(6L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids)", ("ids", open.ToArray())));
        Assert.Equal(["new"], await ListAsync("SELECT key FROM fleet.idempotency_keys WHERE key IN ('old-1', 'old-2', 'new')", r => r.GetString(0)));
        Assert.Equal(1L, await CountAsync("fleet.workers WHERE id LIKE 'old-%' OR id = 'recent-stopped'"));

        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await client.GetStringAsync(new Uri("metrics", UriKind.Relative));
            return PrometheusText.Sum(metrics, "fleet_retention_deleted_total", "table=\"tasks\"") == 50;
        }, TimeSpan.FromSeconds(10)), $"deleted rows not counted:\n{PrometheusText.Lines(metrics)}");
        Assert.Equal(50, PrometheusText.Sum(metrics, "fleet_retention_deleted_total", "table=\"task_attempts\""));
        Assert.Contains(api.Logs.Lines, line => line.Contains(
            "Retention: deleted 50 tasks, 50 attempt rows, 2 idempotency keys, 1 batch callbacks, 3 worker rows", StringComparison.Ordinal));
        Assert.Equal(1, PrometheusText.Sum(metrics, "fleet_retention_deleted_total", "table=\"batch_callbacks\""));
    }

    private static async Task AdvisoryLockAsync(NpgsqlConnection connection, string function)
    {
        await using var command = new NpgsqlCommand($"SELECT {function}(@key)", connection);
        command.Parameters.AddWithValue("key", RetentionService.LockKey);
        await command.ExecuteScalarAsync();
    }

    private Task<long> CountAsync(string from) => ScalarAsync<long>($"SELECT count(*) FROM {from}");

    private async Task ExecuteAsync(string sql, TimeSpan timeout, params (string Name, object Value)[] parameters)
    {
        await using var command = Fleet.DataSource.CreateCommand(sql);
        command.CommandTimeout = (int)timeout.TotalSeconds;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        await command.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// A worker's writes while retention runs, and a sampler of how long any of their statements has been waiting
    /// for a lock (pg_stat_activity, wait_event_type 'Lock'): lock waits, not throughput, are what is measured.
    /// </summary>
    private sealed class ContendingWork(NpgsqlDataSource contender, NpgsqlDataSource observer, Guid openTaskId)
    {
        public const string WorkerId = "retention-contender:1:000000";

        private readonly CancellationTokenSource _stop = new();
        private readonly List<Task> _loops = [];
        private long _cycles;
        private long _updates;
        private TimeSpan _slowestCycle;
        private double _longestLockWaitSeconds;

        public void Start()
        {
            _loops.Add(Task.Run(ClaimAndCompleteAsync));
            _loops.Add(Task.Run(UpdateOpenRowAsync));
            _loops.Add(Task.Run(SampleLockWaitsAsync));
        }

        /// <summary>Cycles and updates done so far (while retention ran), then every cycle once the loops ended.</summary>
        public async Task<(long Cycles, long Updates, long AllCycles, TimeSpan SlowestCycle, TimeSpan LongestLockWait)> StopAsync()
        {
            var cycles = Interlocked.Read(ref _cycles);
            var updates = Interlocked.Read(ref _updates);
            await _stop.CancelAsync();
            await Task.WhenAll(_loops);
            _stop.Dispose();
            return (cycles, updates, Interlocked.Read(ref _cycles), _slowestCycle, TimeSpan.FromSeconds(_longestLockWaitSeconds));
        }

        private async Task ClaimAndCompleteAsync()
        {
            await using var ledger = new TaskLedger(contender, WorkerId, maxOutage: TimeSpan.Zero);
            while (!_stop.IsCancellationRequested)
            {
                var clock = Stopwatch.StartNew();
                var id = Guid.CreateVersion7();
                var now = DateTimeOffset.UtcNow;
                var claim = await ledger.ClaimAsync(new TaskClaim(id, "noop", "fleet-io", "{}", 0, null, now, 3, null, now, Redelivered: false));
                Assert.True(claim.Claimed);
                Assert.True(await ledger.CompleteAsync(new TaskCompletion(
                    id, claim.Attempt, "succeeded", "succeeded", "{}", null, null, now, DateTimeOffset.UtcNow, 1, null)));
                _slowestCycle = clock.Elapsed > _slowestCycle ? clock.Elapsed : _slowestCycle;
                Interlocked.Increment(ref _cycles);
                await Task.Delay(5); // a steady stream, not a loop that takes the CPU retention needs
            }
        }

        private async Task UpdateOpenRowAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                await using var update = contender.CreateCommand("UPDATE fleet.tasks SET priority = priority + 1 WHERE id = @id AND status = 'queued'");
                update.Parameters.AddWithValue("id", openTaskId);
                Assert.Equal(1, await update.ExecuteNonQueryAsync());
                Interlocked.Increment(ref _updates);
                await Task.Delay(10);
            }
        }

        private async Task SampleLockWaitsAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                await using var sample = observer.CreateCommand("""
                    SELECT coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0)::float8
                    FROM pg_stat_activity WHERE application_name = @application AND wait_event_type = 'Lock'
                    """);
                sample.Parameters.AddWithValue("application", ContenderApplication);
                _longestLockWaitSeconds = Math.Max(_longestLockWaitSeconds, (double)(await sample.ExecuteScalarAsync())!);
                await Task.Delay(50);
            }
        }
    }
}
