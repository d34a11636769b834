namespace Fleet.Client;

/// <summary>
/// The dispatcher's statements. Each reads only dispatched tasks, through the partial indexes that hold only them
/// (<c>ix_tasks_dispatch_waiting</c>, <c>ix_tasks_dispatch_age</c>, <c>ix_tasks_dispatch_active</c>): a fleet that
/// uses no tenant, priority or limit pays one index probe per round.
/// </summary>
internal static class DispatchSql
{
    /// <summary>Held by the leading dispatcher for as long as it leads (session level). Spells "fleetDsp".</summary>
    public const long LockKey = 0x666C_6565_7444_7370;

    public const string TryLock = "SELECT pg_try_advisory_lock(@key)";

    public const string Unlock = "SELECT pg_advisory_unlock(@key)";

    // The lanes with waiting dispatched tasks (delayed ones included: their time may have come), one index probe each:
    // a loose index scan over ix_tasks_dispatch_waiting's first column.
    public const string WaitingLanes = """
        WITH RECURSIVE lanes(queue) AS (
            SELECT min(t.queue) FROM fleet.tasks t WHERE t.dispatched AND t.published_at IS NULL
            UNION ALL
            SELECT (SELECT min(t.queue) FROM fleet.tasks t WHERE t.dispatched AND t.published_at IS NULL AND t.queue > l.queue)
            FROM lanes l WHERE l.queue IS NOT NULL
        )
        SELECT l.queue FROM lanes l
        WHERE l.queue IS NOT NULL
          -- A paused lane (fleet.queue_pauses) gets nothing published: its tasks wait here, in order, not in its
          -- dispatch queue, which no worker consumes while it is paused.
          AND NOT EXISTS (SELECT 1 FROM fleet.queue_pauses p WHERE p.queue = l.queue)
        """;

    // What the dispatcher has published and has not ended: per lane, tenant and type, those still in the broker
    // (queued) and those running. Lanes' outstanding counts and the limits' running counts come from it.
    public const string Active = """
        SELECT t.queue, t.tenant, t.type, count(*) FILTER (WHERE t.status = 'queued'), count(*)
        FROM fleet.tasks t
        WHERE t.dispatched AND t.published_at IS NOT NULL AND t.status IN ('queued','running')
        GROUP BY t.queue, t.tenant, t.type
        """;

    // A lane's line of one tenant (or of the tasks without one): up to @k of its highest priority first, and up to
    // @k_old of its oldest, so that a task aged past the others is seen even below them.
    private static string Line(string tenantTest)
    {
        var waiting = $"""
            t.dispatched AND t.published_at IS NULL AND t.queue = @queue AND {tenantTest}
               AND t.status = 'queued' AND (t.not_before IS NULL OR t.not_before <= now())
               AND NOT t.type = ANY(@blocked_types)
            """;
        return $"""
            (SELECT t.id, t.tenant, t.priority, t.submitted_at FROM fleet.tasks t WHERE {waiting}
             ORDER BY t.priority DESC, t.submitted_at LIMIT @k)
            UNION
            (SELECT t.id, t.tenant, t.priority, t.submitted_at FROM fleet.tasks t WHERE {waiting}
             ORDER BY t.submitted_at LIMIT @k_old)
            """;
    }

    // The next tasks of one lane, in dispatch order: the highest effective priority first (the task's priority plus
    // one per @aging_seconds waited, at most 9), and within one priority the tenants in turns: every tenant's first
    // task, then every tenant's second, ... (ties between tenants broken by a per-round salt, so none is always first).
    // The tenants come from a loose index scan (one probe per tenant), each line from its own index range: the cost
    // grows with the tenants waiting and the tasks taken, not with the backlog.
    public static readonly string Next = $"""
        WITH RECURSIVE tenants(tenant) AS (
            SELECT min(t.tenant) FROM fleet.tasks t WHERE t.dispatched AND t.published_at IS NULL AND t.queue = @queue
            UNION ALL
            SELECT (SELECT min(t.tenant) FROM fleet.tasks t
                    WHERE t.dispatched AND t.published_at IS NULL AND t.queue = @queue AND t.tenant > s.tenant)
            FROM tenants s WHERE s.tenant IS NOT NULL
        ), candidates AS (
            SELECT c.* FROM tenants s CROSS JOIN LATERAL ({Line("t.tenant = s.tenant")}) c
            WHERE s.tenant IS NOT NULL AND NOT s.tenant = ANY(@blocked_tenants)
            UNION ALL
            SELECT c.* FROM ({Line("t.tenant IS NULL")}) c
        ), ranked AS (
            SELECT c.id, c.tenant, c.submitted_at,
                   least(9, c.priority + floor(extract(epoch FROM now() - c.submitted_at) / @aging_seconds))::int AS effective
            FROM candidates c
        ), turns AS (
            SELECT r.*, row_number() OVER (PARTITION BY r.tenant ORDER BY r.effective DESC, r.submitted_at) AS turn
            FROM ranked r
        )
        SELECT {TaskRows.Columns}
        FROM turns n JOIN fleet.tasks t ON t.id = n.id
        ORDER BY n.effective DESC, n.turn, md5(coalesce(n.tenant, '') || @salt)
        LIMIT @limit
        """;

    // The limits' blocked state, written when it changes: GET /limits, the dashboard and fleet.v_waiting_tasks read it.
    public const string SetBlocked = """
        UPDATE fleet.limits SET blocked_reason = @reason, blocked_since = CASE WHEN @reason IS NULL THEN NULL ELSE now() END
        WHERE scope = @scope AND key = @key AND blocked_reason IS DISTINCT FROM @reason
        """;
}
