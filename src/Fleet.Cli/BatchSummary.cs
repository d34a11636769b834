using System.Globalization;
using Npgsql;

namespace Fleet.Cli;

/// <summary>Prints a batch's outcome, read with plain SQL from <c>fleet.tasks</c> and <c>fleet.task_attempts</c>.</summary>
internal static class BatchSummary
{
    private const string OverviewSql = """
        SELECT count(*) AS tasks,
               count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'timed_out') AS timed_out,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
               extract(epoch FROM max(finished_at) - min(submitted_at))::float8 AS wall_s,
               sum(attempts) AS attempts
        FROM fleet.tasks
        WHERE batch_id = @batch
        """;

    private const string TimingSql = """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a.wall_ms) AS run_p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY a.wall_ms) AS run_p95,
               avg(a.cpu_ms) AS cpu_avg,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.finished_at - t.submitted_at) * 1000) AS latency_p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM t.finished_at - t.submitted_at) * 1000) AS latency_p95
        FROM fleet.tasks t
        JOIN fleet.task_attempts a ON a.task_id = t.id AND a.attempt = t.attempts
        WHERE t.batch_id = @batch AND t.status = 'succeeded'
        """;

    private const string PerWorkerSql = """
        SELECT coalesce(w.host, '?') AS host, t.worker_id, count(*) AS tasks, avg(a.wall_ms) AS avg_ms
        FROM fleet.tasks t
        JOIN fleet.task_attempts a ON a.task_id = t.id AND a.attempt = t.attempts
        LEFT JOIN fleet.workers w ON w.id = t.worker_id
        WHERE t.batch_id = @batch
        GROUP BY 1, 2
        ORDER BY 3 DESC
        """;

    private const string ErrorsSql = """
        SELECT error_type, left(error_message, 120), count(*)
        FROM fleet.tasks
        WHERE batch_id = @batch AND status <> 'succeeded'
        GROUP BY 1, 2
        ORDER BY 3 DESC
        LIMIT 5
        """;

    public static async Task PrintAsync(Guid batchId, CancellationToken cancellationToken)
    {
        await using var dataSource = NpgsqlDataSource.Create(CliSettings.PostgresConnectionString);
        var inv = CultureInfo.InvariantCulture;

        await using (var reader = await QueryAsync(dataSource, OverviewSql, batchId, cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var tasks = reader.GetInt64(0);
            var wall = reader.IsDBNull(5) ? 0 : reader.GetDouble(5);
            Console.WriteLine();
            Console.WriteLine($"Batch {batchId}");
            Console.WriteLine(string.Create(inv, $"  tasks        {tasks} ({reader.GetInt64(1)} succeeded, {reader.GetInt64(2)} failed, {reader.GetInt64(3)} timed out, {reader.GetInt64(4)} cancelled; {(reader.IsDBNull(6) ? 0 : reader.GetInt64(6))} executions)"));
            Console.WriteLine(string.Create(inv, $"  wall time    {wall:0.00} s (first submit to last result)"));
            Console.WriteLine(string.Create(inv, $"  throughput   {(wall > 0 ? tasks / wall : 0):0.0} tasks/s"));
        }

        await using (var reader = await QueryAsync(dataSource, TimingSql, batchId, cancellationToken).ConfigureAwait(false))
        {
            if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false) && !reader.IsDBNull(0))
            {
                Console.WriteLine(string.Create(inv, $"  run time     p50 {reader.GetDouble(0):0.0} ms, p95 {reader.GetDouble(1):0.0} ms, CPU {(reader.IsDBNull(2) ? 0 : reader.GetDouble(2)):0.0} ms per task"));
                Console.WriteLine(string.Create(inv, $"  latency      p50 {reader.GetDouble(3) / 1000:0.00} s, p95 {reader.GetDouble(4) / 1000:0.00} s (submit to result)"));
            }
        }

        Console.WriteLine("  per worker");
        await using (var reader = await QueryAsync(dataSource, PerWorkerSql, batchId, cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                Console.WriteLine(string.Create(inv, $"    {(reader.IsDBNull(1) ? "-" : reader.GetString(1)),-40} {reader.GetInt64(2),7} tasks  {(reader.IsDBNull(3) ? 0 : reader.GetDouble(3)),8:0.0} ms avg"));
            }
        }

        await using (var reader = await QueryAsync(dataSource, ErrorsSql, batchId, cancellationToken).ConfigureAwait(false))
        {
            var first = true;
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                if (first)
                {
                    Console.WriteLine("  errors");
                    first = false;
                }

                Console.WriteLine($"    {reader.GetInt64(2),7} x {(reader.IsDBNull(0) ? "-" : reader.GetString(0))}: {(reader.IsDBNull(1) ? "" : reader.GetString(1))}");
            }
        }
    }

    private static async Task<NpgsqlDataReader> QueryAsync(NpgsqlDataSource dataSource, string sql, Guid batchId, CancellationToken cancellationToken)
    {
        var command = dataSource.CreateCommand(sql);
        command.Parameters.AddWithValue("batch", batchId);
        return await command.ExecuteReaderAsync(System.Data.CommandBehavior.CloseConnection, cancellationToken).ConfigureAwait(false);
    }
}
