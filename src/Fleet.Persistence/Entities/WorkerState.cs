namespace Fleet.Persistence.Entities;

/// <summary>A worker process's state in <c>fleet.workers.state</c>.</summary>
public static class WorkerState
{
    public const string Running = "running";
    public const string Draining = "draining";
    public const string Stopped = "stopped";
}
