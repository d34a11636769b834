namespace Fleet.Persistence.Entities;

/// <summary>One worker process (<c>fleet.workers</c>), kept fresh by its heartbeat.</summary>
public sealed class FleetWorker
{
    /// <summary><c>host:pid:suffix</c>, unique per process start.</summary>
    public required string Id { get; set; }

    public required string Host { get; set; }

    public int Pid { get; set; }

    public string[] Queues { get; set; } = [];

    public int CpuConcurrency { get; set; }

    public int IoConcurrency { get; set; }

    public DateTimeOffset StartedAt { get; set; }

    public DateTimeOffset LastSeenAt { get; set; }

    /// <summary>One of <see cref="WorkerState"/>.</summary>
    public required string State { get; set; }

    public long TasksSucceeded { get; set; }

    public long TasksFailed { get; set; }

    /// <summary>Deliveries acknowledged without running because the task was already final (duplicates).</summary>
    public long TasksSkipped { get; set; }

    public string? Version { get; set; }

    /// <summary>
    /// The tasks whose messages this worker held at its last heartbeat (running, committing, or waiting for a CPU
    /// lane thread). The reconciler reads it to tell a task in a live worker's hands from one whose message is gone.
    /// </summary>
    public Guid[] HeldTasks { get; set; } = [];

    /// <summary>Child processes the process lane may run at once; 0 when the worker has no process lane.</summary>
    public int ProcessSlots { get; set; }

    /// <summary>Process-lane tasks running in a child, or waiting for one to start, at the last heartbeat.</summary>
    public int ProcessBusy { get; set; }

    /// <summary>Process-lane children started since the worker started: the first ones and every replacement.</summary>
    public long ProcessChildrenStarted { get; set; }

    /// <summary>Children the worker killed: at a task's time limit or a cancel (no stop within the grace), or over the memory limit.</summary>
    public long ProcessKills { get; set; }

    /// <summary>Children that died by themselves (crash, fail-fast, the kernel's OOM killer).</summary>
    public long ProcessDeaths { get; set; }
}
