using System.CommandLine;
using System.Globalization;
using Npgsql;

namespace Fleet.Cli;

/// <summary><c>fleet workers</c>: one line per worker process from <c>fleet.workers</c>, live ones first.</summary>
internal static class WorkersCommand
{
    private const string Sql = """
        SELECT id, host, pid, array_to_string(queues, ','), cpu_concurrency, io_concurrency, state,
               extract(epoch FROM now() - last_seen_at)::float8, tasks_succeeded, tasks_failed, tasks_skipped
        FROM fleet.workers
        WHERE state <> 'stopped' OR last_seen_at > now() - make_interval(mins => @recent_minutes)
        ORDER BY state = 'stopped', last_seen_at DESC
        """;

    public static Command Create()
    {
        var staleSeconds = new Option<int>("--stale-seconds") { Description = "A worker unseen for longer is shown as stale.", DefaultValueFactory = _ => 20 };
        var recent = new Option<int>("--recent-minutes") { Description = "Also list workers stopped within this many minutes.", DefaultValueFactory = _ => 60 };
        var command = new Command("workers", "List worker processes with their lanes, state, last heartbeat and counts.") { staleSeconds, recent };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            await using var cmd = dataSource.CreateCommand(Sql);
            cmd.Parameters.AddWithValue("recent_minutes", parse.GetValue(recent));
            await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
            Console.WriteLine($"{"ID",-36} {"HOST",-16} {"PID",7} {"QUEUES",-18} {"CPU",4} {"IO",5} {"STATE",-9} {"SEEN",7} {"OK",9} {"FAILED",7} {"SKIPPED",7}");
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                var seen = reader.GetDouble(7);
                var state = reader.GetString(6);
                if (state != "stopped" && seen > parse.GetValue(staleSeconds))
                {
                    state = "stale";
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{reader.GetString(0),-36} {reader.GetString(1),-16} {reader.GetInt32(2),7} {reader.GetString(3),-18} {reader.GetInt32(4),4} {reader.GetInt32(5),5} {state,-9} {seen,6:0}s {reader.GetInt64(8),9} {reader.GetInt64(9),7} {reader.GetInt64(10),7}"));
            }

            return 0;
        }, cancellationToken));
        return command;
    }
}
