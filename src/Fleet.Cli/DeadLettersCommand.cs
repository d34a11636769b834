using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Fleet.Client;
using Microsoft.Extensions.Configuration;
using Npgsql;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet dead-letters list|replay|discard</c>: the messages of the lanes' <c>_error</c> queues, straight on the
/// broker (<c>ConnectionStrings__rabbitmq</c>) through the same <see cref="DeadLetterQueues"/> as the API's
/// <c>/dead-letters</c>, whose source this project compiles.
/// </summary>
internal static class DeadLettersCommand
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static Command Create() => new("dead-letters", "The messages the workers could not take (the lanes' _error queues): list them with their reason, replay them to their lane, or discard them.")
    {
        ListCommand(), TakeCommand("replay", "Send dead letters back to the queue they faulted on (published with a confirm before each leaves the error queue)."),
        TakeCommand("discard", "Remove dead letters for good."),
    };

    private static Command ListCommand()
    {
        var queue = QueueOption(required: false);
        var limit = new Option<int>("--limit") { Description = $"The most dead letters shown (1 to {DeadLetterQueues.MaxLimit}).", DefaultValueFactory = _ => DeadLetterQueues.DefaultLimit };
        var json = new Option<bool>("--json") { Description = "Print the listing as JSON (bodies and headers included), as GET /dead-letters answers." };
        var command = new Command("list", "List dead letters, oldest first per queue, with their reason; nothing is removed.") { queue, limit, json };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var size = parse.GetValue(limit);
            if (size is < 1 or > DeadLetterQueues.MaxLimit)
            {
                throw new CliException($"--limit must be from 1 to {DeadLetterQueues.MaxLimit}");
            }

            var errorQueues = await ErrorQueuesAsync(ct).ConfigureAwait(false);
            var name = Checked(parse.GetValue(queue), errorQueues);
            var list = await Queues().ListAsync(name is null ? errorQueues : [name], size, ct).ConfigureAwait(false);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(list, Json));
                return 0;
            }

            Console.WriteLine(string.Join("  ", list.Queues.Select(q => $"{q.Queue} {(q.Exists ? q.Messages.ToString(CultureInfo.InvariantCulture) : "-")}")));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"QUEUE",-26} {"MESSAGE ID",-42} {"FAULTED AT",-20} {"EXCEPTION",-32} REASON"));
            foreach (var letter in list.DeadLetters)
            {
                var faulted = letter.FaultedAt?.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) ?? "-";
                var type = letter.ExceptionType?.Split('.')[^1] ?? "-";
                var reason = (letter.Reason ?? "-").ReplaceLineEndings(" ");
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{letter.Queue,-26} {letter.MessageId,-42} {faulted,-20} {type,-32} {(reason.Length > 120 ? reason[..120] + "..." : reason)}"));
            }

            if (list.Truncated)
            {
                Console.WriteLine($"(more wait; --limit {Math.Min(size * 10, DeadLetterQueues.MaxLimit)} or --queue shows more)");
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command TakeCommand(string action, string description)
    {
        var queue = QueueOption(required: true);
        var ids = new Option<string[]>("--id") { Description = "A dead letter's message id, as list shows it (repeatable)." };
        var all = new Option<bool>("--all") { Description = "Every dead letter of the queue (that the filters match)." };
        var exceptionType = new Option<string?>("--exception-type") { Description = "With --all: only those faulted by this exception type (full name)." };
        var reasonContains = new Option<string?>("--reason-contains") { Description = "With --all: only those whose reason contains this text (any case)." };
        var command = new Command(action, description) { queue, ids, all, exceptionType, reasonContains };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var name = Checked(parse.GetValue(queue), await ErrorQueuesAsync(ct).ConfigureAwait(false))!;
            var named = parse.GetValue(ids) ?? [];
            var everything = parse.GetValue(all);
            var (type, reason) = (parse.GetValue(exceptionType), parse.GetValue(reasonContains));
            if (everything == (named.Length > 0))
            {
                throw new CliException("name the dead letters (--id, repeatable) or take them all (--all), not both");
            }

            if (!everything && (type is not null || reason is not null))
            {
                throw new CliException("--exception-type and --reason-contains go with --all");
            }

            var selection = new DeadLetterSelection(everything ? null : named.ToHashSet(StringComparer.Ordinal), type, reason);
            DeadLetterOutcome outcome;
            try
            {
                outcome = action == "replay"
                    ? await Queues().ReplayAsync(name, selection, ct).ConfigureAwait(false)
                    : await Queues().DiscardAsync(name, selection, ct).ConfigureAwait(false);
            }
            catch (DeadLetterReplayException ex)
            {
                throw new CliException(ex.Message);
            }

            Console.WriteLine($"{(action == "replay" ? "replayed" : "discarded")} {outcome.Count} from {outcome.Queue}");
            if (outcome.NotFound.Count > 0)
            {
                await Console.Error.WriteLineAsync($"fleet: not in {outcome.Queue}: {string.Join(", ", outcome.NotFound)}").ConfigureAwait(false);
                return 1;
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    private static Option<string?> QueueOption(bool required) => new("--queue")
    {
        Description = $"The error queue: {string.Join(", ", DeadLetterQueues.QueuesOf(QueueCatalog.BuiltIn))}, or those of a declared queue{(required ? "" : " (default all)")}.",
        Required = required,
    };

    private static string? Checked(string? queue, IReadOnlyList<string> errorQueues) =>
        queue is null || errorQueues.Contains(queue)
            ? queue
            : throw new CliException($"--queue must be one of {string.Join(", ", errorQueues)}, not '{queue}'");

    /// <summary>
    /// The error queues of the queues in <c>fleet.queues</c> (the built-in lanes and the declared ones); those of the
    /// built-in lanes alone without a database setting (dead letters live in the broker) or when it does not answer.
    /// </summary>
    private static async Task<IReadOnlyList<string>> ErrorQueuesAsync(CancellationToken ct)
    {
        if (string.IsNullOrEmpty(CliSettings.Configuration.GetConnectionString("fleetdb")))
        {
            return DeadLetterQueues.QueuesOf(QueueCatalog.BuiltIn);
        }

        try
        {
            var quick = new NpgsqlConnectionStringBuilder(CliSettings.PostgresConnectionString) { Timeout = 3 };
            await using var dataSource = NpgsqlDataSource.Create(quick.ConnectionString);
            return DeadLetterQueues.QueuesOf(await QueueCatalog.ReadAsync(dataSource, ct).ConfigureAwait(false));
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or ArgumentException)
        {
            await Console.Error.WriteLineAsync($"fleet: fleet.queues could not be read ({ex.Message}); only the built-in lanes' error queues are known").ConfigureAwait(false);
            return DeadLetterQueues.QueuesOf(QueueCatalog.BuiltIn);
        }
    }

    private static DeadLetterQueues Queues() =>
        new(RabbitMqAddress.Parse(CliSettings.RabbitMqUri), $"fleet dead-letters {Environment.ProcessId}");
}
