using System.CommandLine;
using System.Globalization;
using Fleet.Client;
using Npgsql;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet queue pause|resume NAME</c>: pauses or resumes a lane in <c>fleet.queue_pauses</c>, written straight to
/// PostgreSQL like the other commands, through the same <see cref="QueuePauses"/> as the API's <c>/queues</c>. Every
/// worker reads the table every <c>Worker:PauseCheckSeconds</c> and stops or starts consuming the lane and its
/// dispatch queue. <c>fleet queues</c> lists the lanes with their state (<see cref="PrintAsync"/>).
/// </summary>
internal static class QueueCommand
{
    /// <summary>The column headings of the lane list, aligned as <see cref="Line"/> aligns the values.</summary>
    internal static readonly string Header = string.Create(CultureInfo.InvariantCulture, $"{"QUEUE",-12} {"LANE",-4} {"STATE",-8} {"SINCE",-24} REASON");

    public static Command Create() => new("queue", "Pause or resume a queue (fleet-cpu, fleet-io, or a declared one): a paused queue and its dispatch queue are consumed by no worker, including workers started later.")
    {
        PauseCommand(), ResumeCommand(),
    };

    private static Command PauseCommand()
    {
        var name = Name();
        var reason = new Option<string?>("--reason") { Description = $"Why, for whoever looks later (at most {QueuePauses.MaxReasonLength} characters)." };
        var command = new Command(
            "pause",
            "Pause a lane: within Worker:PauseCheckSeconds every worker stops taking its tasks (those it holds finish); the rest stay ready in RabbitMQ until `fleet queue resume`.")
        {
            name, reason,
        };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var why = parse.GetValue(reason);
            if (why is not null && why.Trim().Length > QueuePauses.MaxReasonLength)
            {
                throw new CliException($"--reason must be at most {QueuePauses.MaxReasonLength} characters");
            }

            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            var lane = await CheckedAsync(dataSource, parse.GetValue(name), ct).ConfigureAwait(false);
            var state = await new QueuePauses(dataSource).PauseAsync(lane, why, ct).ConfigureAwait(false);
            Console.WriteLine($"paused {lane}: workers stop taking its tasks within Worker:PauseCheckSeconds");
            Console.WriteLine(Header);
            Console.WriteLine(Line(state));
            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command ResumeCommand()
    {
        var name = Name();
        var command = new Command("resume", "Resume a paused lane: workers consume it again within Worker:PauseCheckSeconds.") { name };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            var lane = await CheckedAsync(dataSource, parse.GetValue(name), ct).ConfigureAwait(false);
            var resumed = await new QueuePauses(dataSource).ResumeAsync(lane, ct).ConfigureAwait(false);
            Console.WriteLine(resumed ? $"resumed {lane}" : $"{lane} was not paused");
            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>Every lane with its state, as <c>fleet queues</c> prints it.</summary>
    public static async Task PrintAsync(CancellationToken cancellationToken)
    {
        await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
        Console.WriteLine(Header);
        foreach (var state in await new QueuePauses(dataSource).ListAsync(cancellationToken).ConfigureAwait(false))
        {
            Console.WriteLine(Line(state));
        }
    }

    private static Argument<string> Name() => new("name") { Description = "The queue: fleet-cpu, fleet-io or a declared queue (its dispatch queue pauses with it)." };

    private static async Task<string> CheckedAsync(NpgsqlDataSource dataSource, string? name, CancellationToken ct) =>
        await new QueuePauses(dataSource).CheckAsync(name, ct).ConfigureAwait(false) is { } problem ? throw new CliException(problem.Problem) : name!;

    internal static string Line(QueuePauseState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return string.Create(CultureInfo.InvariantCulture,
            $"{state.Queue,-12} {state.Lane ?? "-",-4} {(state.Paused ? "paused" : "active"),-8} {state.PausedAt?.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) ?? "-",-24} {state.Reason ?? "-"}");
    }
}
