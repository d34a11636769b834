using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.Persistence.Limits;
using Fleet.Tasks.BuiltIn;

namespace Fleet.Cli;

/// <summary><c>fleet submit TYPE --payload JSON</c> or <c>fleet submit --workload NAME --count N [--wait]</c>.</summary>
internal static class SubmitCommand
{
    public static Command Create()
    {
        var type = new Argument<string?>("type") { Description = "Task type (e.g. sha256). Omit when using --workload.", Arity = ArgumentArity.ZeroOrOne };
        var payload = new Option<string>("--payload", "-p") { Description = "The payload as a JSON object.", DefaultValueFactory = _ => "{}" };
        var workload = new Option<string?>("--workload", "-w") { Description = $"Submit a standard workload: {string.Join(", ", StandardWorkloads.Names)} (task i gets seed i)." };
        var count = new Option<int>("--count", "-n") { Description = "How many tasks to submit.", DefaultValueFactory = _ => 1 };
        var wait = new Option<bool>("--wait") { Description = "Wait until every task is final; show progress and a summary." };
        var timeout = new Option<int?>("--timeout-seconds") { Description = "The tasks' time limit." };
        var queue = new Option<string?>("--queue", "-q") { Description = "The queue to send to (default: fleet-cpu for sha256, sieve, heat; fleet-io otherwise)." };
        var waitTimeout = new Option<int>("--wait-timeout") { Description = "Give up waiting after this many seconds.", DefaultValueFactory = _ => 3600 };
        var delay = new Option<string?>("--delay") { Description = "Start no earlier than this after the submit: 30s, 5m, 2h, 1d (or seconds alone)." };
        var at = new Option<string?>("--at") { Description = "Start no earlier than this time, e.g. 2026-12-24T18:00:00Z (UTC unless it names an offset)." };
        var tenant = new Option<string?>("--tenant") { Description = "The tenant the tasks belong to (tasks.tenant): the dispatcher shares the lanes round robin across tenants, within each tenant's limit." };
        var priority = new Option<int>("--priority") { Description = "0 (the default) to 9, higher first: the dispatcher publishes higher priorities first.", DefaultValueFactory = _ => 0 };
        var onComplete = new Option<string?>("--on-complete") { Description = "With --count above 1: a task type created once, when every task of the batch is final (tasks.after_batch_id holds the batch id)." };
        var onCompletePayload = new Option<string>("--on-complete-payload") { Description = "The --on-complete task's payload, a JSON object.", DefaultValueFactory = _ => "{}" };
        var command = new Command("submit", "Submit one task, or --count N tasks of a type or workload. Prints the task id (one task) or the batch id.")
        {
            type, payload, workload, count, wait, timeout, queue, waitTimeout, delay, at, tenant, priority, onComplete, onCompletePayload,
        };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var name = parse.GetValue(workload);
            var taskType = parse.GetValue(type) ?? name ?? throw new CliException("give a task type or --workload NAME");
            var n = parse.GetValue(count);
            if (n < 1)
            {
                throw new CliException("--count must be at least 1");
            }

            JsonElement? fixedPayload = null;
            if (name is null)
            {
                try
                {
                    fixedPayload = JsonDocument.Parse(parse.GetValue(payload) ?? "{}").RootElement.Clone();
                }
                catch (JsonException ex)
                {
                    throw new CliException($"--payload is not valid JSON: {ex.Message}");
                }
            }
            else if (!StandardWorkloads.Names.Contains(name))
            {
                throw new CliException($"unknown workload '{name}'; known: {string.Join(", ", StandardWorkloads.Names)}");
            }

            var taskPriority = parse.GetValue(priority);
            if (taskPriority is < TaskLimits.MinPriority or > TaskLimits.MaxPriority)
            {
                throw new CliException($"--priority must be from {TaskLimits.MinPriority} to {TaskLimits.MaxPriority}");
            }

            var taskTenant = parse.GetValue(tenant);
            if (taskTenant is not null && !LimitRules.IsValidKey(taskTenant))
            {
                throw new CliException($"--tenant must be {LimitRules.KeyRule}");
            }

            var (delaySeconds, notBefore) = StartTime(parse.GetValue(delay), parse.GetValue(at));
            var batchId = n > 1 ? Guid.CreateVersion7() : (Guid?)null;
            var requests = Enumerable.Range(0, n).Select(i => new TaskRequest(taskType, fixedPayload ?? StandardWorkloads.Payload(name!, i))
            {
                BatchId = batchId,
                TimeoutSeconds = parse.GetValue(timeout),
                Queue = parse.GetValue(queue),
                DelaySeconds = delaySeconds,
                NotBefore = notBefore,
                Tenant = taskTenant,
                Priority = taskPriority,
            });

            var callback = OnCompleteRequest(parse.GetValue(onComplete), parse.GetValue(onCompletePayload) ?? "{}", batchId);
            await using var client = CliSettings.CreateClient();
            var started = DateTimeOffset.UtcNow;
            IReadOnlyList<Guid> ids;
            try
            {
                // A batch with a callback goes in one transaction (the callback must never see part of its batch); a
                // plain one in pipelined chunks, so that workers start while the rest is written.
                ids = callback is null
                    ? await client.SubmitManyAsync(requests, ct).ConfigureAwait(false)
                    : (await client.SubmitBatchAsync([.. requests], callback, batchId, ct).ConfigureAwait(false)).TaskIds;
            }
            catch (ArgumentException ex)
            {
                throw new CliException(ex.Message);
            }

            if (batchId is null)
            {
                Console.WriteLine(ids[0]);
                if (parse.GetValue(wait))
                {
                    var info = await client.WaitAsync(ids[0], TimeSpan.FromSeconds(parse.GetValue(waitTimeout)), ct).ConfigureAwait(false);
                    StatusCommand.Print(info!);
                    return info is { Status: "succeeded" } ? 0 : 1;
                }

                return 0;
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"batch {batchId} submitted {ids.Count} tasks in {(DateTimeOffset.UtcNow - started).TotalSeconds:0.00} s"));
            if (!parse.GetValue(wait))
            {
                return 0;
            }

            var progress = await BatchWatcher.WaitAsync(client, batchId.Value, n, TimeSpan.FromSeconds(parse.GetValue(waitTimeout)), ct).ConfigureAwait(false);
            await BatchSummary.PrintAsync(batchId.Value, ct).ConfigureAwait(false);
            return progress.Final == progress.Succeeded ? 0 : 1;
        }, cancellationToken));
        return command;
    }

    /// <summary>The batch's onComplete request from <c>--on-complete</c> (null without it).</summary>
    private static TaskRequest? OnCompleteRequest(string? type, string payload, Guid? batchId)
    {
        if (type is null)
        {
            return null;
        }

        if (batchId is null)
        {
            throw new CliException("--on-complete needs a batch: give --count above 1");
        }

        try
        {
            return new TaskRequest(type, JsonDocument.Parse(payload).RootElement.Clone());
        }
        catch (JsonException ex)
        {
            throw new CliException($"--on-complete-payload is not valid JSON: {ex.Message}");
        }
    }

    /// <summary>The tasks' start time from <c>--delay</c> or <c>--at</c> (not both); neither means "now".</summary>
    internal static (double? DelaySeconds, DateTimeOffset? NotBefore) StartTime(string? delay, string? at)
    {
        if (delay is not null && at is not null)
        {
            throw new CliException("give --delay or --at, not both");
        }

        if (at is not null)
        {
            return DateTimeOffset.TryParse(at, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time)
                ? (null, time)
                : throw new CliException($"--at '{at}' is not a time; write it like 2026-12-24T18:00:00Z");
        }

        return delay is null ? (null, null) : (ParseDuration(delay), null);
    }

    /// <summary>A duration such as <c>30s</c>, <c>5m</c>, <c>2h</c>, <c>1d</c> or <c>90</c> (seconds), in seconds.</summary>
    internal static double ParseDuration(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var trimmed = text.Trim();
        var unit = trimmed.Length > 0 && char.IsAsciiLetter(trimmed[^1]) ? char.ToLowerInvariant(trimmed[^1]) : 's';
        var number = char.IsAsciiLetter(trimmed.LastOrDefault()) ? trimmed[..^1] : trimmed;
        var factor = unit switch { 's' => 1, 'm' => 60, 'h' => 3600, 'd' => 86_400, _ => 0 };
        if (factor == 0 || !double.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value))
        {
            throw new CliException($"--delay '{text}' is not a duration; write it like 30s, 5m, 2h or 1d");
        }

        return value * factor;
    }
}
