using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Fleet.Persistence.Scheduling;
using Npgsql;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet schedule add|list|pause|resume|remove</c>: the recurring schedules of <c>fleet.schedules</c>, written
/// straight to PostgreSQL like the other commands, through the same <see cref="ScheduleStore"/> as the API's
/// <c>/schedules</c>. The API's firing loop fires them.
/// </summary>
internal static class ScheduleCommand
{
    /// <summary>The column headings of <c>list</c>, aligned as <see cref="Line"/> aligns the values.</summary>
    internal static readonly string Header = string.Create(CultureInfo.InvariantCulture,
        $"{"NAME",-24} {"CRON",-20} {"TIME ZONE",-18} {"STATE",-7} {"NEXT",-20} {"LAST",-20} LAST TASK");

    public static Command Create() => new("schedule", "Recurring schedules: each fire time of a cron expression creates one task.")
    {
        AddCommand(), ListCommand(), PauseCommand(), ResumeCommand(), RemoveCommand(),
    };

    private static Command AddCommand()
    {
        var name = new Argument<string>("name") { Description = $"The schedule's name: {ScheduleNames.Rule}." };
        var cron = new Option<string>("--cron") { Description = "Cron expression: 5 fields, or 6 with seconds first (\"*/10 * * * * *\").", Required = true };
        var timeZone = new Option<string>("--time-zone") { Description = "IANA time zone of the expression.", DefaultValueFactory = _ => CronSchedule.DefaultTimeZone };
        var type = new Option<string>("--type", "-t") { Description = "The task type each firing submits.", Required = true };
        var payload = new Option<string>("--payload", "-p") { Description = "The task payload as a JSON object.", DefaultValueFactory = _ => "{}" };
        var command = new Command("add", "Add a schedule; prints it with its first fire time.") { name, cron, timeZone, type, payload };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var scheduleName = parse.GetValue(name)!;
            if (!ScheduleNames.IsValid(scheduleName))
            {
                throw new CliException($"the name must be {ScheduleNames.Rule}");
            }

            var expression = parse.GetValue(cron)!.Trim();
            var zone = parse.GetValue(timeZone)!.Trim();
            var (schedule, cronError, zoneError) = CronSchedule.Parse(expression, zone);
            if (schedule is null)
            {
                throw new CliException(cronError is not null ? $"--cron: {cronError}" : $"--time-zone: {zoneError}");
            }

            JsonNode? payloadNode;
            try
            {
                payloadNode = JsonNode.Parse(parse.GetValue(payload) ?? "{}");
            }
            catch (JsonException ex)
            {
                throw new CliException($"--payload is not valid JSON: {ex.Message}");
            }

            if (payloadNode is not JsonObject)
            {
                throw new CliException("--payload must be a JSON object");
            }

            // The task request as POST /tasks takes it; the API reads it so at each firing (an unknown type is logged then).
            var task = new JsonObject { ["type"] = parse.GetValue(type), ["payload"] = payloadNode }.ToJsonString();
            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            var row = await new ScheduleStore(dataSource).AddAsync(scheduleName, expression, zone, schedule, task, DateTimeOffset.UtcNow, ct).ConfigureAwait(false)
                ?? throw new CliException($"a schedule named '{scheduleName}' exists; remove it first");
            Print(row);
            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command ListCommand()
    {
        var command = new Command("list", "List schedules with their state and next and last fire times.");
        command.SetAction((_, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            Console.WriteLine(Header);
            foreach (var row in await new ScheduleStore(dataSource).ListAsync(ct).ConfigureAwait(false))
            {
                Console.WriteLine(Line(row));
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command PauseCommand() => NamedAction("pause", "Pause a schedule: it fires nothing until resumed.", (store, name, ct) => store.PauseAsync(name, DateTimeOffset.UtcNow, ct));

    private static Command ResumeCommand() => NamedAction(
        "resume", "Resume a schedule from its first fire time after now (ticks missed while paused are not fired).",
        (store, name, ct) => store.ResumeAsync(name, DateTimeOffset.UtcNow, ct));

    private static Command RemoveCommand()
    {
        var name = new Argument<string>("name") { Description = "The schedule's name." };
        var command = new Command("remove", "Remove a schedule; the tasks it created stay.") { name };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            if (!await new ScheduleStore(dataSource).RemoveAsync(parse.GetValue(name)!, ct).ConfigureAwait(false))
            {
                await Console.Error.WriteLineAsync($"fleet: no schedule {parse.GetValue(name)}").ConfigureAwait(false);
                return 1;
            }

            Console.WriteLine($"removed {parse.GetValue(name)}");
            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>A command that changes one schedule by name and prints it; exit 1 when there is none.</summary>
    private static Command NamedAction(string verb, string description, Func<ScheduleStore, string, CancellationToken, Task<ScheduleRow?>> action)
    {
        var name = new Argument<string>("name") { Description = "The schedule's name." };
        var command = new Command(verb, description) { name };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            var row = await action(new ScheduleStore(dataSource), parse.GetValue(name)!, ct).ConfigureAwait(false);
            if (row is null)
            {
                await Console.Error.WriteLineAsync($"fleet: no schedule {parse.GetValue(name)}").ConfigureAwait(false);
                return 1;
            }

            Print(row);
            return 0;
        }, cancellationToken));
        return command;
    }

    private static void Print(ScheduleRow row)
    {
        Console.WriteLine($"name:          {row.Name}");
        Console.WriteLine($"cron:          {row.Cron}");
        Console.WriteLine($"time_zone:     {row.TimeZone}");
        Console.WriteLine($"paused:        {(row.Paused ? "yes" : "no")}");
        Console.WriteLine($"next_fire_at:  {Time(row.NextFireAt)}");
        Console.WriteLine($"last_fired_at: {Time(row.LastFiredAt)}");
        Console.WriteLine($"last_task_id:  {row.LastTaskId?.ToString() ?? "-"}");
        Console.WriteLine($"task:          {row.Task}");
    }

    internal static string Line(ScheduleRow row) => string.Create(CultureInfo.InvariantCulture,
        $"{row.Name,-24} {row.Cron,-20} {row.TimeZone,-18} {(row.Paused ? "paused" : "active"),-7} {Time(row.NextFireAt),-20} {Time(row.LastFiredAt),-20} {row.LastTaskId?.ToString() ?? "-"}");

    private static string Time(DateTimeOffset? time) => time?.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) ?? "-";
}
