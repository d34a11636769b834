namespace Fleet.Worker;

/// <summary>Totals reported by the heartbeat to <c>fleet.workers</c>.</summary>
public sealed class WorkerCounters
{
    private long _succeeded;
    private long _failed;
    private long _skipped;
    private long _retried;
    private long _abandoned;
    private int _cpuBusy;
    private int _ioBusy;

    public long Succeeded => Interlocked.Read(ref _succeeded);

    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Deliveries of tasks that were already final, acknowledged without running.</summary>
    public long Skipped => Interlocked.Read(ref _skipped);

    /// <summary>Failed executions sent back to the queue after a backoff.</summary>
    public long Retried => Interlocked.Read(ref _retried);

    /// <summary>Executions given up on because the handler ignored its time limit.</summary>
    public long Abandoned => Interlocked.Read(ref _abandoned);

    public int CpuBusy => Volatile.Read(ref _cpuBusy);

    public int IoBusy => Volatile.Read(ref _ioBusy);

    public void AddSucceeded() => Interlocked.Increment(ref _succeeded);

    public void AddFailed() => Interlocked.Increment(ref _failed);

    public void AddSkipped() => Interlocked.Increment(ref _skipped);

    public void AddRetried() => Interlocked.Increment(ref _retried);

    public void AddAbandoned() => Interlocked.Increment(ref _abandoned);

    public void EnterLane(bool cpu) => Interlocked.Increment(ref cpu ? ref _cpuBusy : ref _ioBusy);

    public void ExitLane(bool cpu) => Interlocked.Decrement(ref cpu ? ref _cpuBusy : ref _ioBusy);
}
