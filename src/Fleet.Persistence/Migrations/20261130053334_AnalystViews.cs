using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <summary>
    /// Schema version 3: the analysts' views (docs/sql.md), <c>fleet.schema_version</c>, and the partial index
    /// <c>ix_tasks_multi_attempt</c> that <c>fleet.v_duplicate_executions</c> reads.
    /// </summary>
    public partial class AnalystViews : Migration
    {
        // The SQL is written out here, not shared with other code: a migration is a frozen record of one version.
        // Each view is bounded by an index (named in its comment and in docs/sql.md), so it stays cheap on big tables.
        private const string ViewsSql = """
            -- One migration = one schema version, so the version is the count of applied migrations: it cannot drift
            -- from what is applied, and later migrations need not touch this view (migrations are never squashed).
            CREATE VIEW fleet.schema_version AS
            SELECT count(*)::int AS version, max("MigrationId") AS migration_id
            FROM fleet.__ef_migrations_history;

            CREATE VIEW fleet.v_throughput_per_minute AS
            WITH finished AS (
                SELECT date_trunc('minute', finished_at) AS minute, status
                FROM fleet.tasks
                WHERE finished_at >= date_trunc('minute', now()) - interval '59 minutes'
            )
            SELECT m.minute,
                   count(f.status) AS finished,
                   count(*) FILTER (WHERE f.status = 'succeeded') AS succeeded,
                   count(*) FILTER (WHERE f.status = 'failed') AS failed,
                   count(*) FILTER (WHERE f.status = 'timed_out') AS timed_out,
                   count(*) FILTER (WHERE f.status = 'cancelled') AS cancelled,
                   round(count(f.status) / 60.0, 2) AS per_second
            FROM generate_series(date_trunc('minute', now()) - interval '59 minutes', date_trunc('minute', now()), interval '1 minute') AS m(minute)
            LEFT JOIN finished f ON f.minute = m.minute
            GROUP BY m.minute;

            CREATE VIEW fleet.v_type_stats AS
            WITH recent AS (
                SELECT id, type, status
                FROM fleet.tasks
                WHERE finished_at > now() - interval '24 hours'
            ), by_type AS (
                SELECT type,
                       count(*) AS finished,
                       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                       count(*) FILTER (WHERE status = 'failed') AS failed,
                       count(*) FILTER (WHERE status = 'timed_out') AS timed_out,
                       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
                FROM recent
                GROUP BY type
            ), runs AS (
                SELECT r.type,
                       count(*) AS executions,
                       percentile_cont(0.50) WITHIN GROUP (ORDER BY a.wall_ms) FILTER (WHERE a.outcome = 'succeeded') AS p50_ms,
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.wall_ms) FILTER (WHERE a.outcome = 'succeeded') AS p95_ms,
                       max(a.wall_ms) FILTER (WHERE a.outcome = 'succeeded') AS max_ms,
                       avg(a.cpu_ms) FILTER (WHERE a.outcome = 'succeeded') AS avg_cpu_ms,
                       percentile_cont(0.50) WITHIN GROUP (ORDER BY a.queue_wait_ms) FILTER (WHERE a.attempt = 1) AS p50_queue_wait_ms,
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.queue_wait_ms) FILTER (WHERE a.attempt = 1) AS p95_queue_wait_ms
                FROM fleet.task_attempts a
                JOIN recent r ON r.id = a.task_id
                -- The id array makes PostgreSQL read these attempts through pk_task_attempts; a plain join lets it
                -- hash the whole of task_attempts instead, which grows with the table, not with the window.
                WHERE a.task_id = ANY (ARRAY(SELECT id FROM recent))
                GROUP BY r.type
            )
            SELECT b.type, b.finished, b.succeeded, b.failed, b.timed_out, b.cancelled,
                   round((b.failed + b.timed_out)::numeric / b.finished, 4) AS failure_rate,
                   coalesce(r.executions, 0) AS executions,
                   round(r.p50_ms::numeric, 1) AS p50_ms,
                   round(r.p95_ms::numeric, 1) AS p95_ms,
                   round(r.max_ms::numeric, 1) AS max_ms,
                   round(r.avg_cpu_ms::numeric, 1) AS avg_cpu_ms,
                   round(r.p50_queue_wait_ms::numeric, 1) AS p50_queue_wait_ms,
                   round(r.p95_queue_wait_ms::numeric, 1) AS p95_queue_wait_ms
            FROM by_type b
            LEFT JOIN runs r ON r.type = b.type;

            CREATE VIEW fleet.v_worker_stats AS
            SELECT w.id AS worker_id, w.host, w.pid, w.state,
                   w.state <> 'stopped' AND w.last_seen_at > now() - interval '20 seconds' AS live,
                   w.started_at, w.last_seen_at, w.queues, w.cpu_concurrency, w.io_concurrency,
                   w.tasks_succeeded, w.tasks_failed, w.tasks_skipped,
                   r.executions_24h, r.succeeded_24h, r.failed_24h, r.avg_ms_24h, r.p95_ms_24h, r.cpu_s_24h
            FROM fleet.workers w
            CROSS JOIN LATERAL (
                SELECT count(*) AS executions_24h,
                       count(*) FILTER (WHERE a.outcome = 'succeeded') AS succeeded_24h,
                       count(*) FILTER (WHERE a.outcome IN ('failed', 'timed_out')) AS failed_24h,
                       round((avg(a.wall_ms) FILTER (WHERE a.outcome = 'succeeded'))::numeric, 1) AS avg_ms_24h,
                       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY a.wall_ms) FILTER (WHERE a.outcome = 'succeeded'))::numeric, 1) AS p95_ms_24h,
                       round((sum(a.cpu_ms) / 1000)::numeric, 1) AS cpu_s_24h
                FROM fleet.task_attempts a
                WHERE a.worker_id = w.id AND a.started_at > now() - interval '24 hours'
            ) r;

            -- An execution "ran to an outcome" unless it is still running or was abandoned (its worker died). A failed
            -- attempt followed by a later one was retried on purpose; every other extra outcome is a duplicate.
            CREATE VIEW fleet.v_duplicate_executions AS
            SELECT t.id AS task_id, t.type, t.status, t.attempts, t.finished_at,
                   d.executions, d.retried, d.executions - d.retried - 1 AS duplicates, d.abandoned,
                   d.workers, d.history
            FROM fleet.tasks t
            CROSS JOIN LATERAL (
                SELECT count(*) FILTER (WHERE a.outcome IN ('succeeded', 'failed', 'timed_out', 'cancelled')) AS executions,
                       count(*) FILTER (WHERE a.outcome = 'failed' AND a.attempt < t.attempts) AS retried,
                       count(*) FILTER (WHERE a.outcome = 'abandoned') AS abandoned,
                       array_agg(DISTINCT a.worker_id) AS workers,
                       string_agg(a.attempt || ': ' || a.outcome || ' on ' || a.worker_id, '; ' ORDER BY a.attempt) AS history
                FROM fleet.task_attempts a
                WHERE a.task_id = t.id
            ) d
            WHERE t.attempts > 1
              AND d.executions - d.retried > 1;

            CREATE VIEW fleet.v_batch_progress AS
            SELECT batch_id,
                   count(*) AS tasks,
                   count(*) FILTER (WHERE status = 'queued') AS queued,
                   count(*) FILTER (WHERE status = 'running') AS running,
                   count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'timed_out') AS timed_out,
                   count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                   round(100.0 * count(*) FILTER (WHERE status NOT IN ('queued', 'running')) / count(*), 1) AS percent_done,
                   min(submitted_at) AS first_submitted_at,
                   max(finished_at) AS last_finished_at,
                   round(extract(epoch FROM max(finished_at) - min(submitted_at)), 3) AS wall_seconds,
                   round(count(*) FILTER (WHERE status NOT IN ('queued', 'running'))
                         / nullif(extract(epoch FROM max(finished_at) - min(submitted_at)), 0), 1) AS tasks_per_second
            FROM fleet.tasks
            WHERE batch_id IS NOT NULL
            GROUP BY batch_id;
            """;

        private const string CommentsSql = """
            COMMENT ON VIEW fleet.schema_version IS 'Schema version of the fleet interface: the number of applied migrations (docs/sql.md).';
            COMMENT ON VIEW fleet.v_throughput_per_minute IS 'Tasks finished per minute over the last 60 minutes, one row per minute (zeros included). Reads ix_tasks_finished.';
            COMMENT ON VIEW fleet.v_type_stats IS 'Per task type, tasks finished in the last 24 hours: counts by final state, failure rate, run time and queue wait percentiles. Reads ix_tasks_finished and pk_task_attempts.';
            COMMENT ON VIEW fleet.v_worker_stats IS 'One row per worker process: liveness, lifetime counters and its executions of the last 24 hours. Reads ix_task_attempts_worker_started.';
            COMMENT ON VIEW fleet.v_duplicate_executions IS 'Tasks that more than one execution ran to an outcome, not counting failures that were retried. Reads ix_tasks_multi_attempt and pk_task_attempts.';
            COMMENT ON VIEW fleet.v_batch_progress IS 'Per batch: counts by state, percent done, wall time and rate. Filter by batch_id (ix_tasks_batch).';
            """;

        private const string GrantSql = """
            -- bootstrap.sql's default privileges already grant SELECT on every relation the role fleet creates; this grant
            -- also covers a migrator that runs as another role (a superuser, say). Skipped where the role does not exist.
            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_readonly') THEN
                    GRANT SELECT ON fleet.schema_version, fleet.v_throughput_per_minute, fleet.v_type_stats, fleet.v_worker_stats,
                                    fleet.v_duplicate_executions, fleet.v_batch_progress TO fleet_readonly;
                END IF;
            END
            $$;
            """;

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateIndex(
                name: "ix_tasks_multi_attempt",
                schema: "fleet",
                table: "tasks",
                column: "finished_at",
                filter: "attempts > 1");

            migrationBuilder.Sql(ViewsSql);
            migrationBuilder.Sql(CommentsSql);
            migrationBuilder.Sql(GrantSql);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                DROP VIEW IF EXISTS fleet.v_batch_progress;
                DROP VIEW IF EXISTS fleet.v_duplicate_executions;
                DROP VIEW IF EXISTS fleet.v_worker_stats;
                DROP VIEW IF EXISTS fleet.v_type_stats;
                DROP VIEW IF EXISTS fleet.v_throughput_per_minute;
                DROP VIEW IF EXISTS fleet.schema_version;
                """);

            migrationBuilder.DropIndex(
                name: "ix_tasks_multi_attempt",
                schema: "fleet",
                table: "tasks");
        }
    }
}
