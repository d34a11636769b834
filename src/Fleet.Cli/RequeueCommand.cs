using System.CommandLine;
using System.Globalization;
using Fleet.Client;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet requeue ID</c> or <c>fleet requeue --status failed [--type T] [--batch B] [--since T] [--until T]
/// [--limit N] [--again]</c>: run final tasks again as new tasks, through the same <see cref="TaskRequeuer"/> (and
/// <see cref="RequeueFilter.Check"/>) as the API's <c>POST /tasks/{id}/requeue</c> and <c>POST /tasks/requeue</c>.
/// </summary>
internal static class RequeueCommand
{
    public static Command Create()
    {
        var id = new Argument<Guid?>("id") { Description = "The final task to run again. Without it, --status selects the tasks.", Arity = ArgumentArity.ZeroOrOne };
        var status = new Option<string[]>("--status", "-s")
        {
            Description = $"Requeue the tasks in these final states: {string.Join(", ", RequeueFilter.FinalStates)} (repeat it, or separate with commas).",
            AllowMultipleArgumentsPerToken = true,
        };
        var type = new Option<string?>("--type", "-t") { Description = "Only tasks of this type." };
        var batch = new Option<Guid?>("--batch", "-b") { Description = "Only tasks of this batch (the new tasks belong to no batch)." };
        var since = new Option<string?>("--since") { Description = "Only tasks finished at or after this time (2026-12-04T18:00:00Z, UTC unless it names an offset), or this long ago (30m, 2h, 1d)." };
        var until = new Option<string?>("--until") { Description = "Only tasks finished before this time, or this long ago." };
        var limit = new Option<int>("--limit", "-n")
        {
            Description = $"At most this many tasks, the earliest finished first (1 to {RequeueFilter.MaxLimit}).",
            DefaultValueFactory = _ => RequeueFilter.DefaultLimit,
        };
        var again = new Option<bool>("--again") { Description = "Also requeue tasks that were requeued before (by default they are skipped, so running the same command twice requeues once)." };
        var command = new Command("requeue", "Run final tasks again, each as a new task (the old rows never change). Prints the new task id, or the count and each new id with the one it runs again.")
        {
            id, status, type, batch, since, until, limit, again,
        };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var statuses = (parse.GetValue(status) ?? [])
                .SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
            if (parse.GetValue(id) is { } taskId)
            {
                if (statuses.Count > 0 || parse.GetValue(type) is not null || parse.GetValue(batch) is not null
                    || parse.GetValue(since) is not null || parse.GetValue(until) is not null || parse.GetValue(again))
                {
                    throw new CliException("give a task id or a filter (--status ...), not both");
                }

                return await RequeueOneAsync(taskId, ct).ConfigureAwait(false);
            }

            var now = DateTimeOffset.UtcNow;
            var filter = new RequeueFilter
            {
                Statuses = statuses,
                Type = parse.GetValue(type),
                BatchId = parse.GetValue(batch),
                FinishedSince = Time(parse.GetValue(since), "--since", now),
                FinishedUntil = Time(parse.GetValue(until), "--until", now),
                Limit = parse.GetValue(limit),
                Again = parse.GetValue(again),
            };
            if (filter.Check() is { Count: > 0 } problems)
            {
                throw new CliException(string.Join("; ", problems.Select(p => $"{Option(p.Field)}: {p.Problem}")));
            }

            await using var client = CliSettings.CreateClient();
            RequeueResult result;
            try
            {
                result = await client.RequeueAsync(filter, ct).ConfigureAwait(false);
            }
            catch (ArgumentException ex)
            {
                // A stored row the submission refuses (see the API's 409 for it); nothing was stored.
                throw new CliException($"{ex.Message} Nothing was requeued.");
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"requeued {result.Tasks.Count} tasks"));
            foreach (var task in result.Tasks)
            {
                Console.WriteLine($"{task.Id} from {task.RequeuedFrom}");
            }

            await WarnUnpublishedAsync(result).ConfigureAwait(false);
            return 0;
        }, cancellationToken));
        return command;
    }

    private static async Task<int> RequeueOneAsync(Guid taskId, CancellationToken ct)
    {
        await using var client = CliSettings.CreateClient();
        RequeueOneResult found;
        try
        {
            found = await client.RequeueAsync(taskId, ct).ConfigureAwait(false);
        }
        catch (ArgumentException ex)
        {
            throw new CliException($"{ex.Message} Nothing was requeued.");
        }

        switch (found.Outcome)
        {
            case RequeueOutcome.NotFound:
                await Console.Error.WriteLineAsync($"fleet: no task {taskId}").ConfigureAwait(false);
                return 1;
            case RequeueOutcome.NotFinal:
                await Console.Error.WriteLineAsync($"fleet: task {taskId} is {found.Status}; only a final task can be requeued").ConfigureAwait(false);
                return 1;
        }

        Console.WriteLine(found.Result!.Tasks[0].Id);
        await WarnUnpublishedAsync(found.Result).ConfigureAwait(false);
        return 0;
    }

    private static async Task WarnUnpublishedAsync(RequeueResult result)
    {
        if (result.PublishError is { } error)
        {
            await Console.Error.WriteLineAsync($"fleet: warning: the tasks are stored but the broker did not confirm them ({error.Message}); the API's relay publishes them").ConfigureAwait(false);
        }
    }

    /// <summary>A time (UTC unless it names an offset), or a duration ago (<c>30m</c>, <c>2h</c>, <c>1d</c>).</summary>
    internal static DateTimeOffset? Time(string? text, string option, DateTimeOffset now)
    {
        if (text is null)
        {
            return null;
        }

        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time))
        {
            return time;
        }

        try
        {
            return now.AddSeconds(-SubmitCommand.ParseDuration(text));
        }
        catch (CliException)
        {
            throw new CliException($"{option} '{text}' is neither a time (2026-12-04T18:00:00Z) nor a duration ago (30m, 2h, 1d)");
        }
    }

    private static string Option(string field) => field switch
    {
        "batchId" => "--batch",
        "finishedSince" => "--since",
        "finishedUntil" => "--until",
        _ => "--" + field,
    };
}
