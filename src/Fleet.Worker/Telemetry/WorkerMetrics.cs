using System.Diagnostics;
using System.Diagnostics.Metrics;
using Fleet.Persistence.Entities;
using Microsoft.Extensions.Options;

namespace Fleet.Worker.Telemetry;

/// <summary>
/// Everything the worker counts, each event recorded by one call: the totals the heartbeat writes to
/// <c>fleet.workers</c>, and the instruments of the Meter <c>Fleet.Worker</c>, which appear on <c>/metrics</c> as
/// <c>fleet_tasks_finished_total{type,lane,status}</c>, <c>fleet_task_retries_total{type,lane}</c>,
/// <c>fleet_tasks_skipped_total</c>,
/// <c>fleet_task_duration_seconds{type,lane}</c>, <c>fleet_task_queue_wait_seconds{type,lane}</c> and
/// <c>fleet_lane_busy</c> / <c>fleet_lane_capacity</c> (utilisation = busy / capacity). docs/observability.md lists them;
/// the process lane's instruments, on the same meter, are <see cref="ProcessLaneMetrics"/>'.
/// The worker's traces come from <see cref="Source"/> (ActivitySource <c>Fleet.Worker</c>).
/// </summary>
public sealed class WorkerMetrics : IDisposable
{
    public const string Name = "Fleet.Worker";

    public static readonly ActivitySource Source = new(Name);

    /// <summary>
    /// Bucket bounds in seconds, from a noop's millisecond to the 30-minute broker limit. Without them the exporter
    /// uses its default bounds (0, 5, 10 ... 10,000), which are meant for milliseconds and put every task of under
    /// five seconds in one bucket, so p50/p95 panels showed seconds for millisecond tasks.
    /// </summary>
    private static readonly InstrumentAdvice<double> SecondsBuckets = new()
    {
        HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    };

    private readonly Meter _meter;
    private readonly Counter<long> _finished;
    private readonly Counter<long> _retries;
    private readonly Counter<long> _skipped;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _queueWait;
    private long _succeeded;
    private long _failed;
    private long _skippedTotal;
    private long _retried;
    private long _abandoned;
    private int _cpuBusy;
    private int _ioBusy;

    /// <param name="meterFactory">The host's; without one (unit tests) the meter is the class's own.</param>
    /// <param name="options">The lanes' capacities (<c>CpuConcurrency</c>, <c>IoConcurrency</c>).</param>
    public WorkerMetrics(IMeterFactory? meterFactory, IOptions<WorkerOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var cpu = options.Value.CpuConcurrency;
        var io = options.Value.IoConcurrency;
        _meter = meterFactory?.Create(Name) ?? new Meter(Name);
        _finished = _meter.CreateCounter<long>("fleet.tasks.finished", description: "Executions that ended, by type, lane and status.");
        _retries = _meter.CreateCounter<long>("fleet.task.retries", description: "Failed executions committed for another attempt after a backoff.");
        _skipped = _meter.CreateCounter<long>("fleet.tasks.skipped", description: "Deliveries of tasks already final, acknowledged without running.");
        _duration = _meter.CreateHistogram("fleet.task.duration", unit: "s", description: "Execution time, claim to result.", tags: null, advice: SecondsBuckets);
        _queueWait = _meter.CreateHistogram("fleet.task.queue_wait", unit: "s", description: "From submit to the start of execution.", tags: null, advice: SecondsBuckets);
        _meter.CreateObservableGauge("fleet.lane.busy", () => new[]
        {
            new Measurement<int>(CpuBusy, new KeyValuePair<string, object?>("lane", "cpu")),
            new Measurement<int>(IoBusy, new KeyValuePair<string, object?>("lane", "io")),
        }, description: "Tasks running in each lane now.");
        _meter.CreateObservableGauge("fleet.lane.capacity", () => new[]
        {
            new Measurement<int>(cpu, new KeyValuePair<string, object?>("lane", "cpu")),
            new Measurement<int>(io, new KeyValuePair<string, object?>("lane", "io")),
        }, description: "Tasks each lane may run at once.");
    }

    /// <summary>Executions that ended succeeded, since the worker started (<c>fleet.workers.tasks_succeeded</c>).</summary>
    public long Succeeded => Interlocked.Read(ref _succeeded);

    /// <summary>Executions that ended otherwise: failed, timed out, cancelled (<c>fleet.workers.tasks_failed</c>).</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Deliveries of tasks that were already final, acknowledged without running (<c>fleet.workers.tasks_skipped</c>).</summary>
    public long Skipped => Interlocked.Read(ref _skippedTotal);

    /// <summary>Failed executions committed for another attempt after a backoff.</summary>
    public long Retried => Interlocked.Read(ref _retried);

    /// <summary>Executions given up on because the handler ignored its time limit.</summary>
    public long Abandoned => Interlocked.Read(ref _abandoned);

    public int CpuBusy => Volatile.Read(ref _cpuBusy);

    public int IoBusy => Volatile.Read(ref _ioBusy);

    /// <summary>An execution ended with a final <paramref name="status"/> after <paramref name="seconds"/>.</summary>
    public void AddFinished(string type, string lane, string status, double seconds)
    {
        Interlocked.Increment(ref status == TaskState.Succeeded ? ref _succeeded : ref _failed);
        _finished.Add(1, new TagList { { "type", type }, { "lane", lane }, { "status", status } });
        _duration.Record(seconds, new TagList { { "type", type }, { "lane", lane } });
    }

    /// <summary>A failed execution was committed for another attempt.</summary>
    public void AddRetried(string type, string lane)
    {
        Interlocked.Increment(ref _retried);
        _retries.Add(1, new TagList { { "type", type }, { "lane", lane } });
    }

    /// <summary>A delivery of a task already final was acknowledged without running.</summary>
    public void AddSkipped()
    {
        Interlocked.Increment(ref _skippedTotal);
        _skipped.Add(1);
    }

    /// <summary>An execution was given up on at its hard stop: its handler ignored the time limit.</summary>
    public void AddAbandoned() => Interlocked.Increment(ref _abandoned);

    public void RecordQueueWait(string type, string lane, TimeSpan wait) =>
        _queueWait.Record(Math.Max(0, wait.TotalSeconds), new TagList { { "type", type }, { "lane", lane } });

    /// <summary>A handler runs in its lane (<c>fleet.lane.busy</c>) until the result is disposed.</summary>
    public Busy Running(bool cpu)
    {
        Interlocked.Increment(ref cpu ? ref _cpuBusy : ref _ioBusy);
        return new Busy(this, cpu);
    }

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

    /// <summary>One running handler; a struct, so counting costs no allocation per task.</summary>
    public readonly struct Busy(WorkerMetrics owner, bool cpu) : IDisposable
    {
        public void Dispose() => Interlocked.Decrement(ref cpu ? ref owner._cpuBusy : ref owner._ioBusy);
    }
}
