using Fleet.Api.Models;
using Npgsql;

namespace Fleet.Api.Monitoring;

/// <summary>The autoscaling inputs the database holds: live workers, who runs which lane, executions ended per lane.</summary>
public sealed record AutoscaleInputs(
    List<(string Id, string[] Queues, int Cpu, int Io)> Workers,
    List<(string WorkerId, string Queue)> Busy,
    Dictionary<string, long> Finished,
    Dictionary<string, long> Dispatchable);

/// <summary>
/// Every monitoring statement of the API against <c>fleet.tasks</c> and <c>fleet.workers</c>, none of which scans a
/// table (they poll it every few seconds):
/// <list type="bullet">
/// <item><see cref="StatsService"/> (<c>GET /stats</c>): <see cref="ReadStatsAsync"/>, whose finished counts
/// <see cref="FinishedBuckets"/> keeps;</item>
/// <item><c>AutoscaleSampler</c> (<c>/metrics</c>): <see cref="ReadAutoscaleInputsAsync"/>.</item>
/// </list>
/// <c>GET /workers</c> reads through EF (<see cref="WorkerQueries"/>).
/// </summary>
public sealed class MonitoringQueries(NpgsqlDataSource dataSource)
{
    // The queued and running ranges of ix_tasks_status_submitted (index-only).
    private const string OpenSql = """
        SELECT count(*) FILTER (WHERE status = 'queued'),
               count(*) FILTER (WHERE status = 'running')
        FROM fleet.tasks
        WHERE status IN ('queued', 'running')
        """;

    // Range of ix_tasks_finished, then the status from the heap; grouped so that one row comes back per bucket and state.
    private const string FinishedSql = """
        SELECT floor(extract(epoch FROM finished_at) / 5)::bigint, status, count(*)
        FROM fleet.tasks
        WHERE finished_at >= @from AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
        GROUP BY 1, 2
        """;

    // Live workers: running (not draining, not stopped) with a recent heartbeat. Few rows (ix_workers_last_seen).
    private const string LiveWorkersSql = """
        SELECT id, queues, cpu_concurrency, io_concurrency FROM fleet.workers
        WHERE state = 'running' AND last_seen_at > now() - make_interval(secs => @stale)
        """;

    // Which workers are running which lane's tasks: the 'running' range of ix_tasks_status_submitted, which holds at
    // most the fleet's slots.
    private const string BusySql = """
        SELECT worker_id, queue FROM fleet.tasks
        WHERE status = 'running' AND worker_id IS NOT NULL
        GROUP BY worker_id, queue
        """;

    // Executions that ended in the window (ix_tasks_finished); a cancel of a task that never started is no work done.
    // Dispatched tasks the dispatcher holds back only for their turn (their time has come, and no limit of their type
    // or tenant blocks them): work the lane has, though only a second of it is in the broker. Through
    // ix_tasks_dispatch_waiting; tasks held by a limit are left out, since more workers would not start them sooner.
    private const string DispatchableByLaneSql = """
        SELECT t.queue, count(*) FROM fleet.tasks t
        WHERE t.dispatched AND t.published_at IS NULL AND t.status = 'queued' AND (t.not_before IS NULL OR t.not_before <= now())
          AND NOT EXISTS (SELECT 1 FROM fleet.limits l
                          WHERE l.blocked_reason IS NOT NULL
                            AND ((l.scope = 'type' AND l.key = t.type) OR (l.scope = 'tenant' AND l.key = t.tenant)))
        GROUP BY t.queue
        """;

    private const string FinishedByLaneSql = """
        SELECT queue, count(*) FROM fleet.tasks
        WHERE finished_at >= now() - make_interval(secs => @window) AND started_at IS NOT NULL
          AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
        GROUP BY queue
        """;

    /// <summary>
    /// Tasks queued and running now, and final tasks finished since <paramref name="from"/> counted per 5-second
    /// bucket (Unix seconds / 5) and status; one connection.
    /// </summary>
    public async Task<(OpenCounts Open, List<(long Bucket, string Status, long Count)> Finished)> ReadStatsAsync(
        DateTimeOffset from, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        OpenCounts open;
        await using (var command = new NpgsqlCommand(OpenSql, connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            open = new OpenCounts(reader.GetInt64(0), reader.GetInt64(1));
        }

        var finished = new List<(long, string, long)>();
        await using (var command = new NpgsqlCommand(FinishedSql, connection))
        {
            command.Parameters.AddWithValue("from", from);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                finished.Add((reader.GetInt64(0), reader.GetString(1), reader.GetInt64(2)));
            }
        }

        return (open, finished);
    }

    /// <param name="staleSeconds">A worker unseen for longer is not live.</param>
    /// <param name="windowSeconds">The window of the finished counts.</param>
    public async Task<AutoscaleInputs> ReadAutoscaleInputsAsync(double staleSeconds, double windowSeconds, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var workers = new List<(string, string[], int, int)>();
        await using (var command = new NpgsqlCommand(LiveWorkersSql, connection))
        {
            command.Parameters.AddWithValue("stale", staleSeconds);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                workers.Add((reader.GetString(0), reader.GetFieldValue<string[]>(1), reader.GetInt32(2), reader.GetInt32(3)));
            }
        }

        var busy = new List<(string, string)>();
        await using (var command = new NpgsqlCommand(BusySql, connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                busy.Add((reader.GetString(0), reader.GetString(1)));
            }
        }

        var finished = new Dictionary<string, long>(StringComparer.Ordinal);
        await using (var command = new NpgsqlCommand(FinishedByLaneSql, connection))
        {
            command.Parameters.AddWithValue("window", windowSeconds);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                finished[reader.GetString(0)] = reader.GetInt64(1);
            }
        }

        var dispatchable = new Dictionary<string, long>(StringComparer.Ordinal);
        await using (var command = new NpgsqlCommand(DispatchableByLaneSql, connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                dispatchable[reader.GetString(0)] = reader.GetInt64(1);
            }
        }

        return new AutoscaleInputs(workers, busy, finished, dispatchable);
    }
}
