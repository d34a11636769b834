using System.ComponentModel;

namespace Fleet.Api.Models;

/// <summary>One worker process (<c>GET /workers</c>).</summary>
public sealed record WorkerInfo(
    string Id,
    string Host,
    int Pid,
    IReadOnlyList<string> Queues,
    int CpuConcurrency,
    int IoConcurrency,
    [property: Description("As the worker last wrote it: running, draining or stopped.")] string State,
    [property: Description("Not stopped, and a heartbeat within Api:WorkerStaleSeconds.")] bool Live,
    DateTimeOffset LastSeenAt,
    long TasksSucceeded,
    long TasksFailed,
    long TasksSkipped,
    DateTimeOffset StartedAt,
    [property: Description("Tasks of this worker now running from fleet-cpu.")] long RunningCpu,
    [property: Description("Tasks of this worker now running from other queues.")] long RunningIo,
    [property: Description("Child processes its process lane may run at once; 0 when it has no process lane.")] int ProcessSlots,
    [property: Description("Process-lane tasks in a child, or waiting for one to start, at its last heartbeat.")] int ProcessBusy,
    [property: Description("Process-lane children started since the worker started: the first ones and every replacement.")] long ProcessChildrenStarted,
    [property: Description("Process-lane children killed: at a time limit or cancel (after Worker:ProcessKillGraceSeconds), or over Worker:ProcessMaxRssMb.")] long ProcessKills,
    [property: Description("Process-lane children that died by themselves (crash, fail-fast, OOM killer).")] long ProcessDeaths);

/// <summary>One RabbitMQ queue of the fleet's vhost (durable queues only).</summary>
public sealed record QueueDepth(
    string Name,
    long Ready,
    long Unacked,
    int Consumers,
    [property: Description("The queue's lane is paused (POST /queues/{name}/pause): no worker consumes it until it is resumed. Set in /stats only.")] bool Paused = false)
{
    [Description("For a queue of fleet.queues (fleet-cpu, fleet-io, a declared worker group's queue): its lane, cpu or io; such a queue can be paused. Null for dispatch, error and other queues. Set in /stats only.")]
    public string? Lane { get; init; }
}

/// <summary>Open tasks, counted through the status index.</summary>
public sealed record OpenCounts(long Queued, long Running);

/// <summary>Tasks that reached a final state within a window, counted through <c>ix_tasks_finished</c>.</summary>
public sealed record FinalCounts(long Succeeded, long Failed, long TimedOut, long Cancelled);

/// <summary>Tasks that reached a final state in the 5-second bucket starting at <c>t</c>.</summary>
public sealed record ThroughputPoint(DateTimeOffset T, long Finished);

/// <summary><c>GET /stats</c>.</summary>
public sealed record StatsSnapshot(
    [property: Description("Database time the snapshot was taken.")] DateTimeOffset GeneratedAt,
    IReadOnlyList<QueueDepth> Queues,
    [property: Description("Why queues is empty, when it is: management API not configured or not answering.")] string? QueuesError,
    OpenCounts Open,
    FinalCounts LastHour,
    FinalCounts Last24h,
    [property: Description("Tasks finished per second over the last 60 s.")] double ThroughputLastMinute,
    [property: Description("180 five-second buckets covering the last 15 minutes, oldest first; the last one is the latest complete bucket.")] IReadOnlyList<ThroughputPoint> Series);
