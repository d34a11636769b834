namespace Fleet.Tasks;

/// <summary>Where a handler runs inside a worker.</summary>
public enum TaskLane
{
    /// <summary>CPU-bound work: runs on the worker's dedicated CPU threads, at most <c>Worker:CpuConcurrency</c> at once.</summary>
    Cpu,

    /// <summary>I/O-bound work: runs async on the thread pool, up to <c>Worker:IoConcurrency</c> in flight.</summary>
    Io,
}
