using System.Diagnostics;
using Fleet.Api.Models;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Api.Monitoring;

/// <summary>
/// <c>GET /stats</c>. Dashboards poll it every few seconds against a table of millions of rows, so no query here
/// scans the table, and the answer is shared:
/// <list type="bullet">
/// <item>open tasks: a range of <c>ix_tasks_status_submitted</c> per open status (index-only where the visibility map allows);</item>
/// <item>final tasks, throughput and the series: ranges of <c>ix_tasks_finished</c> over the last minute, 15 minutes,
/// hour and 24 hours; the series and throughput read only <c>finished_at</c>, which the index holds;</item>
/// <item>a snapshot is reused for <c>Api:StatsCacheSeconds</c>, and the 24-hour counts (the widest range) for
/// <c>Api:DailyCountsCacheSeconds</c>; concurrent requests wait for one computation instead of each running it.</item>
/// </list>
/// Status names of final states are counted as the worker writes them; a row without <c>finished_at</c> is never final.
/// </summary>
public sealed class StatsService(NpgsqlDataSource dataSource, RabbitMqManagementClient management, IOptions<ApiOptions> options) : IDisposable
{
    public const int BucketSeconds = 5;
    public const int SeriesBuckets = 180;

    private const string OpenSql = """
        SELECT now(),
               count(*) FILTER (WHERE status = 'queued'),
               count(*) FILTER (WHERE status = 'running')
        FROM fleet.tasks
        WHERE status IN ('queued', 'running')
        """;

    private const string WindowCountsSql = """
        SELECT status, count(*)
        FROM fleet.tasks
        WHERE finished_at > @since AND finished_at <= @until AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
        GROUP BY status
        """;

    private const string SeriesSql = """
        SELECT floor(extract(epoch FROM finished_at) / @bucket)::bigint, count(*)
        FROM fleet.tasks
        WHERE finished_at >= @from AND finished_at < @to
        GROUP BY 1
        """;

    private const string LastMinuteSql = """
        SELECT count(*) FROM fleet.tasks WHERE finished_at > @since AND finished_at <= @until
        """;

    private readonly SemaphoreSlim _gate = new(1, 1);
    private StatsSnapshot? _snapshot;
    private long _snapshotTakenAt;
    private FinalCounts? _daily;
    private long _dailyTakenAt;

    public async Task<StatsSnapshot> GetAsync(CancellationToken cancellationToken)
    {
        var api = options.Value;
        if (Fresh(_snapshot, _snapshotTakenAt, api.StatsCacheSeconds) is { } cached)
        {
            return cached;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Fresh(_snapshot, _snapshotTakenAt, api.StatsCacheSeconds) is { } fresh)
            {
                return fresh;
            }

            var queues = management.GetQueuesAsync(cancellationToken);
            var snapshot = await QueryAsync(api, cancellationToken).ConfigureAwait(false);
            var (depths, error) = await queues.ConfigureAwait(false);
            snapshot = snapshot with { Queues = depths, QueuesError = error };
            _snapshot = snapshot;
            _snapshotTakenAt = Stopwatch.GetTimestamp();
            return snapshot;
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<StatsSnapshot> QueryAsync(ApiOptions api, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        DateTimeOffset now;
        OpenCounts open;
        await using (var command = new NpgsqlCommand(OpenSql, connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            now = reader.GetFieldValue<DateTimeOffset>(0);
            open = new OpenCounts(reader.GetInt64(1), reader.GetInt64(2));
        }

        // Every window is anchored on the database's clock, the one that is closest to the workers' finished_at.
        var lastHour = await CountFinalAsync(connection, now.AddHours(-1), now, cancellationToken).ConfigureAwait(false);
        var daily = Fresh(_daily, _dailyTakenAt, api.DailyCountsCacheSeconds);
        if (daily is null)
        {
            daily = await CountFinalAsync(connection, now.AddHours(-24), now, cancellationToken).ConfigureAwait(false);
            _daily = daily;
            _dailyTakenAt = Stopwatch.GetTimestamp();
        }

        long lastMinute;
        await using (var command = new NpgsqlCommand(LastMinuteSql, connection))
        {
            command.Parameters.AddWithValue("since", now.AddMinutes(-1));
            command.Parameters.AddWithValue("until", now);
            lastMinute = (long)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        var series = await SeriesAsync(connection, now, cancellationToken).ConfigureAwait(false);
        return new StatsSnapshot(now, [], null, open, lastHour, daily, Math.Round(lastMinute / 60.0, 3), series);
    }

    private static async Task<FinalCounts> CountFinalAsync(NpgsqlConnection connection, DateTimeOffset since, DateTimeOffset until, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(WindowCountsSql, connection);
        command.Parameters.AddWithValue("since", since);
        command.Parameters.AddWithValue("until", until);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            counts[reader.GetString(0)] = reader.GetInt64(1);
        }

        return new FinalCounts(
            counts.GetValueOrDefault("succeeded"), counts.GetValueOrDefault("failed"),
            counts.GetValueOrDefault("timed_out"), counts.GetValueOrDefault("cancelled"));
    }

    /// <summary>The last <see cref="SeriesBuckets"/> complete 5-second buckets, empty ones included as 0.</summary>
    private static async Task<IReadOnlyList<ThroughputPoint>> SeriesAsync(NpgsqlConnection connection, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var endBucket = now.ToUnixTimeSeconds() / BucketSeconds;
        var firstBucket = endBucket - SeriesBuckets;
        await using var command = new NpgsqlCommand(SeriesSql, connection);
        command.Parameters.AddWithValue("bucket", (double)BucketSeconds);
        command.Parameters.AddWithValue("from", DateTimeOffset.FromUnixTimeSeconds(firstBucket * BucketSeconds));
        command.Parameters.AddWithValue("to", DateTimeOffset.FromUnixTimeSeconds(endBucket * BucketSeconds));
        var counts = new Dictionary<long, long>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                counts[reader.GetInt64(0)] = reader.GetInt64(1);
            }
        }

        var points = new ThroughputPoint[SeriesBuckets];
        for (var i = 0; i < SeriesBuckets; i++)
        {
            var bucket = firstBucket + i;
            points[i] = new ThroughputPoint(DateTimeOffset.FromUnixTimeSeconds(bucket * BucketSeconds), counts.GetValueOrDefault(bucket));
        }

        return points;
    }

    private static T? Fresh<T>(T? value, long takenAt, double maxAgeSeconds)
        where T : class =>
        value is not null && Stopwatch.GetElapsedTime(takenAt).TotalSeconds < maxAgeSeconds ? value : null;

    public void Dispose() => _gate.Dispose();
}
