using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <summary>
    /// Schema version 11: worker groups (docs/worker-groups.md). <c>fleet.queues</c> holds every task queue and its
    /// lane: the built-in lanes, seeded here, and the queues operators declare in the API's <c>Api:Queues</c>, which the
    /// API writes at its start and the workers read to know how to run a queue they serve. <c>fleet_api</c> may update
    /// <c>idempotency_keys.task_ids</c>: a submission whose uniqueKey found an active task records that task's id.
    /// </summary>
    public partial class WorkerGroups : Migration
    {
        private const string SeedAndGrantsSql = """
            INSERT INTO fleet.queues (name, lane) VALUES ('fleet-cpu', 'cpu'), ('fleet-io', 'io');

            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_api') THEN
                    GRANT SELECT, INSERT, UPDATE ON fleet.queues TO fleet_api;
                    -- A submission whose uniqueKey found an active task records that task's id under its idempotency key.
                    GRANT UPDATE (task_ids) ON fleet.idempotency_keys TO fleet_api;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_worker') THEN
                    GRANT SELECT ON fleet.queues TO fleet_worker;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_readonly') THEN
                    GRANT SELECT ON fleet.queues TO fleet_readonly;
                END IF;
            END
            $$;
            """;

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "queues",
                schema: "fleet",
                columns: table => new
                {
                    name = table.Column<string>(type: "character varying(63)", maxLength: 63, nullable: false),
                    lane = table.Column<string>(type: "character varying(8)", maxLength: 8, nullable: false),
                    declared_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    updated_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_queues", x => x.name);
                    table.CheckConstraint("ck_queues_builtin", "name NOT IN ('fleet-cpu','fleet-io') OR lane = CASE name WHEN 'fleet-cpu' THEN 'cpu' ELSE 'io' END");
                    table.CheckConstraint("ck_queues_lane", "lane IN ('cpu','io')");
                    table.CheckConstraint("ck_queues_name", "name ~ '^[a-z][a-z0-9-]{0,62}$'");
                });
            migrationBuilder.Sql(SeedAndGrantsSql);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                DO $$
                BEGIN
                    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_api') THEN
                        REVOKE UPDATE (task_ids) ON fleet.idempotency_keys FROM fleet_api;
                    END IF;
                END
                $$;
                """);
            migrationBuilder.DropTable(
                name: "queues",
                schema: "fleet");
        }
    }
}
