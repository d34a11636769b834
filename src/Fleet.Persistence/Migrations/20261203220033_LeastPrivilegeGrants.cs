using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <summary>
    /// Schema version 6: what each component's role may do, and nothing more. <c>fleet_worker</c> claims, runs and
    /// records tasks (and inserts the rows of plain-JSON tasks), writes its attempts and its heartbeat;
    /// <c>fleet_api</c> submits (tasks and idempotency keys), stamps and cancels tasks, deletes expired idempotency
    /// keys and reads everything it shows; <c>fleet_readonly</c> reads. Neither may delete a task, an attempt or a
    /// worker row (retention is the owner's job), nor create, alter or drop anything: only the owner (<c>fleet</c>,
    /// the migrator) does DDL. A role that does not exist is skipped, so the migration runs on any server; a table
    /// added later grants nothing to these roles until its migration says so (docs/schema.md, "Roles").
    /// </summary>
    public partial class LeastPrivilegeGrants : Migration
    {
        private const string GrantSql = """
            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_worker') THEN
                    GRANT USAGE ON SCHEMA fleet TO fleet_worker;
                    -- Claims, results, hand-backs and the reconciler's releases; a plain-JSON task's row is inserted on its first claim.
                    GRANT SELECT, INSERT, UPDATE ON fleet.tasks, fleet.task_attempts TO fleet_worker;
                    -- The heartbeat's upsert of its own row; the reconciler reads the others'.
                    GRANT SELECT, INSERT, UPDATE ON fleet.workers TO fleet_worker;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_api') THEN
                    GRANT USAGE ON SCHEMA fleet TO fleet_api;
                    GRANT SELECT, INSERT ON fleet.tasks TO fleet_api;
                    -- The relay's published_at stamp and a cancel's end state: never a task's result or its claim.
                    GRANT UPDATE (published_at, status, finished_at, error_type, error_message, cancel_requested_at) ON fleet.tasks TO fleet_api;
                    GRANT SELECT ON fleet.task_attempts, fleet.workers TO fleet_api;
                    -- Submissions' keys, and the relay's deletion of expired ones.
                    GRANT SELECT, INSERT, DELETE ON fleet.idempotency_keys TO fleet_api;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_readonly') THEN
                    -- Already so through bootstrap.sql's default privileges when the owner migrates; explicit for a
                    -- migrator that runs as another role.
                    GRANT USAGE ON SCHEMA fleet TO fleet_readonly;
                    GRANT SELECT ON ALL TABLES IN SCHEMA fleet TO fleet_readonly;
                END IF;
            END
            $$;
            """;

        private const string RevokeSql = """
            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_worker') THEN
                    REVOKE ALL ON ALL TABLES IN SCHEMA fleet FROM fleet_worker;
                    REVOKE USAGE ON SCHEMA fleet FROM fleet_worker;
                END IF;
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_api') THEN
                    REVOKE ALL ON ALL TABLES IN SCHEMA fleet FROM fleet_api;
                    REVOKE USAGE ON SCHEMA fleet FROM fleet_api;
                END IF;
            END
            $$;
            """;

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder) => migrationBuilder.Sql(GrantSql);

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder) => migrationBuilder.Sql(RevokeSql);
    }
}
