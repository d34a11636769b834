using System.Diagnostics.Metrics;
using Fleet.Worker.ProcessLane;

namespace Fleet.Worker.Telemetry;

/// <summary>
/// The process lane as an operator sees it: observable instruments of the Meter <c>Fleet.Worker</c> read from the
/// <see cref="ProcessPool"/>'s counters at each collection, which appear on <c>/metrics</c> as
/// <c>fleet_process_lane_slots</c>, <c>fleet_process_lane_busy</c>, <c>fleet_process_lane_children</c>,
/// <c>fleet_process_lane_children_started_total</c>, <c>fleet_process_lane_kills_total{reason}</c>,
/// <c>fleet_process_lane_deaths_total</c> and <c>fleet_process_lane_recycled_total</c> (docs/observability.md); and
/// the same figures as the heartbeat writes them to <c>fleet.workers</c>. A worker without a process lane shows
/// every one of them as 0, so that fleet-wide sums need no special case for it.
/// </summary>
public sealed class ProcessLaneMetrics : IDisposable
{
    /// <summary>The <c>reason</c> of <c>fleet.process_lane.kills</c> for a child that outlived a time limit or cancel by its grace.</summary>
    public const string TimeLimitReason = "time_limit";

    /// <summary>The <c>reason</c> of <c>fleet.process_lane.kills</c> for a child over <c>Worker:ProcessMaxRssMb</c>.</summary>
    public const string MemoryReason = "memory";

    private readonly Meter _meter;
    private readonly ProcessPool _pool;

    /// <param name="meterFactory">The host's; without one (unit tests) the meter is the class's own.</param>
    /// <param name="pool">The worker's process lane, whose counters the instruments read.</param>
    public ProcessLaneMetrics(IMeterFactory? meterFactory, ProcessPool pool)
    {
        ArgumentNullException.ThrowIfNull(pool);
        _pool = pool;
        Types = pool.Types;
        Slots = pool.Slots;
        _meter = meterFactory?.Create(WorkerMetrics.Name) ?? new Meter(WorkerMetrics.Name);
        _meter.CreateObservableGauge("fleet.process_lane.slots", () => Slots, description: "Child processes the process lane may run at once (0: no process lane).");
        _meter.CreateObservableGauge("fleet.process_lane.busy", () => Busy, description: "Process-lane tasks running in a child, or waiting for one to start, now.");
        _meter.CreateObservableGauge("fleet.process_lane.children", () => _pool.LiveChildren, description: "Child processes alive now, busy or idle.");
        _meter.CreateObservableCounter("fleet.process_lane.children_started", () => ChildrenStarted, description: "Child processes started: the first ones and every replacement.");
        _meter.CreateObservableCounter("fleet.process_lane.kills", () => new[]
        {
            new Measurement<long>(_pool.KilledAtLimit, new KeyValuePair<string, object?>("reason", TimeLimitReason)),
            new Measurement<long>(_pool.KilledForMemory, new KeyValuePair<string, object?>("reason", MemoryReason)),
        }, description: "Child processes killed during a task: past its time limit or cancel and the grace, or over the memory limit.");
        _meter.CreateObservableCounter("fleet.process_lane.deaths", () => Deaths, description: "Child processes that died by themselves (crash, fail-fast, OOM killer).");
        _meter.CreateObservableCounter("fleet.process_lane.recycled", () => _pool.Recycled, description: "Child processes retired between tasks: after Worker:ProcessMaxTasks, or over the memory limit.");
    }

    /// <summary>The task types that run in child processes here, sorted; empty without a process lane.</summary>
    public IReadOnlyList<string> Types { get; }

    /// <summary>Children that may run at once; 0 when no type runs in the process lane (<c>fleet.workers.process_slots</c>).</summary>
    public int Slots { get; }

    /// <summary>Tasks in a child, or waiting for one to start, now (<c>fleet.workers.process_busy</c>).</summary>
    public int Busy => _pool.Busy;

    /// <summary>Children started since the worker started (<c>fleet.workers.process_children_started</c>).</summary>
    public long ChildrenStarted => _pool.ChildrenStarted;

    /// <summary>Children killed at a time limit or cancel, and over the memory limit (<c>fleet.workers.process_kills</c>).</summary>
    public long Kills => _pool.KilledAtLimit + _pool.KilledForMemory;

    /// <summary>Children that died by themselves (<c>fleet.workers.process_deaths</c>).</summary>
    public long Deaths => _pool.Died;

    public void Dispose() => _meter.Dispose();
}
