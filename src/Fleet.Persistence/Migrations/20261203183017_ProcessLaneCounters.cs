using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Persistence.Migrations
{
    /// <summary>
    /// Schema version 5: the process lane in <c>workers</c>, from the heartbeat: <c>process_slots</c>,
    /// <c>process_busy</c>, <c>process_children_started</c>, <c>process_kills</c> and <c>process_deaths</c>. Each
    /// defaults to 0, which reads as "no process lane" for the rows of workers that predate it.
    /// </summary>
    public partial class ProcessLaneCounters : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<int>(
                name: "process_busy",
                schema: "fleet",
                table: "workers",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<long>(
                name: "process_children_started",
                schema: "fleet",
                table: "workers",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            migrationBuilder.AddColumn<long>(
                name: "process_deaths",
                schema: "fleet",
                table: "workers",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            migrationBuilder.AddColumn<long>(
                name: "process_kills",
                schema: "fleet",
                table: "workers",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            migrationBuilder.AddColumn<int>(
                name: "process_slots",
                schema: "fleet",
                table: "workers",
                type: "integer",
                nullable: false,
                defaultValue: 0);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "process_busy",
                schema: "fleet",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "process_children_started",
                schema: "fleet",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "process_deaths",
                schema: "fleet",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "process_kills",
                schema: "fleet",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "process_slots",
                schema: "fleet",
                table: "workers");
        }
    }
}
