using System.Diagnostics;
using Npgsql;

namespace Fleet.Persistence;

/// <summary>What retention deleted (or, for a dry run, would delete) from the <c>fleet</c> schema.</summary>
public sealed record RetentionResult(
    DateTimeOffset Cutoff,
    long Tasks,
    long Attempts,
    long IdempotencyKeys,
    long Workers,
    int Batches,
    TimeSpan Elapsed,
    bool DryRun)
{
    /// <summary>Fired <c>batch_callbacks</c> rows (a batch's onComplete, created before the cutoff).</summary>
    public long BatchCallbacks { get; init; }
}

/// <summary>
/// Keeps the schema's size bounded: deletes final tasks (succeeded, failed, timed_out, cancelled) that finished
/// before a cutoff together with their <c>task_attempts</c> rows, idempotency keys created before it, batches'
/// <c>batch_callbacks</c> rows that fired before it (the batch's tasks all ended earlier, so they go in the same pass),
/// and worker rows whose last heartbeat is older than it. Queued and running tasks are never touched.
/// <para>
/// It runs beside busy workers: each batch is one short statement (its own transaction) that picks at most
/// <c>batchSize</c> rows, oldest first, through an index (<c>ix_tasks_finished</c>, <c>ix_idempotency_keys_created</c>,
/// <c>ix_workers_last_seen</c>), locks them <c>FOR UPDATE SKIP LOCKED</c> and deletes them. Workers only ever update
/// open tasks, so they never wait on these locks, and two retention runs share the work instead of queueing behind
/// each other. The cost of a batch does not grow with the table (measured in docs/sql.md).
/// </para>
/// Used by <c>fleet retention</c>, and by the API's automatic retention (<c>Retention:KeepDays</c>) through
/// <see cref="DeleteExclusiveAsync"/>. The API's relay also expires idempotency keys on its own, more often and by
/// age (<see cref="DeleteExpiredIdempotencyKeysAsync"/>).
/// </summary>
public sealed class RetentionService(NpgsqlDataSource dataSource)
{
    public const int DefaultBatchSize = 5_000;

    /// <summary>
    /// The PostgreSQL advisory lock (session level) an automatic pass holds from its first batch to its last, so that
    /// one process of the fleet runs a pass at a time. The value spells "fleetRet" in ASCII.
    /// </summary>
    public const long LockKey = 0x666C_6565_7452_6574;

    // `status NOT IN (open states)` rather than a list of final ones: PostgreSQL then has no status index to pair
    // with, so it walks ix_tasks_finished in order and stops after @limit rows, even before the table has
    // statistics. The ids travel as an array so the deletes use the primary keys, never a join over a whole table.
    private const string DeleteTasksSql = """
        WITH doomed AS (
            SELECT id FROM fleet.tasks
            WHERE finished_at < @cutoff AND status NOT IN ('queued', 'running')
            ORDER BY finished_at
            LIMIT @limit
            FOR UPDATE SKIP LOCKED
        ), attempts AS (
            DELETE FROM fleet.task_attempts WHERE task_id = ANY (ARRAY(SELECT id FROM doomed)) RETURNING 1
        ), tasks AS (
            DELETE FROM fleet.tasks WHERE id = ANY (ARRAY(SELECT id FROM doomed)) RETURNING 1
        )
        SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM attempts)
        """;

    // A key is written with its tasks, so one created before the cutoff belongs to a submission at least that old.
    // (The API already expires keys after Api:IdempotencyKeyHours; this catches databases no API cleans.)
    private const string DeleteKeysSql = """
        DELETE FROM fleet.idempotency_keys
        WHERE key = ANY (ARRAY(SELECT key FROM fleet.idempotency_keys
                               WHERE created_at < @cutoff
                               ORDER BY created_at LIMIT @limit
                               FOR UPDATE SKIP LOCKED))
        """;

    // The API's expiry of keys older than Api:IdempotencyKeyHours, aged on the database's clock that wrote created_at.
    private const string DeleteExpiredKeysSql = """
        DELETE FROM fleet.idempotency_keys
        WHERE key IN (SELECT key FROM fleet.idempotency_keys
                      WHERE created_at < now() - make_interval(secs => @age_seconds)
                      ORDER BY created_at LIMIT @limit)
        """;

    // A callback fires after the last task of its batch ended: one fired before the cutoff belongs to a batch whose
    // tasks go in this pass too. A pending one (its batch still open) is kept whatever its age. The table has a row per
    // batch with an onComplete only, so the scan of the fired ones is a small one.
    private const string DeleteCallbacksSql = """
        DELETE FROM fleet.batch_callbacks
        WHERE batch_id = ANY (ARRAY(SELECT batch_id FROM fleet.batch_callbacks
                                    WHERE fired_at < @cutoff
                                    ORDER BY fired_at LIMIT @limit
                                    FOR UPDATE SKIP LOCKED))
        """;

    // A live worker heartbeats every few seconds, so a row unseen since the cutoff belongs to a process that stopped
    // or died long ago. (Were a live worker's row ever deleted, its next heartbeat would insert it again.)
    private const string DeleteWorkersSql = """
        DELETE FROM fleet.workers
        WHERE id = ANY (ARRAY(SELECT id FROM fleet.workers
                              WHERE last_seen_at < @cutoff
                              ORDER BY last_seen_at LIMIT @limit
                              FOR UPDATE SKIP LOCKED))
        """;

    private const string CountSql = """
        SELECT (SELECT count(*) FROM fleet.tasks WHERE finished_at < @cutoff AND status NOT IN ('queued', 'running')),
               (SELECT count(*) FROM fleet.task_attempts a
                 WHERE a.task_id IN (SELECT id FROM fleet.tasks WHERE finished_at < @cutoff AND status NOT IN ('queued', 'running'))),
               (SELECT count(*) FROM fleet.idempotency_keys WHERE created_at < @cutoff),
               (SELECT count(*) FROM fleet.workers WHERE last_seen_at < @cutoff),
               (SELECT count(*) FROM fleet.batch_callbacks WHERE fired_at < @cutoff)
        """;

    /// <summary>Counts what <see cref="DeleteAsync"/> would delete for <paramref name="cutoff"/>, deleting nothing.</summary>
    public async Task<RetentionResult> CountAsync(DateTimeOffset cutoff, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        await using var command = dataSource.CreateCommand(CountSql);
        command.Parameters.AddWithValue("cutoff", cutoff.ToUniversalTime());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return new RetentionResult(cutoff, reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3), 0, clock.Elapsed, DryRun: true)
        {
            BatchCallbacks = reader.GetInt64(4),
        };
    }

    /// <summary>
    /// Deletes, batch by batch, everything older than <paramref name="cutoff"/> (see the class summary) until a batch
    /// finds nothing left. <paramref name="progress"/> hears the running totals after each batch. Stopping it
    /// midway is safe: every batch committed on its own, and the next run continues where this one stopped.
    /// </summary>
    public async Task<RetentionResult> DeleteAsync(
        DateTimeOffset cutoff,
        int batchSize = DefaultBatchSize,
        IProgress<RetentionResult>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var clock = Stopwatch.StartNew();
        var result = new RetentionResult(cutoff, 0, 0, 0, 0, 0, TimeSpan.Zero, DryRun: false);

        while (true)
        {
            var (tasks, attempts) = await DeleteTaskBatchAsync(cutoff, batchSize, cancellationToken).ConfigureAwait(false);
            if (tasks == 0)
            {
                break;
            }

            result = result with { Tasks = result.Tasks + tasks, Attempts = result.Attempts + attempts, Batches = result.Batches + 1, Elapsed = clock.Elapsed };
            progress?.Report(result);
        }

        for (long keys; (keys = await DeleteBatchAsync(DeleteKeysSql, cutoff, batchSize, cancellationToken).ConfigureAwait(false)) > 0;)
        {
            result = result with { IdempotencyKeys = result.IdempotencyKeys + keys, Batches = result.Batches + 1, Elapsed = clock.Elapsed };
            progress?.Report(result);
        }

        for (long callbacks; (callbacks = await DeleteBatchAsync(DeleteCallbacksSql, cutoff, batchSize, cancellationToken).ConfigureAwait(false)) > 0;)
        {
            result = result with { BatchCallbacks = result.BatchCallbacks + callbacks, Batches = result.Batches + 1, Elapsed = clock.Elapsed };
            progress?.Report(result);
        }

        for (long workers; (workers = await DeleteBatchAsync(DeleteWorkersSql, cutoff, batchSize, cancellationToken).ConfigureAwait(false)) > 0;)
        {
            result = result with { Workers = result.Workers + workers, Batches = result.Batches + 1, Elapsed = clock.Elapsed };
            progress?.Report(result);
        }

        return result with { Elapsed = clock.Elapsed };
    }

    /// <summary>
    /// <see cref="DeleteAsync"/> under <see cref="LockKey"/>, or nothing (null) when another process holds it. Two
    /// passes at once would only share the work (SKIP LOCKED), but N API replicas on the same timer would each scan
    /// the same indexes and log the same pass; with the lock one deletes and the others skip. The lock is held on a
    /// connection of its own while the batches commit on others; if that connection dies, PostgreSQL drops the lock
    /// and another process may start a pass beside this one, which is still safe.
    /// </summary>
    public async Task<RetentionResult?> DeleteExclusiveAsync(DateTimeOffset cutoff, int batchSize = DefaultBatchSize, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (var tryLock = new NpgsqlCommand("SELECT pg_try_advisory_lock(@key)", connection))
        {
            tryLock.Parameters.AddWithValue("key", LockKey);
            if (await tryLock.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not true)
            {
                return null;
            }
        }

        try
        {
            return await DeleteAsync(cutoff, batchSize, progress: null, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // Session level: released explicitly, not left to the pool's reset of the connection.
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock(@key)", connection);
            unlock.Parameters.AddWithValue("key", LockKey);
            await unlock.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>Deletes up to <paramref name="maxKeys"/> idempotency keys older than <paramref name="retention"/>; returns how many.</summary>
    public async Task<int> DeleteExpiredIdempotencyKeysAsync(TimeSpan retention, int maxKeys, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand(DeleteExpiredKeysSql);
        command.Parameters.AddWithValue("age_seconds", retention.TotalSeconds);
        command.Parameters.AddWithValue("limit", maxKeys);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<(long Tasks, long Attempts)> DeleteTaskBatchAsync(DateTimeOffset cutoff, int batchSize, CancellationToken cancellationToken)
    {
        await using var command = CreateBatchCommand(DeleteTasksSql, cutoff, batchSize);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    private async Task<long> DeleteBatchAsync(string sql, DateTimeOffset cutoff, int batchSize, CancellationToken cancellationToken)
    {
        await using var command = CreateBatchCommand(sql, cutoff, batchSize);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private NpgsqlCommand CreateBatchCommand(string sql, DateTimeOffset cutoff, int batchSize)
    {
        var command = dataSource.CreateCommand(sql);
        command.Parameters.AddWithValue("cutoff", cutoff.ToUniversalTime());
        command.Parameters.AddWithValue("limit", batchSize);
        return command;
    }
}
