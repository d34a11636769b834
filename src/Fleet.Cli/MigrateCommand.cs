using System.CommandLine;
using Fleet.Persistence;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet migrate</c>: the one-shot migrator. Applies pending EF Core migrations and exits, so N worker replicas
/// never race to migrate at start. Waits for the database to accept connections first (containers start in any order).
/// </summary>
internal static class MigrateCommand
{
    public static Command Create()
    {
        var wait = new Option<int>("--wait-seconds") { Description = "How long to wait for the database to accept connections.", DefaultValueFactory = _ => 60 };
        var command = new Command("migrate", "Create or upgrade the fleet schema (EF Core migrations), then exit.") { wait };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            await WaitForDatabaseAsync(dataSource, TimeSpan.FromSeconds(parse.GetValue(wait)), ct).ConfigureAwait(false);
            var options = new DbContextOptionsBuilder<FleetDbContext>();
            options.UseFleetNpgsql(dataSource);
            await using var db = new FleetDbContext(options.Options);
            var pending = (await db.Database.GetPendingMigrationsAsync(ct).ConfigureAwait(false)).ToList();
            var strategy = db.Database.CreateExecutionStrategy();
            await strategy.ExecuteAsync(async () => await db.Database.MigrateAsync(ct).ConfigureAwait(false)).ConfigureAwait(false);
            Console.WriteLine(pending.Count == 0 ? "fleet schema is up to date" : $"applied {pending.Count} migration(s): {string.Join(", ", pending)}");
            return 0;
        }, cancellationToken));
        return command;
    }

    private static async Task WaitForDatabaseAsync(NpgsqlDataSource dataSource, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + timeout;
        while (true)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (NpgsqlException ex) when (DateTimeOffset.UtcNow < deadline)
            {
                await Console.Error.WriteLineAsync($"waiting for the database: {ex.Message}").ConfigureAwait(false);
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
            }
            catch (NpgsqlException ex)
            {
                throw new CliException($"the database did not accept connections within {timeout.TotalSeconds:0} s: {ex.Message}");
            }
        }
    }
}
