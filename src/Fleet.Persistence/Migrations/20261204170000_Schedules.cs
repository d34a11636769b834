using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <summary>
    /// Schema version 8: <c>fleet.schedules</c>, the recurring schedules (docs/scheduling.md), with the
    /// partial index of the firing loop's "what is due", and its grants: <c>fleet_api</c> creates, pauses, fires and
    /// removes schedules; <c>fleet_readonly</c> reads them; <c>fleet_worker</c> gets nothing.
    /// </summary>
    public partial class Schedules : Migration
    {
        private const string GrantSql = """
            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_api') THEN
                    GRANT SELECT, INSERT, UPDATE, DELETE ON fleet.schedules TO fleet_api;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_readonly') THEN
                    -- Already so through bootstrap.sql's default privileges when the owner migrates; explicit for a
                    -- migrator that runs as another role.
                    GRANT SELECT ON fleet.schedules TO fleet_readonly;
                END IF;
            END
            $$;
            """;

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "schedules",
                schema: "fleet",
                columns: table => new
                {
                    name = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    cron = table.Column<string>(type: "text", nullable: false),
                    time_zone = table.Column<string>(type: "text", nullable: false, defaultValue: "UTC"),
                    task = table.Column<string>(type: "jsonb", nullable: false),
                    paused = table.Column<bool>(type: "boolean", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    updated_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    next_fire_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    last_fired_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    last_task_id = table.Column<Guid>(type: "uuid", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_schedules", x => x.name);
                });

            migrationBuilder.CreateIndex(
                name: "ix_schedules_due",
                schema: "fleet",
                table: "schedules",
                column: "next_fire_at",
                filter: "NOT paused");

            migrationBuilder.Sql(GrantSql);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "schedules",
                schema: "fleet");
        }
    }
}
