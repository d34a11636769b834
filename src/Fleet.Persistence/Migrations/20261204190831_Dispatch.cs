using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <summary>
    /// Schema version 9: the dispatcher (docs/scheduling.md). <c>tasks.dispatched</c> marks the tasks it publishes
    /// (a tenant, a priority above 0, or a type under a limit); the outbox and due indexes leave them out, and three
    /// partial indexes of their own serve its reads. <c>fleet.limits</c> holds rate and concurrency limits per type and
    /// per tenant; <c>fleet.v_waiting_tasks</c> says why each queued task not yet published waits. Grants:
    /// <c>fleet_api</c> manages limits; <c>fleet_worker</c> reads them and, as the dispatcher, writes their blocked
    /// state; <c>fleet_readonly</c> reads both.
    /// </summary>
    public partial class Dispatch : Migration
    {
        private const string ViewAndGrantsSql = """
            -- Why a queued task is not running yet, for the ones still in PostgreSQL (published_at null). The reasons
            -- are those of GET /tasks/{id}'s waitingFor.
            CREATE VIEW fleet.v_waiting_tasks AS
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

            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_api') THEN
                    GRANT SELECT, INSERT, UPDATE, DELETE ON fleet.limits TO fleet_api;
                    GRANT SELECT ON fleet.v_waiting_tasks TO fleet_api;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_worker') THEN
                    GRANT SELECT ON fleet.limits TO fleet_worker;
                    GRANT UPDATE (blocked_reason, blocked_since) ON fleet.limits TO fleet_worker;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_readonly') THEN
                    GRANT SELECT ON fleet.limits, fleet.v_waiting_tasks TO fleet_readonly;
                END IF;
            END
            $$;
            """;

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_tasks_due",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropIndex(
                name: "ix_tasks_unpublished",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.AddColumn<bool>(
                name: "dispatched",
                schema: "fleet",
                table: "tasks",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            migrationBuilder.CreateTable(
                name: "limits",
                schema: "fleet",
                columns: table => new
                {
                    scope = table.Column<string>(type: "character varying(10)", maxLength: 10, nullable: false),
                    key = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    per_second = table.Column<double>(type: "double precision", nullable: true),
                    burst = table.Column<int>(type: "integer", nullable: true),
                    max_running = table.Column<int>(type: "integer", nullable: true),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    updated_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    blocked_reason = table.Column<string>(type: "text", nullable: true),
                    blocked_since = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_limits", x => new { x.scope, x.key });
                    table.CheckConstraint("ck_limits_blocked", "blocked_reason IS NULL OR blocked_reason IN ('rate-limit','concurrency-limit')");
                    table.CheckConstraint("ck_limits_burst", "burst IS NULL OR burst >= 1");
                    table.CheckConstraint("ck_limits_max_running", "max_running IS NULL OR max_running >= 1");
                    table.CheckConstraint("ck_limits_per_second", "per_second IS NULL OR per_second > 0");
                    table.CheckConstraint("ck_limits_scope", "scope IN ('type','tenant')");
                    table.CheckConstraint("ck_limits_some", "per_second IS NOT NULL OR max_running IS NOT NULL");
                });

            migrationBuilder.CreateIndex(
                name: "ix_tasks_dispatch_active",
                schema: "fleet",
                table: "tasks",
                columns: new[] { "queue", "tenant", "type" },
                filter: "dispatched AND published_at IS NOT NULL AND status IN ('queued','running')");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_dispatch_age",
                schema: "fleet",
                table: "tasks",
                columns: new[] { "queue", "tenant", "submitted_at" },
                filter: "dispatched AND published_at IS NULL");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_dispatch_waiting",
                schema: "fleet",
                table: "tasks",
                columns: new[] { "queue", "tenant", "priority", "submitted_at" },
                descending: new[] { false, false, true, false },
                filter: "dispatched AND published_at IS NULL");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_due",
                schema: "fleet",
                table: "tasks",
                column: "not_before",
                filter: "published_at IS NULL AND not_before IS NOT NULL AND NOT dispatched");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_unpublished",
                schema: "fleet",
                table: "tasks",
                column: "submitted_at",
                filter: "published_at IS NULL AND not_before IS NULL AND NOT dispatched");

            migrationBuilder.Sql(ViewAndGrantsSql);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP VIEW fleet.v_waiting_tasks;");

            migrationBuilder.DropTable(
                name: "limits",
                schema: "fleet");

            migrationBuilder.DropIndex(
                name: "ix_tasks_dispatch_active",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropIndex(
                name: "ix_tasks_dispatch_age",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropIndex(
                name: "ix_tasks_dispatch_waiting",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropIndex(
                name: "ix_tasks_due",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropIndex(
                name: "ix_tasks_unpublished",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "dispatched",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_due",
                schema: "fleet",
                table: "tasks",
                column: "not_before",
                filter: "published_at IS NULL AND not_before IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_unpublished",
                schema: "fleet",
                table: "tasks",
                column: "submitted_at",
                filter: "published_at IS NULL AND not_before IS NULL");
        }
    }
}
