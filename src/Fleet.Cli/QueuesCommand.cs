using System.CommandLine;
using Fleet.Client;
using Fleet.Contracts;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet queues</c>: the lanes, paused or not (<see cref="QueueCommand"/>). <c>fleet queues migrate --to
/// quorum|classic</c>: moves a deployment's lane queues to another type without losing a message
/// (<see cref="QueueMigrator"/>). Logs in as the broker administrator (<c>ConnectionStrings__rabbitmq</c>, as
/// <c>.fleet/env</c> sets it), because it deletes and declares the lanes.
/// </summary>
internal static class QueuesCommand
{
    public static Command Create()
    {
        var to = new Option<string>("--to") { Description = "The target queue type: quorum or classic.", Required = true };
        var lanes = new Option<string[]>("--lane")
        {
            Description = "A lane to migrate (repeatable); by default the built-in lanes " + string.Join(" and ", TaskQueues.All) + ". Name a worker group's queue (--lane reports) to migrate it too.",
            DefaultValueFactory = _ => [.. TaskQueues.All],
        };
        var migrate = new Command(
            "migrate",
            "Move every queue of the lanes (the lane, its _error and _skipped queues, retry rungs an older version left) to another queue type, "
            + "message by message with publisher confirms. Stop every worker first; producers and the API may keep running. "
            + "Then set RabbitMq:QueueType to the new type everywhere and start the workers. Safe to run again after an interruption.")
        {
            to, lanes,
        };
        migrate.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var target = parse.GetValue(to)?.Trim().ToLowerInvariant() switch
            {
                "quorum" => BrokerQueueType.Quorum,
                "classic" => BrokerQueueType.Classic,
                var other => throw new CliException($"--to must be quorum or classic, not '{other}'"),
            };
            var names = parse.GetValue(lanes) ?? [];
            var address = RabbitMqAddress.Parse(CliSettings.RabbitMqUri);
            await using var connection = await address.ConnectAsync($"fleet queues migrate {Environment.ProcessId}", ct).ConfigureAwait(false);
            var migrator = new QueueMigrator(connection, target, Console.Out);
            var consumed = await migrator.ConsumersAsync(names, ct).ConfigureAwait(false);
            if (consumed.Count > 0)
            {
                throw new CliException(
                    "workers are consuming " + string.Join(", ", consumed.Select(c => $"{c.Queue} ({c.Consumers} consumer(s))"))
                    + ": stop every worker first (`make down KEEP_SERVICES=1` locally); producers and the API may keep running.");
            }

            long moved = 0;
            foreach (var lane in names)
            {
                moved += await migrator.MigrateLaneAsync(lane, ct).ConfigureAwait(false);
            }

            Console.WriteLine($"done: the queues of {string.Join(", ", names)} are {QueueMigrator.Name(target)}, {moved} message(s) moved. "
                + $"Now set RabbitMq:QueueType={QueueMigrator.Name(target)} (RabbitMq__QueueType) for the workers, the API and the clients, and start the workers.");
            return 0;
        }, cancellationToken));
        var queues = new Command("queues", "List the lanes with their state (paused or active, since when, why); `fleet queues migrate` moves them to another queue type.") { migrate };
        queues.SetAction((_, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            await QueueCommand.PrintAsync(ct).ConfigureAwait(false);
            return 0;
        }, cancellationToken));
        return queues;
    }
}
