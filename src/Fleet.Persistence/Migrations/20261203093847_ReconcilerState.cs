using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <summary>
    /// Schema version 4: what the reconciler reads to find tasks whose message is gone: <c>tasks.not_before</c> (a
    /// retry's backoff), <c>tasks.cancel_requested_at</c> (a cancel that outlives its broadcast) and
    /// <c>workers.held_tasks</c> (the tasks a live worker holds, from its heartbeat).
    /// </summary>
    public partial class ReconcilerState : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<Guid[]>(
                name: "held_tasks",
                schema: "fleet",
                table: "workers",
                type: "uuid[]",
                nullable: false,
                defaultValueSql: "'{}'::uuid[]");

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "cancel_requested_at",
                schema: "fleet",
                table: "tasks",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "not_before",
                schema: "fleet",
                table: "tasks",
                type: "timestamp with time zone",
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "held_tasks",
                schema: "fleet",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "cancel_requested_at",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "not_before",
                schema: "fleet",
                table: "tasks");
        }
    }
}
