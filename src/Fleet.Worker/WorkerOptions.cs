using System.ComponentModel.DataAnnotations;
using Fleet.Contracts;
using Fleet.Tasks.BuiltIn;

namespace Fleet.Worker;

/// <summary>
/// The <c>Worker</c> section. Every value has a default that works on a developer machine:
/// <code>
/// "Worker": {
///   "Queues": [ "fleet-cpu", "fleet-io" ],
///   "CpuConcurrency": 2,            // default: processor count
///   "CpuClaimAhead": 2,             // default: CpuConcurrency
///   "CpuLookahead": 2,              // default: CpuConcurrency
///   "ProcessTypes": [ "native-render" ], // run in child processes (the process lane)
///   "ProcessConcurrency": 2,        // default: CpuConcurrency
///   "ProcessKillGraceSeconds": 2,
///   "ProcessMaxRssMb": 0,           // 0: no limit
///   "ProcessMaxTasks": 0,           // 0: a child runs tasks until it dies or the worker stops
///   "IoConcurrency": 256,
///   "DrainSeconds": 30,
///   "HeartbeatSeconds": 5,
///   "DefaultTimeoutSeconds": 600,
///   "MaxTimeoutSeconds": 1500,
///   "HardStopGraceSeconds": 5,
///   "RetryBaseSeconds": 1,
///   "RetryMaxSeconds": 300,
///   "MaxDatabaseOutageSeconds": 600,
///   "HostName": "web-01",           // default: machine name
///   "WriteBatchSize": 500,
///   "ConsumerTimeoutSeconds": 1800, // the broker's consumer_timeout
///   "CrashLoopDeaths": 3,
///   "ReconcileIntervalSeconds": 15,  // 0: this worker never reconciles
///   "ReconcileAfterSeconds": 60,
///   "ReconcileBatchSize": 1000,
///   "DueRelayIntervalMs": 500,       // delayed tasks and retries; 0: this worker does not publish them
///   "ProgressFlushMilliseconds": 1000, // how often handlers' progress reports are written
///   "PauseCheckSeconds": 2,          // how soon a paused or resumed lane stops or starts being consumed
///   "HttpGet": { "AllowedHosts": [ "127.0.0.1" ], "MaxResponseBytes": 16777216, "DeniedNetworks": [ "link-local,metadata,unspecified" ] }
/// }
/// </code>
/// </summary>
public sealed class WorkerOptions : IValidatableObject
{
    public const string SectionName = "Worker";

    /// <summary>
    /// The queues this worker consumes; both built-in lanes when not configured. A worker group's queue (declared in the
    /// API's <c>Api:Queues</c>) is consumed only by workers that list it, with the lane <c>fleet.queues</c> gives it. (No default in the initializer:
    /// configuration binding appends to an existing array, so <c>Worker__Queues__0=fleet-cpu</c> would otherwise
    /// yield both queues plus a duplicate.)
    /// </summary>
    public string[] Queues { get; set; } = [];

    /// <summary>CPU-lane threads: how many CPU tasks run at once, and the CPU queue's prefetch.</summary>
    [Range(1, 1024)]
    public int CpuConcurrency { get; set; } = Environment.ProcessorCount;

    /// <summary>
    /// CPU tasks a worker claims ahead of its lane threads: claimed (<c>running</c> in <c>fleet.tasks</c>), prepared
    /// and queued, so that a thread that finishes a task starts the next at once instead of waiting for a claim's
    /// round trip to PostgreSQL (docs/decisions/0007). Their time limits start when a thread takes them. 0 claims
    /// a task only when a thread is free. Default: one per thread.
    /// </summary>
    [Range(0, 1024)]
    public int? CpuClaimAhead { get; set; }

    /// <summary>The claim-ahead in effect: <see cref="CpuClaimAhead"/>, or one per CPU-lane thread.</summary>
    public int EffectiveCpuClaimAhead => CpuClaimAhead ?? CpuConcurrency;

    /// <summary>
    /// CPU-queue messages a worker holds beyond its running and claimed-ahead CPU tasks: delivered, not yet claimed,
    /// so that the next claim ahead needs no delivery first. The CPU queue's prefetch is <see cref="CpuConcurrency"/>
    /// plus <see cref="CpuClaimAhead"/> plus this. More than a few holds tasks that an idle worker elsewhere could
    /// run. Default: one per thread.
    /// </summary>
    [Range(0, 1024)]
    public int? CpuLookahead { get; set; }

    /// <summary>The lookahead in effect: <see cref="CpuLookahead"/>, or one per CPU-lane thread.</summary>
    public int EffectiveCpuLookahead => CpuLookahead ?? CpuConcurrency;

    /// <summary>
    /// Task types this worker runs in its process lane: each task in a child process of its own, which is killed at
    /// the time limit, past <see cref="ProcessMaxRssMb"/>, and whose crash takes only its own task with it. A handler
    /// may also declare it (<c>[ProcessLane]</c>). The task keeps its queue; on the CPU queue it still takes a lane
    /// thread's place, which waits for the child while the child uses the core.
    /// </summary>
    public string[] ProcessTypes { get; set; } = [];

    /// <summary>Children that may run at once; a task that finds none free waits for one. Default: <see cref="CpuConcurrency"/>.</summary>
    [Range(1, 1024)]
    public int? ProcessConcurrency { get; set; }

    /// <summary>The process lane's size in effect: <see cref="ProcessConcurrency"/>, or one per CPU-lane thread.</summary>
    public int EffectiveProcessConcurrency => ProcessConcurrency ?? CpuConcurrency;

    /// <summary>
    /// After a process-lane task's time limit (or a cancel) fires, how long its child gets to stop at its cancellation
    /// token before it is killed with SIGKILL; the task ends <c>timed_out</c> (or <c>cancelled</c>) either way.
    /// </summary>
    [Range(0, 300)]
    public double ProcessKillGraceSeconds { get; set; } = 2;

    /// <summary>
    /// A child whose resident memory passes this many MB is killed while it runs a task (the task ends <c>failed</c>,
    /// <c>ProcessLaneMemoryLimit</c>, not retried) and retired between tasks. 0: no limit.
    /// </summary>
    [Range(0, 1_048_576)]
    public int ProcessMaxRssMb { get; set; }

    /// <summary>A child is retired after this many tasks and a fresh one takes its place (a slow leak's cure). 0: never.</summary>
    [Range(0, int.MaxValue)]
    public int ProcessMaxTasks { get; set; }

    /// <summary>
    /// The program a child runs: a <c>.dll</c> (started with <c>dotnet</c>) or an executable that calls
    /// <c>ProcessLaneChild.RunAsync</c> when <c>FLEET_PROCESS_LANE_CHILD</c> is 1. Default: this worker's own program.
    /// </summary>
    public string? ProcessChildPath { get; set; }

    /// <summary>I/O-lane tasks in flight at once, and the I/O queue's prefetch.</summary>
    [Range(1, 10_000)]
    public int IoConcurrency { get; set; } = 256;

    /// <summary>On SIGTERM, how long held tasks may take to finish before they are handed back to the broker.</summary>
    [Range(0, 3600)]
    public int DrainSeconds { get; set; } = 30;

    [Range(1, 300)]
    public int HeartbeatSeconds { get; set; } = 5;

    /// <summary>
    /// Time limit of tasks that set none. Kept well under RabbitMQ's <c>consumer_timeout</c> (30 min on 3.10),
    /// which would otherwise close the channel of a worker holding one unacknowledged message too long.
    /// </summary>
    [Range(1, TaskLimits.MaxTimeoutSeconds)]
    public int DefaultTimeoutSeconds { get; set; } = 600;

    /// <summary>
    /// Time limits by task type for tasks that set none, e.g. <c>"TypeTimeoutSeconds": { "heat": 120 }</c>; types not
    /// listed use <see cref="DefaultTimeoutSeconds"/>.
    /// </summary>
    public Dictionary<string, int> TypeTimeoutSeconds { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// The longest time limit this worker runs a task for, at most <see cref="TaskLimits.MaxTimeoutSeconds"/> (same
    /// reason as above). A task that asked for more is cut to this, and its timeout error says so.
    /// </summary>
    [Range(1, TaskLimits.MaxTimeoutSeconds)]
    public int MaxTimeoutSeconds { get; set; } = TaskLimits.MaxTimeoutSeconds;

    /// <summary>
    /// After a time limit fires, how long a handler gets to honour its cancellation token before the worker stops
    /// waiting for it: the task ends <c>timed_out</c> and its slot (and CPU-lane thread) is replaced.
    /// </summary>
    [Range(0, 300)]
    public int HardStopGraceSeconds { get; set; } = 5;

    /// <summary>
    /// Backoff before the first retry of a failed task; it doubles for each further attempt. The retry waits in
    /// PostgreSQL, queued with its <c>not_before</c>, and the due relay publishes it at that time.
    /// </summary>
    [Range(0.01, 3600)]
    public double RetryBaseSeconds { get; set; } = 1;

    /// <summary>The longest backoff between two attempts.</summary>
    [Range(0.01, 3600)]
    public double RetryMaxSeconds { get; set; } = 300;

    /// <summary>How long result writes wait through a database outage (holding their messages) before giving up.</summary>
    [Range(1, 1500)]
    public int MaxDatabaseOutageSeconds { get; set; } = 600;

    /// <summary>The host name recorded in <c>fleet.workers</c>; the machine name by default.</summary>
    public string HostName { get; set; } = Environment.MachineName;

    /// <summary>The largest batch of claims or results written in one statement.</summary>
    [Range(1, 10_000)]
    public int WriteBatchSize { get; set; } = 500;

    public HttpGetOptions HttpGet { get; set; } = new();

    /// <summary>
    /// The broker's <c>consumer_timeout</c> (RabbitMQ's default: 30 min): a channel holding one message unacknowledged
    /// longer is closed, and every unacknowledged message on it goes back to the queue, healthy ones included. A
    /// CPU-queue message waits for a lane thread before its own time limit starts, so its wait is bounded by
    /// <see cref="LookaheadWaitLimit"/>: past that it is sent to the back of its queue and acknowledged (a task
    /// claimed ahead is handed back first, uncharged).
    /// </summary>
    [Range(60, 86_400)]
    public int ConsumerTimeoutSeconds { get; set; } = 1800;

    /// <summary>
    /// How long a delivered CPU-queue message may wait for a lane thread to start it, claimed or not: what remains of
    /// <see cref="ConsumerTimeoutSeconds"/> after the longest run (<see cref="MaxTimeoutSeconds"/> and
    /// <see cref="HardStopGraceSeconds"/>) and a minute for the claim, the commit and the acknowledgement.
    /// </summary>
    public TimeSpan LookaheadWaitLimit => TimeSpan.FromSeconds(ConsumerTimeoutSeconds - MaxTimeoutSeconds - LongestOverrunSeconds - 60);

    /// <summary>
    /// The longest a task runs past its time limit: a thread's hard-stop grace, or a process-lane child's kill grace
    /// and the margin the executor gives its kill and exit (TaskExecutor).
    /// </summary>
    public double LongestOverrunSeconds => ProcessTypes.Length == 0 ? HardStopGraceSeconds : Math.Max(HardStopGraceSeconds, ProcessOverrunSeconds);

    /// <summary>
    /// How long the executor waits past a process-lane task's time limit: the child's kill grace, and 15 s for the kill
    /// and the child's exit. It waits for the kill rather than abandoning the lane thread that waits for the child.
    /// </summary>
    public double ProcessOverrunSeconds => ProcessKillGraceSeconds + 15;

    /// <summary>
    /// A task that was running in this many worker processes that died is not run again: it ends <c>failed</c> with
    /// <c>CrashLoop</c>. Tasks that died beside it are not counted against this (see <see cref="CrashGuard"/>).
    /// </summary>
    [Range(1, 100)]
    public int CrashLoopDeaths { get; set; } = 3;

    /// <summary>
    /// How often the reconciler looks for open tasks whose message is gone (one worker of the fleet acts per pass);
    /// 0 turns it off in this worker. A lost queued task is republished after two passes.
    /// </summary>
    [Range(0, 3600)]
    public int ReconcileIntervalSeconds { get; set; } = 15;

    /// <summary>
    /// How long a task must have been published (or running) before the reconciler may take its message for lost:
    /// long enough that a delivery on its way, a redelivery after a crash or a relay's publish normally arrives first.
    /// </summary>
    [Range(1, 86_400)]
    public int ReconcileAfterSeconds { get; set; } = 60;

    /// <summary>The most tasks one reconciler pass republishes.</summary>
    [Range(1, 100_000)]
    public int ReconcileBatchSize { get; set; } = 1000;

    /// <summary>
    /// How often, in milliseconds, this worker asks whether a delayed task's or a retry's time has come and publishes
    /// it (one process of the fleet acts per round, by advisory lock; the API polls too), so that delayed tasks and
    /// retries go out with no API running. The probe is one index lookup. 0 turns it off in this worker; otherwise at
    /// least 50.
    /// </summary>
    [Range(0, 60_000)]
    public int DueRelayIntervalMs { get; set; } = 500;

    /// <summary>
    /// How often, in milliseconds, the progress that handlers report (<c>TaskContext.ReportProgress</c>) is written to
    /// <c>fleet.tasks</c>: the latest report of each task, all tasks in one statement. Nothing is written while no
    /// handler reports.
    /// </summary>
    [Range(50, 60_000)]
    public int ProgressFlushMilliseconds { get; set; } = 1000;

    /// <summary>
    /// How often this worker reads <c>fleet.queue_pauses</c>: a lane paused (<c>fleet queue pause</c>, the API) stops
    /// being consumed here within this many seconds, and a resumed one starts again (MessagePath/LanePauses.cs).
    /// </summary>
    [Range(1, 300)]
    public int PauseCheckSeconds { get; set; } = 2;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Queues.Any(string.IsNullOrWhiteSpace))
        {
            yield return new ValidationResult("Worker:Queues must not contain empty names.", [nameof(Queues)]);
        }

        foreach (var queue in Queues.Where(q => !string.IsNullOrWhiteSpace(q) && !Fleet.Client.QueueCatalog.IsBuiltIn(q)))
        {
            if (Fleet.Client.QueueCatalog.Problem(queue, Fleet.Client.QueueCatalog.CpuLane) is { } problem)
            {
                yield return new ValidationResult($"Worker:Queues: {problem}", [nameof(Queues)]);
            }
        }

        if (Queues.Distinct(StringComparer.Ordinal).Count() != Queues.Length)
        {
            yield return new ValidationResult($"Worker:Queues lists a queue twice: {string.Join(", ", Queues)}.", [nameof(Queues)]);
        }

        foreach (var (type, seconds) in TypeTimeoutSeconds)
        {
            if (seconds < 1 || seconds > MaxTimeoutSeconds)
            {
                yield return new ValidationResult($"Worker:TypeTimeoutSeconds:{type} must be between 1 and Worker:MaxTimeoutSeconds ({MaxTimeoutSeconds}).", [nameof(TypeTimeoutSeconds)]);
            }
        }

        if (DueRelayIntervalMs is > 0 and < 50)
        {
            yield return new ValidationResult("Worker:DueRelayIntervalMs must be 0 (off) or from 50 to 60000.", [nameof(DueRelayIntervalMs)]);
        }

        if (DefaultTimeoutSeconds > MaxTimeoutSeconds)
        {
            yield return new ValidationResult("Worker:DefaultTimeoutSeconds must not exceed Worker:MaxTimeoutSeconds.", [nameof(DefaultTimeoutSeconds)]);
        }

        if (LookaheadWaitLimit < TimeSpan.FromSeconds(10))
        {
            yield return new ValidationResult(
                $"Worker:ConsumerTimeoutSeconds ({ConsumerTimeoutSeconds}) must exceed Worker:MaxTimeoutSeconds + the longest overrun past a time limit (Worker:HardStopGraceSeconds, or Worker:ProcessKillGraceSeconds + 15 s with a process lane) + 70 s ({MaxTimeoutSeconds + LongestOverrunSeconds + 70}): a held message must be acknowledged before the broker's consumer_timeout.",
                [nameof(ConsumerTimeoutSeconds)]);
        }

        if (ProcessTypes.Any(string.IsNullOrWhiteSpace))
        {
            yield return new ValidationResult("Worker:ProcessTypes must not contain empty names.", [nameof(ProcessTypes)]);
        }

        if (ProcessChildPath is { Length: > 0 } path && !File.Exists(path))
        {
            yield return new ValidationResult($"Worker:ProcessChildPath '{path}' does not exist.", [nameof(ProcessChildPath)]);
        }

        if (string.IsNullOrWhiteSpace(HostName))
        {
            yield return new ValidationResult("Worker:HostName must not be empty.", [nameof(HostName)]);
        }
    }

    /// <summary>
    /// How many CPU-lane threads stuck in handlers that ignore their time limit may be replaced by new threads at
    /// once. Each stuck thread may burn a core, so past this bound a stuck thread is not replaced: the lane shrinks,
    /// <c>/health</c> reports Unhealthy, and the worker stops itself so that its supervisor starts a fresh one.
    /// Default: <see cref="CpuConcurrency"/>.
    /// </summary>
    [Range(0, 1024)]
    public int? MaxAbandonedThreads { get; set; }

    /// <summary>The bound in effect: <see cref="MaxAbandonedThreads"/>, or one per CPU-lane thread.</summary>
    public int EffectiveMaxAbandonedThreads => MaxAbandonedThreads ?? CpuConcurrency;
}
