namespace Fleet.Client;

/// <summary>A batch's outcome (<see cref="TaskReads.GetBatchReportAsync"/>).</summary>
/// <param name="Timing">Null when no task of the batch succeeded.</param>
public sealed record BatchReport(
    Guid BatchId, BatchOverview Overview, BatchTiming? Timing, IReadOnlyList<BatchWorkerLine> Workers, IReadOnlyList<BatchErrorLine> Errors);

/// <summary>Counts of a batch's tasks, its wall time (first submit to last result) and its executions.</summary>
public sealed record BatchOverview(long Tasks, long Succeeded, long Failed, long TimedOut, long Cancelled, double WallSeconds, long Executions);

/// <summary>Run time and latency (submit to result) of a batch's successful tasks, in milliseconds.</summary>
public sealed record BatchTiming(double RunP50Ms, double RunP95Ms, double CpuAverageMs, double LatencyP50Ms, double LatencyP95Ms);

/// <summary>The tasks one worker ran of a batch (last executions) and their average run time.</summary>
public sealed record BatchWorkerLine(string Host, string? WorkerId, long Tasks, double AverageMs);

/// <summary>One of a batch's commonest errors: type, message (cut at 120 characters) and how many tasks ended with it.</summary>
public sealed record BatchErrorLine(string? ErrorType, string? Message, long Count);
