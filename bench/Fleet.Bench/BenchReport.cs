using Fleet.Client;

namespace Fleet.Bench;

/// <summary>Everything one <c>fleet-bench</c> invocation measured; written as JSON and as a Markdown table.</summary>
internal sealed record BenchReport
{
    public required DateTimeOffset StartedAt { get; init; }

    public required MachineInfo Machine { get; init; }

    public required IReadOnlyList<WorkloadResult> Workloads { get; init; }

    public IReadOnlyList<RawBrokerResult> RawBroker { get; init; } = [];

    /// <summary>The broker's memory with a backlog of one noop run's size in a queue of the lanes' type (null: not measured).</summary>
    public BacklogResult? Backlog { get; init; }

    /// <summary>What is special about the fleet measured (<c>--label</c>), or null.</summary>
    public string? Label { get; init; }

    /// <summary>The lanes' queue type the bench declared with (the workers' own setting must match it).</summary>
    public BrokerQueueType QueueType { get; init; }

    /// <summary>How many broker nodes the connection string lists.</summary>
    public int BrokerNodes { get; init; } = 1;

    /// <summary>Median raw-broker rate of this invocation, or null without a baseline.</summary>
    public double? RawBrokerMedianRate => RawBroker.Count == 0 ? null : SingleTaskTimer.Median([.. RawBroker.Select(r => r.RatePerSecond)]);
}

internal sealed record MachineInfo(string Host, int ProcessorCount, int CoresUsed, string Os, string Runtime, string? CpuModel, int Workers);

/// <summary>The runs of one workload in one mode (closed loop: all at once; open loop: at a fixed arrival rate).</summary>
internal sealed record WorkloadResult
{
    public required string Workload { get; init; }

    public required string Mode { get; init; }

    public required int Count { get; init; }

    /// <summary>Target arrival rate in tasks/s (open loop), else null.</summary>
    public double? ArrivalRate { get; init; }

    public SingleTaskTime? SingleTask { get; init; }

    public required IReadOnlyList<RunResult> Runs { get; init; }

    public double MedianThroughput => SingleTaskTimer.Median([.. Runs.Select(r => r.Throughput)]);
}

/// <summary>One run of one workload, read back from PostgreSQL and /proc.</summary>
internal sealed record RunResult
{
    public required int Run { get; init; }

    public required Guid BatchId { get; init; }

    public required long Tasks { get; init; }

    public required long Succeeded { get; init; }

    public required long NotSucceeded { get; init; }

    /// <summary>Seconds from the first <c>submitted_at</c> to the last <c>finished_at</c> of the batch.</summary>
    public required double WallSeconds { get; init; }

    /// <summary>Seconds the producer took to submit the whole batch (client side).</summary>
    public required double SubmitSeconds { get; init; }

    public required double Throughput { get; init; }

    public required double LatencyP50Ms { get; init; }

    public required double LatencyP95Ms { get; init; }

    public required double LatencyP99Ms { get; init; }

    /// <summary>Tasks/s over the first tenth of the run's finishes, from the first submit (null below 100 tasks).</summary>
    public double? FirstTenthRate { get; init; }

    /// <summary>Tasks/s over the last tenth of the run's finishes; against <see cref="FirstTenthRate"/> it shows growth effects.</summary>
    public double? LastTenthRate { get; init; }

    /// <summary>Last tenth's rate over the first tenth's (under 1: the fleet slowed down as its tables grew).</summary>
    public double? GrowthRatio => FirstTenthRate is > 0 && LastTenthRate is { } last ? last / FirstTenthRate : null;

    /// <summary>Parallel efficiency (CPU workloads): single-task time x N / (wall x cores).</summary>
    public double? Efficiency { get; init; }

    /// <summary>
    /// CPU workloads: single-task CPU time x N / CPU seconds of the workers, i.e. the share of the workers' CPU that
    /// was task work. Unlike <see cref="Efficiency"/> it does not drop when other programs take the cores.
    /// </summary>
    public double? UsefulWorkerCpuFraction { get; init; }

    public required IReadOnlyList<WorkerSample> Workers { get; init; }

    /// <summary>CPU seconds (user + system) spent during the run, by component: workers, rabbitmq, postgres, bench.</summary>
    public required IReadOnlyDictionary<string, double> CpuSeconds { get; init; }

    /// <summary>The broker's memory during the run (null when not sampled).</summary>
    public BrokerMemory? BrokerMemory { get; init; }
}

/// <summary>A worker process seen during a run: its pid, peak RSS and CPU seconds of the run.</summary>
internal sealed record WorkerSample(string WorkerId, int Pid, long? PeakRssBytes, bool PeakIsPerRun, double CpuSeconds);
