using System.Diagnostics;
using Fleet.IntegrationTests.Support;
using Fleet.Persistence;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using Client = Fleet.Client;

namespace Fleet.IntegrationTests;

/// <summary>
/// The roles that infra/postgres/bootstrap.sql creates: the fleet's writer owns the schema and migrates it; the
/// analysts' read-only role can read every table the migrator creates and can write nothing.
/// </summary>
public sealed class SecurityTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task BootstrapRoles_LetTheWriterMigrate_AndTheReadOnlyRoleOnlyRead()
    {
        var admin = new NpgsqlConnectionStringBuilder(Fleet.Servers.PostgresConnectionString);
        var (writerPassword, readerPassword) = await RunBootstrapAsync(admin);

        var writer = new NpgsqlConnectionStringBuilder(admin.ConnectionString) { Database = "fleet", Username = "fleet", Password = writerPassword };
        await using (var writerSource = NpgsqlDataSource.Create(writer.ConnectionString))
        {
            var options = new DbContextOptionsBuilder<FleetDbContext>();
            options.UseFleetNpgsql(writerSource);
            await using var db = new FleetDbContext(options.Options);
            await db.Database.MigrateAsync();
            await using var insert = writerSource.CreateCommand(
                "INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority) VALUES (gen_random_uuid(), 'noop', 'fleet-io', 'queued', '{}', 0, 0) ON CONFLICT DO NOTHING");
            await insert.ExecuteNonQueryAsync();
        }

        var reader = new NpgsqlConnectionStringBuilder(writer.ConnectionString) { Username = "fleet_readonly", Password = readerPassword };
        await using var readerSource = NpgsqlDataSource.Create(reader.ConnectionString);
        await using (var select = readerSource.CreateCommand("SELECT count(*) FROM fleet.tasks"))
        {
            Assert.True((long)(await select.ExecuteScalarAsync())! >= 1);
        }

        foreach (var sql in new[]
        {
            "INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority) VALUES (gen_random_uuid(), 'noop', 'fleet-io', 'queued', '{}', 0, 0)",
            "UPDATE fleet.tasks SET status = 'cancelled'",
            "DELETE FROM fleet.task_attempts",
            "CREATE TABLE fleet.sneaky (id int)",
        })
        {
            await using var write = readerSource.CreateCommand(sql);
            var ex = await Assert.ThrowsAsync<PostgresException>(() => write.ExecuteNonQueryAsync());
            Assert.Contains(ex.SqlState, new[] { PostgresErrorCodes.ReadOnlySqlTransaction, PostgresErrorCodes.InsufficientPrivilege });
        }
    }

    [Fact]
    public async Task ReadOnlyRole_SelectsEveryView_AndCannotWrite_EvenInAReadWriteTransaction()
    {
        var admin = new NpgsqlConnectionStringBuilder(Fleet.Servers.PostgresConnectionString);
        var (writerPassword, readerPassword) = await RunBootstrapAsync(admin);
        var writer = new NpgsqlConnectionStringBuilder(admin.ConnectionString) { Database = "fleet", Username = "fleet", Password = writerPassword };
        List<string> views;
        await using (var writerSource = NpgsqlDataSource.Create(writer.ConnectionString))
        {
            var options = new DbContextOptionsBuilder<FleetDbContext>();
            options.UseFleetNpgsql(writerSource);
            await using var db = new FleetDbContext(options.Options);
            await db.Database.MigrateAsync();
            views = await ReadColumnAsync(writerSource, "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'fleet' ORDER BY 1");
        }

        Assert.Superset(
            new HashSet<string> { "schema_version", "v_batch_progress", "v_duplicate_executions", "v_throughput_per_minute", "v_type_stats", "v_worker_stats" },
            views.ToHashSet());

        var reader = new NpgsqlConnectionStringBuilder(writer.ConnectionString) { Username = "fleet_readonly", Password = readerPassword };
        await using var readerSource = NpgsqlDataSource.Create(reader.ConnectionString);
        foreach (var view in views)
        {
            await using var select = readerSource.CreateCommand($"SELECT * FROM fleet.{view}");
            await using var rows = await select.ExecuteReaderAsync();
            while (await rows.ReadAsync())
            {
            }
        }

        // The role's sessions are read-only by default, but any session may switch that off; what must stop the writes
        // then is the missing privilege (or, for a view, that it cannot be written at all: "cannot insert into view").
        await using var connection = await readerSource.OpenConnectionAsync();
        foreach (var sql in new[]
        {
            "INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority) VALUES (gen_random_uuid(), 'noop', 'fleet-io', 'queued', '{}', 0, 0)",
            "UPDATE fleet.tasks SET priority = 1",
            "DELETE FROM fleet.task_attempts",
            "DELETE FROM fleet.workers",
            "INSERT INTO fleet.v_batch_progress (batch_id) VALUES (gen_random_uuid())",
            "UPDATE fleet.v_worker_stats SET host = 'x'",
            "DELETE FROM fleet.v_duplicate_executions",
            "DELETE FROM fleet.schema_version",
            "CREATE OR REPLACE VIEW fleet.v_type_stats AS SELECT 1 AS one",
        })
        {
            await using var transaction = await connection.BeginTransactionAsync();
            await using (var readWrite = new NpgsqlCommand("SET TRANSACTION READ WRITE", connection, transaction))
            {
                await readWrite.ExecuteNonQueryAsync();
            }

            await using var write = new NpgsqlCommand(sql, connection, transaction);
            var ex = await Assert.ThrowsAsync<PostgresException>(() => write.ExecuteNonQueryAsync());
            Assert.True(
                ex.SqlState is PostgresErrorCodes.InsufficientPrivilege or PostgresErrorCodes.ObjectNotInPrerequisiteState,
                $"{sql}: {ex.SqlState} {ex.MessageText}");
            await transaction.RollbackAsync();
        }
    }

    private static async Task<List<string>> ReadColumnAsync(NpgsqlDataSource source, string sql)
    {
        await using var command = source.CreateCommand(sql);
        await using var reader = await command.ExecuteReaderAsync();
        var values = new List<string>();
        while (await reader.ReadAsync())
        {
            values.Add(reader.GetString(0));
        }

        return values;
    }

    /// <summary>
    /// Runs bootstrap.sql with every role's password: on servers services.sh made, the ones it set, so that the logins of
    /// the run's workers, API and other tests keep working (the roles are the cluster's); elsewhere fixed ones.
    /// Returns the writer's and the read-only role's.
    /// </summary>
    private async Task<(string Writer, string Reader)> RunBootstrapAsync(NpgsqlConnectionStringBuilder admin)
    {
        var logins = Fleet.Servers.Logins;
        var (writerPassword, readonlyPassword) = logins is null ? ("writer-pw", "reader-pw") : (logins.Owner.PostgresPassword, logins.ReadOnlyPassword);
        var script = Repository.PathTo("infra", "postgres", "bootstrap.sql");
        var info = new ProcessStartInfo("psql")
        {
            ArgumentList =
            {
                "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", $"fleet_password={writerPassword}", "-v", $"readonly_password={readonlyPassword}",
                "-v", $"worker_password={logins?.Worker.PostgresPassword ?? "worker-pw"}", "-v", $"api_password={logins?.Api.PostgresPassword ?? "api-pw"}", "-f", script,
            },
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        info.Environment["PGHOST"] = admin.Host;
        info.Environment["PGPORT"] = admin.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        info.Environment["PGUSER"] = admin.Username;
        info.Environment["PGPASSWORD"] = admin.Password ?? "";
        info.Environment["PGDATABASE"] = admin.Database;
        using var psql = Process.Start(info)!;
        var errors = await psql.StandardError.ReadToEndAsync();
        await psql.WaitForExitAsync();
        Assert.True(psql.ExitCode == 0, $"bootstrap.sql failed: {errors}");
        return (writerPassword, readonlyPassword);
    }

    [Fact]
    public async Task Secrets_NeverAppearInAWorkersLogs_EvenAtDebugLevel()
    {
        await Fleet.StopWorkerAsync();
        const string pgPassword = "pg-Secret-4711-marker";
        var amqpPassword = Uri.UnescapeDataString(Fleet.Servers.RabbitMqUri.UserInfo.Split(':')[1]);
        var settings = Fleet.WorkerSettings("secretive", cpuConcurrency: 1);
        // The servers check passwords, so the marker must be a real one: a role of its own with the test's rights.
        await using (var role = Fleet.DataSource.CreateCommand(
            $"DROP ROLE IF EXISTS secretive; CREATE ROLE secretive LOGIN SUPERUSER PASSWORD '{pgPassword}'"))
        {
            await role.ExecuteNonQueryAsync();
        }

        settings["ConnectionStrings:fleetdb"] = new NpgsqlConnectionStringBuilder(Fleet.PostgresConnectionString) { Username = "secretive", Password = pgPassword }.ConnectionString;
        settings["Logging:LogLevel:Default"] = "Debug";
        settings["Logging:LogLevel:MassTransit"] = "Debug";

        await using (var worker = WorkerProcess.Start(settings))
        {
            var ids = await Fleet.Client.SubmitManyAsync([
                .. StandardRequests.Of("noop", 3),
                Client.TaskRequest.Create("sieve", new { limit = 1_000_000_000_000 }),
            ]);
            await WaitForFinalAsync(ids);
            Assert.Equal(0, await worker.TerminateAsync(TimeSpan.FromSeconds(30)));

            Assert.Contains("registered", worker.Output, StringComparison.Ordinal);
            Assert.DoesNotContain(pgPassword, worker.Output, StringComparison.Ordinal);
            Assert.DoesNotContain(amqpPassword, worker.Output, StringComparison.Ordinal);
        }
    }
}
