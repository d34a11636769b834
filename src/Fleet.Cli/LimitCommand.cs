using System.CommandLine;
using System.Globalization;
using Fleet.Persistence.Limits;
using Npgsql;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet limit set|list|remove</c>: the rate and concurrency limits of <c>fleet.limits</c>, written straight to
/// PostgreSQL like the other commands, through the same <see cref="LimitStore"/> and <see cref="LimitRules"/> as the
/// API's <c>/limits</c>. The dispatcher of every API and worker process reads them again within seconds.
/// </summary>
internal static class LimitCommand
{
    /// <summary>The column headings of <c>list</c>, aligned as <see cref="Line"/> aligns the values.</summary>
    internal static readonly string Header = string.Create(CultureInfo.InvariantCulture,
        $"{"SCOPE",-7} {"KEY",-24} {"PER SECOND",-11} {"BURST",-8} {"MAX RUNNING",-12} {"BLOCKED",-18} SINCE");

    public static Command Create() => new("limit", "Rate and concurrency limits per task type or tenant, enforced fleet-wide by the dispatcher.")
    {
        SetCommand(), ListCommand(), RemoveCommand(),
    };

    private static Command SetCommand()
    {
        var (scope, key) = Target();
        var perSecond = new Option<double?>("--per-second") { Description = "The most tasks started per second, fleet-wide (above 0, at most 1,000,000; 0.5 is one every 2 s)." };
        var burst = new Option<int?>("--burst") { Description = "How many may start at once after a quiet spell (with --per-second; default one second's worth)." };
        var maxRunning = new Option<int?>("--max-running") { Description = "The most tasks published to workers or running at once, fleet-wide." };
        var command = new Command("set", "Create or replace a limit: the options given replace all of its numbers (one left out is no such limit).")
        {
            scope, key, perSecond, burst, maxRunning,
        };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var (scopeValue, keyValue) = Checked(parse.GetValue(scope), parse.GetValue(key));
            var (rate, size, running) = (parse.GetValue(perSecond), parse.GetValue(burst), parse.GetValue(maxRunning));
            var problems = LimitRules.Check(rate, size, running);
            if (problems.Count > 0)
            {
                throw new CliException(string.Join("; ", problems.Select(p => $"{Option(p.Field)}: {p.Problem}")));
            }

            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            var (row, created) = await new LimitStore(dataSource).SetAsync(scopeValue, keyValue, rate, size, running, DateTimeOffset.UtcNow, ct).ConfigureAwait(false);
            Console.WriteLine(created ? "created" : "replaced");
            Console.WriteLine(Header);
            Console.WriteLine(Line(row));
            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command ListCommand()
    {
        var command = new Command("list", "List the limits, and whether the dispatcher is holding tasks back under each (BLOCKED).");
        command.SetAction((_, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            Console.WriteLine(Header);
            foreach (var row in await new LimitStore(dataSource).ListAsync(ct).ConfigureAwait(false))
            {
                Console.WriteLine(Line(row));
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command RemoveCommand()
    {
        var (scope, key) = Target();
        var command = new Command("remove", "Remove a limit; the tasks it held back are dispatched without it.") { scope, key };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var (scopeValue, keyValue) = Checked(parse.GetValue(scope), parse.GetValue(key));
            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            if (!await new LimitStore(dataSource).RemoveAsync(scopeValue, keyValue, ct).ConfigureAwait(false))
            {
                await Console.Error.WriteLineAsync($"fleet: no limit for {scopeValue} {keyValue}").ConfigureAwait(false);
                return 1;
            }

            Console.WriteLine($"removed {scopeValue} {keyValue}");
            return 0;
        }, cancellationToken));
        return command;
    }

    private static (Argument<string> Scope, Argument<string> Key) Target() =>
        (new Argument<string>("scope") { Description = "type or tenant." },
         new Argument<string>("key") { Description = "The task type or the tenant." });

    private static (string Scope, string Key) Checked(string? scope, string? key)
    {
        if (!LimitRules.IsScope(scope))
        {
            throw new CliException($"the scope must be {LimitRules.TypeScope} or {LimitRules.TenantScope}, not '{scope}'");
        }

        if (!LimitRules.IsValidKey(key))
        {
            throw new CliException($"the key must be {LimitRules.KeyRule}");
        }

        return (scope!, key!);
    }

    private static string Option(string field) => field switch
    {
        "perSecond" => "--per-second",
        "maxRunning" => "--max-running",
        _ => "--" + field,
    };

    internal static string Line(LimitRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        return string.Create(CultureInfo.InvariantCulture,
            $"{row.Scope,-7} {row.Key,-24} {Number(row.PerSecond),-11} {Number(row.Burst),-8} {Number(row.MaxRunning),-12} {row.BlockedReason ?? "-",-18} {Time(row.BlockedSince)}");
    }

    private static string Number(double? value) => value?.ToString("0.###", CultureInfo.InvariantCulture) ?? "-";

    private static string Time(DateTimeOffset? time) => time?.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) ?? "-";
}
