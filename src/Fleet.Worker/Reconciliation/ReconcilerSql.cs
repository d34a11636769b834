using Fleet.Client;

namespace Fleet.Worker.Reconciliation;

/// <summary>
/// Every statement the <see cref="TaskReconciler"/> runs against <c>fleet.tasks</c>, <c>fleet.task_attempts</c> and
/// <c>fleet.workers</c>, so that the rules of what counts as lost read in one place.
/// </summary>
internal static class ReconcilerSql
{
    /// <summary>The pass's advisory lock (<see cref="TaskReconciler.LockKey"/>), held to the end of its transaction.</summary>
    public const string TryLock = "SELECT pg_try_advisory_xact_lock(@key)";

    /// <summary>The database's clock: later heartbeats must follow it.</summary>
    public const string Clock = "SELECT clock_timestamp()";

    // Rows locked FOR UPDATE SKIP LOCKED: a claim or a completion in flight on the same row wins, and the next pass
    // looks again. Each closes the task's open attempt: 'abandoned' when its worker died (a crash, charged to the
    // task), 'lost' when the worker lives or stopped cleanly (the message was lost, not the worker).
    public const string ReleaseRunning = $"""
        WITH lost AS (
            SELECT t.id, t.cancel_requested_at IS NOT NULL AS cancel,
                   w.id IS NULL OR (w.state <> 'stopped' AND w.last_seen_at < now() - make_interval(secs => @stale)) AS died
            FROM fleet.tasks t
            LEFT JOIN fleet.workers w ON w.id = t.worker_id
            WHERE t.status = 'running' AND t.started_at < now() - make_interval(secs => @after)
              AND (w.id IS NULL OR w.state = 'stopped' OR w.last_seen_at < now() - make_interval(secs => @stale)
                   OR (w.last_seen_at > t.started_at + interval '2 seconds' AND NOT t.id = ANY(w.held_tasks)))
            ORDER BY t.started_at
            LIMIT @limit
            FOR UPDATE OF t SKIP LOCKED
        ), closed AS (
            UPDATE fleet.task_attempts a
            SET outcome = CASE WHEN l.died THEN 'abandoned' ELSE 'lost' END, finished_at = now()
            FROM lost l
            WHERE a.task_id = l.id AND a.outcome = 'running'
        )
        UPDATE fleet.tasks t
        SET status = CASE WHEN l.cancel THEN 'cancelled' ELSE 'queued' END,
            finished_at = CASE WHEN l.cancel THEN now() END,
            error_type = CASE WHEN l.cancel THEN 'Cancelled' END,
            error_message = CASE WHEN l.cancel THEN @cancelled_reason END,
            published_at = now()
        FROM lost l
        WHERE t.id = l.id
        RETURNING {TaskRows.Columns}, l.cancel
        """;

    // Two ways a queued task is lost. Unpublished (published_at null): a submission whose publish was never confirmed
    // counts from submitted_at; a delayed task or a retry waits there on purpose and counts from its not_before, so
    // only one the due relay left unpublished long after its time is taken (a backup for the relays, never a task
    // still waiting). Published, in a lane with no ready message (a purged queue, a broker that lost the message):
    // counted from its publish, or from its not_before when that is later (a retry an older version parked in a
    // delay queue, whose message comes back at that time). The index ix_tasks_status_submitted serves the status
    // test; the lanes with a backlog are left out before any row is read, so a long backlog is never scanned here.
    // A dispatched task waiting unpublished is the dispatcher's, however long its turn takes: never taken here.
    public const string FindQueued = """
        SELECT t.id
        FROM fleet.tasks t
        WHERE t.status = 'queued'
          AND ((t.published_at IS NULL AND coalesce(t.not_before, t.submitted_at) < now() - make_interval(secs => @after))
               OR (t.queue = ANY(@idle_queues)
                   AND greatest(t.published_at, t.not_before) < now() - make_interval(secs => @after)))
          AND NOT (t.dispatched AND t.published_at IS NULL)
          AND NOT EXISTS (SELECT 1 FROM fleet.workers w
                          WHERE w.state <> 'stopped' AND w.last_seen_at > now() - make_interval(secs => @stale)
                            AND t.id = ANY(w.held_tasks))
        ORDER BY t.submitted_at
        LIMIT @limit
        """;

    public const string ReleaseQueued = $"""
        UPDATE fleet.tasks t
        SET published_at = now(),
            status = CASE WHEN t.cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
            finished_at = CASE WHEN t.cancel_requested_at IS NOT NULL THEN now() END,
            error_type = CASE WHEN t.cancel_requested_at IS NOT NULL THEN 'Cancelled' END,
            error_message = CASE WHEN t.cancel_requested_at IS NOT NULL THEN @cancelled_reason END
        WHERE t.id = ANY(@ids) AND t.status = 'queued'
        RETURNING {TaskRows.Columns}, t.cancel_requested_at IS NOT NULL
        """;

    // Whether every live worker has written a heartbeat since the given moment, so that its held_tasks show any
    // message it received before then.
    public const string HeartbeatsSince = """
        SELECT NOT EXISTS (SELECT 1 FROM fleet.workers w
                           WHERE w.state <> 'stopped' AND w.last_seen_at > now() - make_interval(secs => @stale)
                             AND w.last_seen_at <= @since)
        """;
}
