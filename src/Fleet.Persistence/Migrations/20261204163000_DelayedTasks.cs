using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <summary>
    /// Schema version 7: delayed tasks and the columns schedules write. <c>tasks.tenant</c>,
    /// <c>tasks.schedule_name</c> and <c>tasks.scheduled_for</c> (all nullable, so existing rows need no rewrite);
    /// <c>ix_tasks_unpublished</c> leaves out delayed tasks, which wait unpublished on purpose, and the new
    /// <c>ix_tasks_due</c> holds them in the order the due relay publishes them; the unique
    /// <c>ux_tasks_schedule_fire</c> keeps one task per firing of a schedule. The roles need no new grant: their
    /// table-level <c>SELECT</c> and <c>INSERT</c> cover new columns, and only workers (table-level
    /// <c>UPDATE</c>) update them.
    /// </summary>
    public partial class DelayedTasks : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_tasks_unpublished",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.AddColumn<string>(
                name: "schedule_name",
                schema: "fleet",
                table: "tasks",
                type: "text",
                nullable: true);

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "scheduled_for",
                schema: "fleet",
                table: "tasks",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "tenant",
                schema: "fleet",
                table: "tasks",
                type: "text",
                nullable: true);

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

            migrationBuilder.CreateIndex(
                name: "ux_tasks_schedule_fire",
                schema: "fleet",
                table: "tasks",
                columns: new[] { "schedule_name", "scheduled_for" },
                unique: true,
                filter: "schedule_name IS NOT NULL");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_tasks_due",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropIndex(
                name: "ix_tasks_unpublished",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropIndex(
                name: "ux_tasks_schedule_fire",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "schedule_name",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "scheduled_for",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "tenant",
                schema: "fleet",
                table: "tasks");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_unpublished",
                schema: "fleet",
                table: "tasks",
                column: "submitted_at",
                filter: "published_at IS NULL");
        }
    }
}
