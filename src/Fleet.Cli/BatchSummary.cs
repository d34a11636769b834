using System.Globalization;
using Fleet.Client;
using Npgsql;

namespace Fleet.Cli;

/// <summary>Prints a batch's outcome, as <see cref="TaskReads.GetBatchReportAsync"/> reads it.</summary>
internal static class BatchSummary
{
    public static async Task PrintAsync(Guid batchId, CancellationToken cancellationToken)
    {
        await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
        var report = await new TaskReads(dataSource).GetBatchReportAsync(batchId, cancellationToken).ConfigureAwait(false);
        var inv = CultureInfo.InvariantCulture;

        var o = report.Overview;
        Console.WriteLine();
        Console.WriteLine($"Batch {batchId}");
        Console.WriteLine(string.Create(inv, $"  tasks        {o.Tasks} ({o.Succeeded} succeeded, {o.Failed} failed, {o.TimedOut} timed out, {o.Cancelled} cancelled; {o.Executions} executions)"));
        Console.WriteLine(string.Create(inv, $"  wall time    {o.WallSeconds:0.00} s (first submit to last result)"));
        Console.WriteLine(string.Create(inv, $"  throughput   {(o.WallSeconds > 0 ? o.Tasks / o.WallSeconds : 0):0.0} tasks/s"));
        if (report.Timing is { } t)
        {
            Console.WriteLine(string.Create(inv, $"  run time     p50 {t.RunP50Ms:0.0} ms, p95 {t.RunP95Ms:0.0} ms, CPU {t.CpuAverageMs:0.0} ms per task"));
            Console.WriteLine(string.Create(inv, $"  latency      p50 {t.LatencyP50Ms / 1000:0.00} s, p95 {t.LatencyP95Ms / 1000:0.00} s (submit to result)"));
        }

        Console.WriteLine("  per worker");
        foreach (var w in report.Workers)
        {
            Console.WriteLine(string.Create(inv, $"    {w.WorkerId ?? "-",-40} {w.Tasks,7} tasks  {w.AverageMs,8:0.0} ms avg"));
        }

        if (report.Errors.Count > 0)
        {
            Console.WriteLine("  errors");
        }

        foreach (var e in report.Errors)
        {
            Console.WriteLine($"    {e.Count,7} x {e.ErrorType ?? "-"}: {e.Message ?? ""}");
        }
    }
}
