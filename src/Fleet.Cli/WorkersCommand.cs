using System.CommandLine;
using System.Globalization;
using Npgsql;

namespace Fleet.Cli;

/// <summary><c>fleet workers</c>: one line per worker process from <c>fleet.workers</c>, live ones first.</summary>
internal static class WorkersCommand
{
    /// <summary>The column headings, aligned as <see cref="Line"/> aligns the values.</summary>
    internal static readonly string Header = string.Create(CultureInfo.InvariantCulture,
        $"{"ID",-36} {"HOST",-16} {"PID",7} {"QUEUES",-18} {"CPU",4} {"IO",5} {"PROC",7} {"STATE",-9} {"SEEN",7} {"OK",9} {"FAILED",7} {"SKIPPED",7} {"STARTS",7} {"KILLS",6} {"DEATHS",6}");

    private const string Sql = """
        SELECT id, host, pid, array_to_string(queues, ','), cpu_concurrency, io_concurrency, state,
               extract(epoch FROM now() - last_seen_at)::float8, tasks_succeeded, tasks_failed, tasks_skipped,
               process_slots, process_busy, process_children_started, process_kills, process_deaths
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
            Console.WriteLine(Header);
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                var row = new WorkerRow(
                    reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.GetString(3), reader.GetInt32(4), reader.GetInt32(5),
                    reader.GetString(6), reader.GetDouble(7), reader.GetInt64(8), reader.GetInt64(9), reader.GetInt64(10),
                    reader.GetInt32(11), reader.GetInt32(12), reader.GetInt64(13), reader.GetInt64(14), reader.GetInt64(15));
                Console.WriteLine(Line(row, parse.GetValue(staleSeconds)));
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>
    /// One worker's line. <c>PROC</c> is the process lane's busy/slots, <c>STARTS</c>, <c>KILLS</c> and <c>DEATHS</c> count
    /// its child processes; all four are <c>-</c> for a worker without a process lane, so that its zeros are not read
    /// as a lane that never failed.
    /// </summary>
    internal static string Line(WorkerRow w, int staleSeconds)
    {
        var state = w.State != "stopped" && w.SeenSecondsAgo > staleSeconds ? "stale" : w.State;
        var lane = w.ProcessSlots > 0;
        var proc = lane ? string.Create(CultureInfo.InvariantCulture, $"{w.ProcessBusy}/{w.ProcessSlots}") : "-";
        var starts = lane ? w.ProcessChildrenStarted.ToString(CultureInfo.InvariantCulture) : "-";
        var kills = lane ? w.ProcessKills.ToString(CultureInfo.InvariantCulture) : "-";
        var deaths = lane ? w.ProcessDeaths.ToString(CultureInfo.InvariantCulture) : "-";
        return string.Create(CultureInfo.InvariantCulture,
            $"{w.Id,-36} {w.Host,-16} {w.Pid,7} {w.Queues,-18} {w.CpuConcurrency,4} {w.IoConcurrency,5} {proc,7} {state,-9} {w.SeenSecondsAgo,6:0}s {w.Succeeded,9} {w.Failed,7} {w.Skipped,7} {starts,7} {kills,6} {deaths,6}");
    }

    /// <summary>A <c>fleet.workers</c> row as the command reads it; <see cref="SeenSecondsAgo"/> on the database's clock.</summary>
    internal sealed record WorkerRow(
        string Id, string Host, int Pid, string Queues, int CpuConcurrency, int IoConcurrency, string State, double SeenSecondsAgo,
        long Succeeded, long Failed, long Skipped, int ProcessSlots, int ProcessBusy, long ProcessChildrenStarted, long ProcessKills, long ProcessDeaths);
}
