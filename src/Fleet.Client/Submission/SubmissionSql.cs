using Npgsql;
using NpgsqlTypes;

namespace Fleet.Client;

/// <summary>
/// Every statement of the submission pipeline, against <c>fleet.tasks</c> and <c>fleet.idempotency_keys</c>, in one
/// place; the classes that run them bind the parameters named here:
/// <list type="bullet">
/// <item><see cref="TaskStore"/>: <see cref="InsertTasks"/>, <see cref="InsertTasksReturning"/>, <see cref="InsertKey"/>, <see cref="SelectKey"/>;</item>
/// <item><see cref="OutboxPublisher"/>: <see cref="MarkPublished"/>;</item>
/// <item><see cref="OutboxRelay"/>: <see cref="TryLockRelay"/>, <see cref="UnlockRelay"/>, <see cref="SelectUnpublished"/>,
/// <see cref="AnyDue"/>, <see cref="SelectDue"/>.</item>
/// </list>
/// Deleting expired idempotency keys is retention (<c>RetentionService</c> in Fleet.Persistence).
/// </summary>
internal static class SubmissionSql
{
    // ON CONFLICT without a target: a task id that exists (a resubmission) and a schedule firing that already has
    // its task (ux_tasks_schedule_fire, several API replicas firing the same tick) both insert nothing.
    public const string InsertTasks = """
        INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, timeout_seconds, priority, batch_id, submitted_at,
                                 not_before, tenant, schedule_name, scheduled_for, dispatched,
                                 after_task_id, next_task_id, after_batch_id, requeued_from, unique_key)
        SELECT i.id, i.type, i.queue, 'queued', i.payload, 0, i.max_attempts, i.timeout_seconds, i.priority, i.batch_id, i.submitted_at,
               i.not_before, i.tenant, i.schedule_name, i.scheduled_for, i.dispatched,
               i.after_task_id, i.next_task_id, i.after_batch_id, i.requeued_from, i.unique_key
        FROM unnest(@id, @type, @queue, @payload, @max_attempts, @timeout_seconds, @priority, @batch_id, @submitted_at,
                    @not_before, @tenant, @schedule_name, @scheduled_for, @dispatched,
                    @after_task_id, @next_task_id, @after_batch_id, @requeued_from, @unique_key)
            AS i(id, type, queue, payload, max_attempts, timeout_seconds, priority, batch_id, submitted_at,
                 not_before, tenant, schedule_name, scheduled_for, dispatched,
                 after_task_id, next_task_id, after_batch_id, requeued_from, unique_key)
        ON CONFLICT DO NOTHING
        """;

    // For a chunk holding schedule firings only: which rows were inserted, so that a firing whose task exists
    // already is not published under the new id (no row would hold it, and a worker would run it as a new task).
    public const string InsertTasksReturning = InsertTasks + "\nRETURNING id";

    // The active task holding each uniqueKey (ux_tasks_unique_active holds only queued and running tasks).
    public const string SelectUniqueHolders = """
        SELECT unique_key, id FROM fleet.tasks
        WHERE unique_key = ANY(@keys) AND status IN ('queued','running')
        """;

    // In the batch's own transaction, so that the batch watcher never sees a callback before all of its tasks.
    public const string InsertBatchCallback = """
        INSERT INTO fleet.batch_callbacks (batch_id, task, task_id, created_at)
        VALUES (@batch_id, @task, @task_id, now())
        ON CONFLICT (batch_id) DO NOTHING
        """;

    public const string InsertKey = """
        INSERT INTO fleet.idempotency_keys (key, request_hash, task_ids, batch_id, created_at)
        VALUES (@key, @hash, @task_ids, @batch_id, now())
        ON CONFLICT (key) DO NOTHING
        RETURNING key
        """;

    public const string SelectKey =
        "SELECT request_hash, task_ids, batch_id FROM fleet.idempotency_keys WHERE key = @key";

    // SKIP LOCKED: a worker may already be claiming or completing some of these rows (the message arrived before
    // the stamp). Waiting for those locks while holding others deadlocked with the workers' batched statements;
    // and a skipped row needs no stamp, because the claim sets published_at itself (a cancel does too).
    // The null test is a CASE so that the rows are found by primary key only: as "published_at IS NULL" it let the
    // planner read every unstamped task through ix_tasks_unpublished (the whole backlog while workers lag) and
    // join the chunk's ids to them.
    // A row is stamped only while its attempts are what they were when its message was built (@attempts, by position
    // in @id): a task a worker ran and failed into a retry before this stamp came is queued again with published_at
    // null and its next not_before, waiting for the due relay, and must stay so. Rows still at 0 attempts, nearly all
    // of them, skip the lookup.
    public const string MarkPublished = """
        UPDATE fleet.tasks SET published_at = now()
        WHERE id IN (SELECT id FROM fleet.tasks
                     WHERE id = ANY(@id) AND CASE WHEN published_at IS NULL THEN true ELSE false END
                       AND CASE WHEN attempts = 0 THEN true ELSE attempts = (@attempts)[array_position(@id, id)] END
                     FOR UPDATE SKIP LOCKED)
        """;

    // Session level, so that it holds across the relay round's statements; released by UnlockRelay.
    public const string TryLockRelay = "SELECT pg_try_advisory_lock(@key)";

    public const string UnlockRelay = "SELECT pg_advisory_unlock(@key)";

    // Served by the partial index ix_tasks_unpublished (submitted_at WHERE published_at IS NULL AND not_before IS
    // NULL AND NOT dispatched), which holds only submissions still waiting for their confirm; the "not_before IS NULL"
    // and "NOT dispatched" tests are what let the planner use it, and leave delayed tasks to SelectDue and dispatched
    // ones to the dispatcher. A cancelled task gets published_at when it is
    // cancelled, so it leaves the index; the status test is there for tasks that a worker took through another copy
    // meanwhile.
    public const string SelectUnpublished = $"""
        SELECT {TaskRows.Columns}
        FROM fleet.tasks t
        WHERE published_at IS NULL AND not_before IS NULL AND NOT dispatched AND submitted_at < now() - make_interval(secs => @age_seconds)
          AND status = 'queued'
        ORDER BY submitted_at
        LIMIT @limit
        """;

    // The due relay's probe, polled often: the first entry of ix_tasks_due (not_before WHERE published_at IS NULL AND
    // not_before IS NOT NULL AND NOT dispatched), or none. A dispatched task whose time has come is the dispatcher's. PostgreSQL's clock decides, the same one for every process that polls.
    public const string AnyDue = """
        SELECT 1 FROM fleet.tasks
        WHERE published_at IS NULL AND not_before IS NOT NULL AND NOT dispatched AND not_before <= now() AND status = 'queued'
        LIMIT 1
        """;

    // Delayed tasks whose time has come, earliest first, through ix_tasks_due. A cancel stamps published_at, so a
    // cancelled delayed task leaves the index and is never read here.
    public const string SelectDue = $"""
        SELECT {TaskRows.Columns}
        FROM fleet.tasks t
        WHERE published_at IS NULL AND not_before IS NOT NULL AND NOT dispatched AND not_before <= now() AND status = 'queued'
        ORDER BY not_before
        LIMIT @limit
        """;

    /// <summary>An array parameter (the statements above take one value per task).</summary>
    public static NpgsqlParameter Array<T>(string name, NpgsqlDbType elementType, IEnumerable<T> values) =>
        new(name, NpgsqlDbType.Array | elementType) { Value = values.ToArray() };
}
