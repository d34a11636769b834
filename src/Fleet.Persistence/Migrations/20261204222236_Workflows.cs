using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <summary>
    /// Schema version 10: workflows and operator control (docs/workflows.md). Chains: <c>tasks.after_task_id</c> and
    /// <c>next_task_id</c> link the steps, and the trigger <c>tr_tasks_chain_step_ended</c> releases the next step
    /// when a step succeeds or cancels the rest when it ends otherwise, whoever writes the final state (worker,
    /// reconciler, API cancel). Fan-in: <c>fleet.batch_callbacks</c> and <c>tasks.after_batch_id</c>. Requeue:
    /// <c>tasks.requeued_from</c>. Unique while active: <c>tasks.unique_key</c> and <c>ux_tasks_unique_active</c>.
    /// Progress: <c>tasks.progress</c>, <c>progress_note</c>, <c>progress_at</c>. Paused queues:
    /// <c>fleet.queue_pauses</c>. <c>fleet.v_waiting_tasks</c> gains the reason <c>previous-step</c>.
    /// </summary>
    public partial class Workflows : Migration
    {
        private const string ChainTriggerViewAndGrantsSql = """
            -- A later step of a chain waits queued and unpublished with not_before = 'infinity' (so neither relay nor
            -- the reconciler takes it) until its previous step is final. Success makes it due now (the due relay or the
            -- dispatcher publishes it); any other end cancels it, which fires this trigger on it in turn and so cancels
            -- the rest of the chain. A trigger, not code in the worker, so that every writer of a final state (worker
            -- completion, reconciler, API cancel, an operator's SQL) moves the chain, in the same transaction.
            -- The WHEN clause is evaluated without calling the function, so a task outside a chain costs nothing more.
            CREATE FUNCTION fleet.chain_step_ended() RETURNS trigger LANGUAGE plpgsql AS $fn$
            BEGIN
                IF NEW.status = 'succeeded' THEN
                    UPDATE fleet.tasks SET not_before = now()
                    WHERE id = NEW.next_task_id AND status = 'queued' AND published_at IS NULL AND not_before = 'infinity';
                ELSE
                    UPDATE fleet.tasks
                    SET status = 'cancelled', finished_at = now(), published_at = coalesce(published_at, now()),
                        error_type = 'ChainStopped',
                        error_message = format('The chain stopped: its previous step %s (%s) ended %s%s.',
                                               NEW.id, NEW.type, NEW.status, coalesce(' (' || NEW.error_type || ')', ''))
                    WHERE id = NEW.next_task_id AND status = 'queued';
                END IF;
                RETURN NULL;
            END
            $fn$;

            CREATE TRIGGER tr_tasks_chain_step_ended
            AFTER UPDATE OF status ON fleet.tasks
            FOR EACH ROW
            WHEN (NEW.next_task_id IS NOT NULL AND OLD.status IN ('queued','running')
                  AND NEW.status IN ('succeeded','failed','timed_out','cancelled'))
            EXECUTE FUNCTION fleet.chain_step_ended();

            CREATE OR REPLACE VIEW fleet.v_waiting_tasks AS
            SELECT t.id, t.type, t.queue, t.tenant, t.priority, t.attempts, t.submitted_at, t.not_before,
                   CASE
                       WHEN t.not_before = 'infinity' AND t.after_task_id IS NOT NULL THEN 'previous-step'
                       WHEN t.not_before > now() AND t.attempts > 0 THEN 'retry'
                       WHEN t.not_before > now() THEN 'delay'
                       WHEN NOT t.dispatched THEN 'publish'
                       ELSE coalesce(
                           (SELECT l.blocked_reason FROM fleet.limits l
                            WHERE l.blocked_reason IS NOT NULL
                              AND ((l.scope = 'type' AND l.key = t.type) OR (l.scope = 'tenant' AND l.key = t.tenant))
                            ORDER BY l.blocked_reason DESC LIMIT 1),
                           CASE WHEN t.tenant IS NOT NULL THEN 'tenant-share' ELSE 'priority' END)
                   END AS waiting_for
            FROM fleet.tasks t
            WHERE t.status = 'queued' AND t.published_at IS NULL;

            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_api') THEN
                    GRANT SELECT, INSERT, UPDATE ON fleet.batch_callbacks TO fleet_api;
                    GRANT SELECT, INSERT, UPDATE, DELETE ON fleet.queue_pauses TO fleet_api;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_worker') THEN
                    GRANT SELECT, UPDATE ON fleet.batch_callbacks TO fleet_worker;
                    GRANT SELECT ON fleet.queue_pauses TO fleet_worker;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_readonly') THEN
                    GRANT SELECT ON fleet.batch_callbacks, fleet.queue_pauses TO fleet_readonly;
                END IF;
            END
            $$;
            """;

        private const string DownSql = """
            DROP TRIGGER tr_tasks_chain_step_ended ON fleet.tasks;
            DROP FUNCTION fleet.chain_step_ended();
            CREATE OR REPLACE VIEW fleet.v_waiting_tasks AS
            SELECT t.id, t.type, t.queue, t.tenant, t.priority, t.attempts, t.submitted_at, t.not_before,
                   CASE
                       WHEN t.not_before > now() AND t.attempts > 0 THEN 'retry'
                       WHEN t.not_before > now() THEN 'delay'
                       WHEN NOT t.dispatched THEN 'publish'
                       ELSE coalesce(
                           (SELECT l.blocked_reason FROM fleet.limits l
                            WHERE l.blocked_reason IS NOT NULL
                              AND ((l.scope = 'type' AND l.key = t.type) OR (l.scope = 'tenant' AND l.key = t.tenant))
                            ORDER BY l.blocked_reason DESC LIMIT 1),
                           CASE WHEN t.tenant IS NOT NULL THEN 'tenant-share' ELSE 'priority' END)
                   END AS waiting_for
            FROM fleet.tasks t
            WHERE t.status = 'queued' AND t.published_at IS NULL;
            """;

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<Guid>(
                name: "after_batch_id",
                schema: "fleet",
                table: "tasks",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "after_task_id",
                schema: "fleet",
                table: "tasks",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "next_task_id",
                schema: "fleet",
                table: "tasks",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<double>(
                name: "progress",
                schema: "fleet",
                table: "tasks",
                type: "double precision",
                nullable: true);

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "progress_at",
                schema: "fleet",
                table: "tasks",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "progress_note",
                schema: "fleet",
                table: "tasks",
                type: "character varying(200)",
                maxLength: 200,
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "requeued_from",
                schema: "fleet",
                table: "tasks",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "unique_key",
                schema: "fleet",
                table: "tasks",
                type: "character varying(200)",
                maxLength: 200,
                nullable: true);

            migrationBuilder.CreateTable(
                name: "batch_callbacks",
                schema: "fleet",
                columns: table => new
                {
                    batch_id = table.Column<Guid>(type: "uuid", nullable: false),
                    task = table.Column<string>(type: "jsonb", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    task_id = table.Column<Guid>(type: "uuid", nullable: false),
                    fired_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    checked_submitted_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    checked_task_id = table.Column<Guid>(type: "uuid", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_batch_callbacks", x => x.batch_id);
                });

            migrationBuilder.CreateTable(
                name: "queue_pauses",
                schema: "fleet",
                columns: table => new
                {
                    queue = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    paused_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    reason = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_queue_pauses", x => x.queue);
                });

            migrationBuilder.CreateIndex(
                name: "ix_tasks_requeued_from",
                schema: "fleet",
                table: "tasks",
                column: "requeued_from",
                filter: "requeued_from IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ux_tasks_unique_active",
                schema: "fleet",
                table: "tasks",
                column: "unique_key",
                unique: true,
                filter: "unique_key IS NOT NULL AND status IN ('queued','running')");

            migrationBuilder.CreateIndex(
                name: "ix_batch_callbacks_pending",
                schema: "fleet",
                table: "batch_callbacks",
                column: "created_at",
                filter: "fired_at IS NULL");

            migrationBuilder.Sql(ChainTriggerViewAndGrantsSql);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(DownSql);

            migrationBuilder.DropTable(
                name: "batch_callbacks",
                schema: "fleet");

            migrationBuilder.DropTable(
                name: "queue_pauses",
                schema: "fleet");

            migrationBuilder.DropIndex(
                name: "ix_tasks_requeued_from",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropIndex(
                name: "ux_tasks_unique_active",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "after_batch_id",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "after_task_id",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "next_task_id",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "progress",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "progress_at",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "progress_note",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "requeued_from",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "unique_key",
                schema: "fleet",
                table: "tasks");
        }
    }
}
