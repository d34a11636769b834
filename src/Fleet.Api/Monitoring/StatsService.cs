using Fleet.Api.Models;
using Fleet.Client;
using Fleet.Contracts;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Monitoring;

/// <summary>
/// <c>GET /stats</c>. Dashboards poll it every few seconds against a table of millions of rows, so nothing here
/// scans the table, and the answer is shared:
/// <list type="bullet">
/// <item>open tasks: the <c>queued</c> and <c>running</c> ranges of <c>ix_tasks_status_submitted</c> (index-only);</item>
/// <item>final tasks, the throughput and the series: <see cref="FinishedBuckets"/>, which recounts only the last
/// minute of <c>ix_tasks_finished</c> per refresh;</item>
/// <item>both read by <see cref="MonitoringQueries.ReadStatsAsync"/>, on one connection;</item>
/// <item>queue depths: one call to the RabbitMQ management API, concurrent with the queries;</item>
/// <item>a snapshot is reused for <c>Api:StatsCacheSeconds</c>, and concurrent requests wait for one refresh
/// instead of each running it.</item>
/// </list>
/// Windows end at the now of the <see cref="TimeProvider"/> keyed <see cref="ClockKey"/> (the system clock, or a
/// test's fake one) and are rounded to whole 5-second buckets.
/// </summary>
public sealed class StatsService(
    MonitoringQueries queries,
    RabbitMqManagementClient management,
    QueuePauses pauses,
    IOptions<ApiOptions> options,
    [FromKeyedServices(StatsService.ClockKey)] TimeProvider clock) : IDisposable
{
    public const int SeriesBuckets = 180;

    /// <summary>The service key of the stats clock.</summary>
    public const string ClockKey = "fleet-stats-clock";

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly FinishedBuckets _finished = new();
    private StatsSnapshot? _snapshot;
    private long _snapshotTakenAt;

    public async Task<StatsSnapshot> GetAsync(CancellationToken cancellationToken)
    {
        var api = options.Value;
        if (Fresh(api) is { } cached)
        {
            return cached;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Fresh(api) is { } fresh)
            {
                return fresh;
            }

            var queues = management.GetQueuesAsync(cancellationToken);
            var snapshot = await QueryAsync(api, cancellationToken).ConfigureAwait(false);
            var states = (await pauses.ListAsync(cancellationToken).ConfigureAwait(false)).ToDictionary(q => q.Queue, StringComparer.Ordinal);
            var (depths, error) = await queues.ConfigureAwait(false);

            // A paused queue's queues (the queue, its dispatch queue) say so: their backlog waits for the resume. The
            // queues of fleet.queues carry their lane (the dashboard offers Pause for them).
            depths = [.. depths.Select(d => d with
            {
                Paused = states.GetValueOrDefault(TaskQueues.LaneOf(d.Name))?.Paused == true,
                Lane = states.GetValueOrDefault(d.Name)?.Lane,
            })];
            _snapshot = snapshot with { Queues = depths, QueuesError = error };
            _snapshotTakenAt = clock.GetTimestamp();
            return _snapshot;
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<StatsSnapshot> QueryAsync(ApiOptions api, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        var plan = _finished.Plan(now, TimeSpan.FromSeconds(api.StatsRecountSeconds), TimeSpan.FromMinutes(api.StatsResyncMinutes));
        var (open, finished) = await queries.ReadStatsAsync(FinishedBuckets.StartOf(plan.From), cancellationToken).ConfigureAwait(false);
        _finished.Replace(now, plan, finished);

        // The current bucket is still filling: windows "up to now" include it, the series and the rate do not.
        var current = FinishedBuckets.BucketOf(now);
        var lastHour = _finished.Sum(current - (3600 / FinishedBuckets.BucketSeconds), current);
        var last24h = _finished.Sum(current - FinishedBuckets.BucketsPerDay, current);
        var minuteBuckets = 60 / FinishedBuckets.BucketSeconds;
        long lastMinute = 0;
        for (var b = current - minuteBuckets; b < current; b++)
        {
            lastMinute += _finished.Total(b);
        }

        var series = new ThroughputPoint[SeriesBuckets];
        for (var i = 0; i < SeriesBuckets; i++)
        {
            var bucket = current - SeriesBuckets + i;
            series[i] = new ThroughputPoint(FinishedBuckets.StartOf(bucket), _finished.Total(bucket));
        }

        return new StatsSnapshot(now, [], null, open, lastHour, last24h, Math.Round(lastMinute / 60.0, 3), series);
    }

    private StatsSnapshot? Fresh(ApiOptions api) =>
        _snapshot is not null && clock.GetElapsedTime(_snapshotTakenAt).TotalSeconds < api.StatsCacheSeconds ? _snapshot : null;

    public void Dispose() => _gate.Dispose();
}
