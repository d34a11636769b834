using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class InitialSchema : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.EnsureSchema(
                name: "fleet");

            migrationBuilder.CreateTable(
                name: "task_attempts",
                schema: "fleet",
                columns: table => new
                {
                    task_id = table.Column<Guid>(type: "uuid", nullable: false),
                    attempt = table.Column<int>(type: "integer", nullable: false),
                    worker_id = table.Column<string>(type: "text", nullable: false),
                    started_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    finished_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    outcome = table.Column<string>(type: "text", nullable: false),
                    error_type = table.Column<string>(type: "text", nullable: true),
                    error_message = table.Column<string>(type: "text", nullable: true),
                    wall_ms = table.Column<double>(type: "double precision", nullable: true),
                    cpu_ms = table.Column<double>(type: "double precision", nullable: true),
                    queue_wait_ms = table.Column<double>(type: "double precision", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_task_attempts", x => new { x.task_id, x.attempt });
                });

            migrationBuilder.CreateTable(
                name: "tasks",
                schema: "fleet",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    type = table.Column<string>(type: "text", nullable: false),
                    queue = table.Column<string>(type: "text", nullable: false),
                    status = table.Column<string>(type: "text", nullable: false),
                    payload = table.Column<string>(type: "jsonb", nullable: false),
                    result = table.Column<string>(type: "jsonb", nullable: true),
                    error_type = table.Column<string>(type: "text", nullable: true),
                    error_message = table.Column<string>(type: "text", nullable: true),
                    attempts = table.Column<int>(type: "integer", nullable: false),
                    max_attempts = table.Column<int>(type: "integer", nullable: false, defaultValue: 3),
                    timeout_seconds = table.Column<int>(type: "integer", nullable: true),
                    priority = table.Column<int>(type: "integer", nullable: false),
                    batch_id = table.Column<Guid>(type: "uuid", nullable: true),
                    submitted_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    published_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    started_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    finished_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    worker_id = table.Column<string>(type: "text", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_tasks", x => x.id);
                    table.CheckConstraint("ck_tasks_status", "status IN ('queued','running','succeeded','failed','timed_out','cancelled')");
                });

            migrationBuilder.CreateTable(
                name: "workers",
                schema: "fleet",
                columns: table => new
                {
                    id = table.Column<string>(type: "text", nullable: false),
                    host = table.Column<string>(type: "text", nullable: false),
                    pid = table.Column<int>(type: "integer", nullable: false),
                    queues = table.Column<string[]>(type: "text[]", nullable: false),
                    cpu_concurrency = table.Column<int>(type: "integer", nullable: false),
                    io_concurrency = table.Column<int>(type: "integer", nullable: false),
                    started_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    last_seen_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    state = table.Column<string>(type: "text", nullable: false),
                    tasks_succeeded = table.Column<long>(type: "bigint", nullable: false),
                    tasks_failed = table.Column<long>(type: "bigint", nullable: false),
                    tasks_skipped = table.Column<long>(type: "bigint", nullable: false),
                    version = table.Column<string>(type: "text", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_workers", x => x.id);
                });

            migrationBuilder.CreateIndex(
                name: "ix_task_attempts_worker_started",
                schema: "fleet",
                table: "task_attempts",
                columns: new[] { "worker_id", "started_at" });

            migrationBuilder.CreateIndex(
                name: "ix_tasks_batch",
                schema: "fleet",
                table: "tasks",
                column: "batch_id",
                filter: "batch_id IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_finished",
                schema: "fleet",
                table: "tasks",
                column: "finished_at",
                filter: "finished_at IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_status_submitted",
                schema: "fleet",
                table: "tasks",
                columns: new[] { "status", "submitted_at", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_tasks_type_submitted",
                schema: "fleet",
                table: "tasks",
                columns: new[] { "type", "submitted_at", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_tasks_unpublished",
                schema: "fleet",
                table: "tasks",
                column: "submitted_at",
                filter: "published_at IS NULL");

            migrationBuilder.CreateIndex(
                name: "ix_workers_last_seen",
                schema: "fleet",
                table: "workers",
                column: "last_seen_at");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "task_attempts",
                schema: "fleet");

            migrationBuilder.DropTable(
                name: "tasks",
                schema: "fleet");

            migrationBuilder.DropTable(
                name: "workers",
                schema: "fleet");
        }
    }
}
