using System.Diagnostics;
using System.Diagnostics.Metrics;
using Fleet.Persistence;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Fleet.Worker;

/// <summary>
/// The worker's own traces and metrics (ActivitySource and Meter <c>Fleet.Worker</c>). On <c>/metrics</c> the
/// instruments appear as <c>fleet_tasks_finished_total{type,lane,status}</c>, <c>fleet_task_retries_total{type,lane}</c>,
/// <c>fleet_tasks_skipped_total</c>, <c>fleet_task_duration_seconds{type,lane}</c>,
/// <c>fleet_task_queue_wait_seconds{type,lane}</c> and <c>fleet_lane_busy</c> / <c>fleet_lane_capacity</c>
/// (utilisation = busy / capacity). docs/observability.md lists them.
/// </summary>
public sealed class WorkerTelemetry : IDisposable
{
    /// <summary>
    /// Bucket bounds in seconds, from a noop's millisecond to the 30-minute broker limit. Without them the exporter
    /// uses its default bounds (0, 5, 10 ... 10,000), which are meant for milliseconds and put every task of under
    /// five seconds in one bucket, so p50/p95 panels showed seconds for millisecond tasks.
    /// </summary>
    private static readonly InstrumentAdvice<double> SecondsBuckets = new()
    {
        HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    };

    public const string Name = "Fleet.Worker";

    public static readonly ActivitySource Source = new(Name);

    private readonly Meter _meter;
    private readonly Counter<long> _finished;
    private readonly Counter<long> _retries;
    private readonly Counter<long> _skipped;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _queueWait;

    public WorkerTelemetry(IMeterFactory meterFactory, WorkerCounters counters, CpuLane cpuLane, Microsoft.Extensions.Options.IOptions<WorkerOptions> options)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        var io = options.Value.IoConcurrency;
        _meter = meterFactory.Create(Name);
        _finished = _meter.CreateCounter<long>("fleet.tasks.finished", description: "Executions that ended, by type, lane and status.");
        _retries = _meter.CreateCounter<long>("fleet.task.retries", description: "Failed executions sent back for another attempt.");
        _skipped = _meter.CreateCounter<long>("fleet.tasks.skipped", description: "Deliveries of tasks already final, acknowledged without running.");
        _duration = _meter.CreateHistogram("fleet.task.duration", unit: "s", description: "Execution time, claim to result.", tags: null, advice: SecondsBuckets);
        _queueWait = _meter.CreateHistogram("fleet.task.queue_wait", unit: "s", description: "From submit to the start of execution.", tags: null, advice: SecondsBuckets);
        _meter.CreateObservableGauge("fleet.lane.busy", () => new[]
        {
            new Measurement<int>(counters.CpuBusy, new KeyValuePair<string, object?>("lane", "cpu")),
            new Measurement<int>(counters.IoBusy, new KeyValuePair<string, object?>("lane", "io")),
        }, description: "Tasks running in each lane now.");
        _meter.CreateObservableGauge("fleet.lane.capacity", () => new[]
        {
            new Measurement<int>(cpuLane.Concurrency, new KeyValuePair<string, object?>("lane", "cpu")),
            new Measurement<int>(io, new KeyValuePair<string, object?>("lane", "io")),
        }, description: "Tasks each lane may run at once.");
    }

    public void Finished(string type, string lane, string status, double seconds)
    {
        var tags = new TagList { { "type", type }, { "lane", lane }, { "status", status } };
        _finished.Add(1, tags);
        _duration.Record(seconds, new TagList { { "type", type }, { "lane", lane } });
    }

    public void Retried(string type, string lane) => _retries.Add(1, new TagList { { "type", type }, { "lane", lane } });

    public void Skipped() => _skipped.Add(1);

    public void QueueWait(string type, string lane, TimeSpan wait) =>
        _queueWait.Record(Math.Max(0, wait.TotalSeconds), new TagList { { "type", type }, { "lane", lane } });

    /// <summary>
    /// A span for one task's wait on a batched database write, in the task's trace; null when no tracer listens.
    /// The write itself is traced by the batch's <c>Fleet.Persistence</c> span, which links to this one.
    /// </summary>
    public static Activity? StartDatabaseWrite(string name)
    {
        var activity = Source.StartActivity(name, ActivityKind.Internal);
        activity?.SetTag("db.system.name", "postgresql");
        return activity;
    }

    public void Dispose() => _meter.Dispose();
}

/// <summary>Ready only while result writes reach the database (see <see cref="TaskLedger.OutageSince"/>).</summary>
public sealed class DatabaseWritesHealthCheck(TaskLedger ledger) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(ledger.OutageSince is { } since
            ? HealthCheckResult.Unhealthy($"database writes failing since {since:O}; tasks are held until it answers")
            : HealthCheckResult.Healthy());
}
