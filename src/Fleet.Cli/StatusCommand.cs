using System.CommandLine;
using System.Globalization;
using Fleet.Client;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet status ID</c>: one task's state as <c>key: value</c> lines; exit 1 when it does not exist. Without an id,
/// how many queued tasks wait and why (one aggregate over <c>fleet.v_waiting_tasks</c>).
/// </summary>
internal static class StatusCommand
{
    public static Command Create()
    {
        var id = new Argument<Guid?>("id") { Description = "The task id; without it, the queued tasks waiting, counted by reason.", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("status", "Show one task: status, result or error, attempts, timings, worker, why it waits. Without an id: queued tasks waiting, by reason.") { id };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            // Reads only: PostgreSQL is enough, the broker's settings are not needed.
            await using var dataSource = Npgsql.NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            var reads = new TaskReads(dataSource);
            if (parse.GetValue(id) is not { } taskId)
            {
                PrintWaiting(await reads.GetWaitingCountsAsync(ct).ConfigureAwait(false));
                foreach (var paused in (await new QueuePauses(dataSource).ListAsync(ct).ConfigureAwait(false)).Where(q => q.Paused))
                {
                    // Its tasks wait for the resume, whatever their reason above says.
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"paused lane {paused.Queue}: since {paused.PausedAt:yyyy-MM-ddTHH:mm:ssZ}, reason: {paused.Reason ?? "-"} (fleet queue resume {paused.Queue})"));
                }

                return 0;
            }

            var info = await reads.GetAsync(taskId, ct).ConfigureAwait(false);
            if (info is null)
            {
                await Console.Error.WriteLineAsync($"fleet: no task {taskId}").ConfigureAwait(false);
                return 1;
            }

            Print(info);
            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>One line per reason, every reason listed (0 when none waits for it), then the total.</summary>
    public static void PrintWaiting(IReadOnlyDictionary<string, long> counts)
    {
        ArgumentNullException.ThrowIfNull(counts);
        Console.WriteLine("queued tasks waiting, by reason:");
        foreach (var reason in WaitingReasons.All.Concat(counts.Keys.Except(WaitingReasons.All, StringComparer.Ordinal)))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {reason + ":",-19} {counts.GetValueOrDefault(reason)}"));
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {"total:",-19} {counts.Values.Sum()}"));
    }

    public static void Print(TaskInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        static string Time(DateTimeOffset? t) => t?.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture) ?? "-";
        Console.WriteLine($"id:            {info.Id}");
        Console.WriteLine($"type:          {info.Type}");
        Console.WriteLine($"queue:         {info.Queue}");
        Console.WriteLine($"status:        {info.Status}");
        Console.WriteLine($"attempts:      {info.Attempts}");
        Console.WriteLine($"priority:      {info.Priority}");
        Console.WriteLine($"tenant:        {info.Tenant ?? "-"}");
        Console.WriteLine($"not_before:    {Time(info.NotBefore)}");
        Console.WriteLine($"waiting_for:   {info.WaitingFor ?? "-"}");
        Console.WriteLine($"submitted_at:  {Time(info.SubmittedAt)}");
        Console.WriteLine($"started_at:    {Time(info.StartedAt)}");
        Console.WriteLine($"finished_at:   {Time(info.FinishedAt)}");
        Console.WriteLine($"worker:        {info.WorkerId ?? "-"}");

        // Only what applies to this task: chain links, a batch callback, a requeue, progress.
        foreach (var (label, value) in new (string, object?)[]
        {
            ("after_task:", info.AfterTaskId), ("next_task:", info.NextTaskId), ("after_batch:", info.AfterBatchId), ("requeued_from:", info.RequeuedFrom),
        })
        {
            if (value is not null)
            {
                Console.WriteLine($"{label,-14} {value}");
            }
        }

        if (info.Progress is { } progress)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"progress:      {progress:P0}{(info.ProgressNote is { } note ? $" ({note})" : "")}"));
        }

        Console.WriteLine($"payload:       {info.Payload}");
        Console.WriteLine($"result:        {info.Result ?? "-"}");
        if (info.ErrorType is not null)
        {
            Console.WriteLine($"error_type:    {info.ErrorType}");
            Console.WriteLine($"error_message: {info.ErrorMessage}");
        }
    }
}
