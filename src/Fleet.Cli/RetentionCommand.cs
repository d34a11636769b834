using System.CommandLine;
using System.Globalization;
using System.Text.RegularExpressions;
using Fleet.Persistence;
using Npgsql;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet retention --older-than 30d</c>: deletes final tasks (with their attempts), idempotency keys and worker
/// rows older than the cutoff, in short batches that never block workers (<see cref="RetentionService"/>).
/// </summary>
internal static partial class RetentionCommand
{
    public static Command Create()
    {
        var olderThan = new Option<string>("--older-than")
        {
            Description = "Age of what to delete: a number with d (days), h (hours) or m (minutes), e.g. 30d, 12h, 90m.",
            Required = true,
        };
        var batchSize = new Option<int>("--batch-size")
        {
            Description = "Tasks deleted per transaction (each batch is one short statement).",
            DefaultValueFactory = _ => RetentionService.DefaultBatchSize,
        };
        var dryRun = new Option<bool>("--dry-run") { Description = "Only count what would be deleted." };
        var command = new Command(
            "retention",
            "Delete final tasks (succeeded, failed, timed_out, cancelled) that finished before the cutoff, with their attempt rows, "
            + "idempotency keys created before it and worker rows unseen since it. Queued and running tasks are never touched; "
            + "batches lock with SKIP LOCKED, so workers keep running meanwhile.")
        {
            olderThan, batchSize, dryRun,
        };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var age = ParseAge(parse.GetValue(olderThan)!);
            var size = parse.GetValue(batchSize);
            if (size < 1)
            {
                throw new CliException("--batch-size must be at least 1");
            }

            await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
            var retention = new RetentionService(dataSource);
            var cutoff = DateTimeOffset.UtcNow - age;
            var result = parse.GetValue(dryRun)
                ? await retention.CountAsync(cutoff, ct).ConfigureAwait(false)
                : await retention.DeleteAsync(cutoff, size, new ProgressLines(), ct).ConfigureAwait(false);
            Console.WriteLine(Describe(result));
            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>"30d", "12h", "90m" (a whole or decimal number and a unit) as a time span of at least one minute.</summary>
    internal static TimeSpan ParseAge(string text)
    {
        var match = AgePattern().Match(text.Trim());
        if (!match.Success)
        {
            throw new CliException($"--older-than '{text}' is not an age like 30d, 12h or 90m");
        }

        var number = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        var age = match.Groups[2].Value switch
        {
            "d" => TimeSpan.FromDays(number),
            "h" => TimeSpan.FromHours(number),
            _ => TimeSpan.FromMinutes(number),
        };

        // Under a minute would reach tasks that just finished and the rows of live workers between two heartbeats.
        return age >= TimeSpan.FromMinutes(1) ? age : throw new CliException("--older-than must be at least 1m");
    }

    internal static string Describe(RetentionResult r)
    {
        var cutoff = r.Cutoff.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
        return r.DryRun
            ? string.Create(CultureInfo.InvariantCulture,
                $"dry run, cutoff {cutoff}: would delete {r.Tasks} tasks, {r.Attempts} attempt rows, {r.IdempotencyKeys} idempotency keys, {r.BatchCallbacks} batch callbacks, {r.Workers} worker rows (counted in {r.Elapsed.TotalSeconds:0.0} s)")
            : string.Create(CultureInfo.InvariantCulture,
                $"cutoff {cutoff}: deleted {r.Tasks} tasks, {r.Attempts} attempt rows, {r.IdempotencyKeys} idempotency keys, {r.BatchCallbacks} batch callbacks, {r.Workers} worker rows in {r.Batches} batches, {r.Elapsed.TotalSeconds:0.0} s");
    }

    [GeneratedRegex(@"^(\d+(?:\.\d+)?)([dhm])$")]
    private static partial Regex AgePattern();

    /// <summary>Running totals on stderr every 5 s (stdout keeps only the final line, for scripts).</summary>
    private sealed class ProgressLines : IProgress<RetentionResult>
    {
        private TimeSpan _last;

        public void Report(RetentionResult value)
        {
            if (value.Elapsed - _last >= TimeSpan.FromSeconds(5))
            {
                _last = value.Elapsed;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"progress: {value.Tasks} tasks, {value.Attempts} attempt rows deleted, {value.Elapsed.TotalSeconds:0} s"));
            }
        }
    }
}
