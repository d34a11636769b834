using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class ApiSubmissions : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_tasks_batch",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.CreateTable(
                name: "idempotency_keys",
                schema: "fleet",
                columns: table => new
                {
                    key = table.Column<string>(type: "text", nullable: false),
                    request_hash = table.Column<string>(type: "text", nullable: false),
                    task_ids = table.Column<Guid[]>(type: "uuid[]", nullable: false),
                    batch_id = table.Column<Guid>(type: "uuid", nullable: true),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_idempotency_keys", x => x.key);
                });

            migrationBuilder.CreateIndex(
                name: "ix_tasks_batch",
                schema: "fleet",
                table: "tasks",
                columns: new[] { "batch_id", "submitted_at", "id" },
                filter: "batch_id IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ix_idempotency_keys_created",
                schema: "fleet",
                table: "idempotency_keys",
                column: "created_at");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "idempotency_keys",
                schema: "fleet");

            migrationBuilder.DropIndex(
                name: "ix_tasks_batch",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_batch",
                schema: "fleet",
                table: "tasks",
                column: "batch_id",
                filter: "batch_id IS NOT NULL");
        }
    }
}
