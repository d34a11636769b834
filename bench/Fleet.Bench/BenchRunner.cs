using System.Diagnostics;
using System.Globalization;
using Fleet.Client;
using Fleet.Tasks.BuiltIn;
using Npgsql;

namespace Fleet.Bench;

/// <summary>What <c>fleet-bench</c> runs: workloads, sizes, modes.</summary>
internal sealed record BenchSettings
{
    public required string PostgresConnectionString { get; init; }

    public required string AmqpUri { get; init; }

    public required IReadOnlyList<string> Workloads { get; init; }

    public int Count { get; init; } = 1000;

    public int Runs { get; init; } = 3;

    /// <summary>Open loop at this arrival rate (tasks/s) instead of all at once.</summary>
    public double? Rate { get; init; }

    /// <summary>Closed loop first, then open loop at half of its median throughput (<c>--rate half</c>).</summary>
    public bool RateHalfOfMax { get; init; }

    /// <summary>With <see cref="RateHalfOfMax"/>: each open-loop run submits for about this long.</summary>
    public double OpenLoopSeconds { get; init; } = 20;

    public int? Cores { get; init; }

    /// <summary>Raw-broker baseline for noop; null means on for noop.</summary>
    public bool Baseline { get; init; } = true;

    /// <summary>Body size of the raw-broker messages; null: <see cref="BenchRunner.NoopMessageBytes"/>.</summary>
    public int? RawBodyBytes { get; init; }

    public int SingleTaskRepeats { get; init; } = 5;

    /// <summary>Seconds of the in-process Parallel.For baseline for each CPU workload (0: none).</summary>
    public double ParallelForSeconds { get; init; } = 5;

    /// <summary>Tasks of the unmeasured warm-up batch before each workload's runs (at most the run size; 0: none).</summary>
    public int WarmUpTasks { get; init; } = 1000;

    /// <summary>
    /// Each measured run is one batch with an onComplete noop task (one transaction, as a batch with a callback must
    /// be), and the delay from the batch's last end to the callback's start is logged: what fan-in costs.
    /// </summary>
    public bool OnComplete { get; init; }

    /// <summary>Each measured run is one batch stored in one transaction, as with <see cref="OnComplete"/> but without the callback: its control.</summary>
    public bool OneTransaction { get; init; }

    public TimeSpan RunTimeout { get; init; } = TimeSpan.FromHours(1);

    /// <summary>How many workers run (for the report only; the bench measures whatever fleet runs).</summary>
    public int? WorkersHint { get; init; }

    /// <summary>What is special about the fleet measured (e.g. "workers 1 ms (round trip) from PostgreSQL and RabbitMQ"), or null.</summary>
    public string? Label { get; init; }

    /// <summary>The lanes' queue type: what the bench's client declares with, and the raw baseline's queue.</summary>
    public BrokerQueueType QueueType { get; init; } = QueueTopology.DefaultQueueType;

    /// <summary>The RabbitMQ management API (credentials in the URL) for the broker's mem_used, or null: not sampled.</summary>
    public string? ManagementUrl { get; init; }
}

/// <summary>
/// Runs the benchmark against a running fleet (docs/benchmarks.md says how it measures): submits each run as
/// its own batch through <see cref="FleetClient"/>, waits until every task is final, and reads throughput and
/// latency back from PostgreSQL; CPU seconds and peak RSS come from /proc.
/// </summary>
internal sealed class BenchRunner(BenchSettings settings, FleetClient client, TextWriter log)
{
    public static readonly IReadOnlySet<string> CpuWorkloads = new HashSet<string>(StringComparer.Ordinal) { "sha256", "sieve", "heat" };

    /// <summary>
    /// The body a submission publishes for a standard noop task (with a batch id and submit time, as the bench sends
    /// them): the raw-broker baseline moves messages of this size, so that it moves the same bytes as Fleet.
    /// The submit time is fixed with all seven fraction digits, as nine in ten real ones have: a clock reading whose
    /// last digit is zero serialises a byte shorter, and the size must not depend on when it is asked for.
    /// </summary>
    public static int NoopMessageBytes() => RabbitMqTaskPublisher.BodyBytes(new Fleet.Contracts.ProcessTask
    {
        TaskId = Guid.CreateVersion7(),
        Type = "noop",
        Payload = StandardWorkloads.Payload("noop", 0),
        MaxAttempts = 3,
        BatchId = Guid.CreateVersion7(),
        SubmittedAt = new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero).AddTicks(1_234_567),
    });

    private const string StatsSql = """
        SELECT count(*),
               count(*) FILTER (WHERE status = 'succeeded'),
               count(*) FILTER (WHERE status <> 'succeeded'),
               extract(epoch FROM max(finished_at) - min(submitted_at))::float8,
               percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - submitted_at) * 1000),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - submitted_at) * 1000),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - submitted_at) * 1000)
        FROM fleet.tasks
        WHERE batch_id = @batch
        """;

    // Growth: the first tenth of the finishes (from the first submit to the N/10-th finish) against the last tenth
    // (from the (N - N/10)-th finish to the last); a ratio under 1 means the fleet slowed down as the tables grew.
    private const string GrowthSql = """
        WITH f AS (
            SELECT finished_at, row_number() OVER (ORDER BY finished_at) AS rn
            FROM fleet.tasks WHERE batch_id = @batch AND finished_at IS NOT NULL)
        SELECT extract(epoch FROM (SELECT finished_at FROM f WHERE rn = @tenth)
                                  - (SELECT min(submitted_at) FROM fleet.tasks WHERE batch_id = @batch))::float8,
               extract(epoch FROM (SELECT max(finished_at) FROM f) - (SELECT finished_at FROM f WHERE rn = @n - @tenth))::float8
        """;

    private const string AnyOpenSql = """
        SELECT EXISTS (SELECT 1 FROM fleet.tasks WHERE status IN ('queued', 'running') AND batch_id = @batch)
        """;

    private const string WorkersSql = """
        SELECT id, pid FROM fleet.workers WHERE last_seen_at > now() - interval '30 seconds' ORDER BY started_at
        """;


    private int Cores => settings.Cores ?? Environment.ProcessorCount;

    private HttpClient? _management;

    private IReadOnlyList<int> _brokerPids = [];

    public async Task<BenchReport> RunAsync(CancellationToken cancellationToken)
    {
        await using var dataSource = NpgsqlDataSource.Create(settings.PostgresConnectionString);
        var started = DateTimeOffset.UtcNow;
        var servers = FindServers();
        using var management = BrokerMemorySampler.ManagementClient(settings.ManagementUrl);
        _management = management;
        var results = new List<WorkloadResult>();
        var raw = new List<RawBrokerResult>();
        var workersSeen = 0;
        BacklogResult? backlog = null;
        foreach (var workload in settings.Workloads)
        {
            SingleTaskTime? single = null;
            if (CpuWorkloads.Contains(workload))
            {
                single = SingleTaskTimer.Measure(workload, settings.SingleTaskRepeats, cancellationToken);
                Log($"{workload}: single task on one thread: median {single.WallMs:0.00} ms wall, {single.CpuMs:0.00} ms CPU ({single.Repeats} runs)");
                if (settings.ParallelForSeconds > 0)
                {
                    var parallel = SingleTaskTimer.MeasureParallelFor(workload, single, Cores, settings.ParallelForSeconds, cancellationToken);
                    single = single with { ParallelFor = parallel };
                    Log($"{workload}: Parallel.For over {parallel.Threads} threads, no broker or database: {parallel.Tasks} tasks in {parallel.Seconds:0.00} s = {parallel.TasksPerSecond:0.0} tasks/s, efficiency {parallel.Efficiency:0.000}");
                }
            }

            await WarmUpAsync(dataSource, workload, cancellationToken).ConfigureAwait(false);
            var withBaseline = settings.Baseline && workload == "noop";
            if (withBaseline && management is not null && backlog is null)
            {
                backlog = await BacklogMemory.MeasureAsync(settings.AmqpUri, settings.QueueType, settings.Count, settings.RawBodyBytes ?? NoopMessageBytes(), management, cancellationToken).ConfigureAwait(false);
                Log($"backlog of {backlog.Messages} messages in a {settings.QueueType} queue: queue memory {backlog.QueueMemoryBytes / 1048576.0:0.0} MB, nodes' mem_used {backlog.MemUsedBeforeBytes / 1048576.0:0} -> {backlog.MemUsedAfterBytes / 1048576.0:0} MB");
            }

            if (settings.Rate is null)
            {
                var closed = await RunSeriesAsync(dataSource, servers, workload, "closed", settings.Count, null, single, withBaseline ? raw : null, cancellationToken).ConfigureAwait(false);
                results.Add(closed);
                workersSeen = Math.Max(workersSeen, closed.Runs.Max(r => r.Workers.Count));
                if (settings.RateHalfOfMax)
                {
                    var rate = Math.Max(1, closed.MedianThroughput / 2);
                    var n = (int)Math.Clamp(Math.Round(rate * settings.OpenLoopSeconds), 10, settings.Count);
                    results.Add(await RunSeriesAsync(dataSource, servers, workload, "open", n, rate, single, null, cancellationToken).ConfigureAwait(false));
                }
            }
            else
            {
                var open = await RunSeriesAsync(dataSource, servers, workload, "open", settings.Count, settings.Rate, single, withBaseline ? raw : null, cancellationToken).ConfigureAwait(false);
                results.Add(open);
                workersSeen = Math.Max(workersSeen, open.Runs.Max(r => r.Workers.Count));
            }
        }

        return new BenchReport
        {
            StartedAt = started,
            Machine = new MachineInfo(Environment.MachineName, Environment.ProcessorCount, Cores,
                System.Runtime.InteropServices.RuntimeInformation.OSDescription,
                System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription, CpuModel(), settings.WorkersHint ?? workersSeen),
            Workloads = results,
            RawBroker = raw,
            Backlog = backlog,
            Label = settings.Label,
            QueueType = settings.QueueType,
            BrokerNodes = BrokerNodes.Of(settings.AmqpUri).Count,
        };
    }

    /// <summary>
    /// An unmeasured batch before a workload's runs: without it, run 1 also measures the workers' JIT and the first
    /// connections, and with few runs that skews the median.
    /// </summary>
    private async Task WarmUpAsync(NpgsqlDataSource dataSource, string workload, CancellationToken cancellationToken)
    {
        if (settings.WarmUpTasks <= 0)
        {
            return;
        }

        var batchId = Guid.CreateVersion7();
        var count = Math.Min(settings.WarmUpTasks, settings.Count);
        var clock = Stopwatch.StartNew();
        await client.SubmitManyAsync(Requests(workload, count, batchId), cancellationToken).ConfigureAwait(false);
        await WaitFinalAsync(dataSource, batchId, count, cancellationToken).ConfigureAwait(false);
        Log($"{workload}: warm-up of {count} tasks in {clock.Elapsed.TotalSeconds:0.0} s (not measured)");
    }

    private async Task<WorkloadResult> RunSeriesAsync(NpgsqlDataSource dataSource, IReadOnlyList<ComponentProcesses> servers, string workload, string mode,
        int count, double? rate, SingleTaskTime? single, List<RawBrokerResult>? raw, CancellationToken cancellationToken)
    {
        var runs = new List<RunResult>();
        for (var run = 1; run <= settings.Runs; run++)
        {
            if (raw is not null)
            {
                var sampler = BrokerMemorySampler.Start(_management, _brokerPids);
                var baseline = await RawBrokerBaseline.RunAsync(settings.AmqpUri, settings.QueueType, count, settings.RawBodyBytes ?? NoopMessageBytes(), cancellationToken).ConfigureAwait(false);
                baseline = baseline with { BrokerMemory = await sampler.StopAsync().ConfigureAwait(false) };
                raw.Add(baseline);
                Log($"raw broker run {run}: {count} messages in {baseline.Seconds:0.00} s = {baseline.RatePerSecond:0} msg/s (publish alone {baseline.PublishRatePerSecond:0} msg/s)");
            }

            var result = await RunOnceAsync(dataSource, servers, workload, run, count, rate, single, cancellationToken).ConfigureAwait(false);
            runs.Add(result);
            Log($"{workload} {mode} run {run}: {result.Succeeded}/{result.Tasks} ok in {result.WallSeconds:0.00} s = {result.Throughput:0.0} tasks/s, " +
                $"latency p50 {result.LatencyP50Ms:0.0} / p95 {result.LatencyP95Ms:0.0} / p99 {result.LatencyP99Ms:0.0} ms" +
                (result.Efficiency is { } e ? $", efficiency {e:0.000}" : "") +
                (result.UsefulWorkerCpuFraction is { } u ? $" (task work {u:0.00} of worker CPU)" : "") +
                $", CPU s {string.Join(" ", result.CpuSeconds.Select(kv => $"{kv.Key} {kv.Value:0.0}"))}");
        }

        return new WorkloadResult { Workload = workload, Mode = mode, Count = count, ArrivalRate = rate, SingleTask = single, Runs = runs };
    }

    private async Task<RunResult> RunOnceAsync(NpgsqlDataSource dataSource, IReadOnlyList<ComponentProcesses> servers, string workload, int run,
        int count, double? rate, SingleTaskTime? single, CancellationToken cancellationToken)
    {
        var batchId = Guid.CreateVersion7();
        var workers = await FindWorkersAsync(dataSource, cancellationToken).ConfigureAwait(false);
        if (workers.Count == 0)
        {
            Log("warning: no live worker of this host in fleet.workers; worker CPU and RSS will be missing");
        }

        var perRunPeak = workers.All(w => ProcessStats.TryResetPeakRss(w.Pid));
        var ownPid = Environment.ProcessId;
        // A worker's children are its process-lane children, whose CPU is the worker's work; an in-process worker (this
        // process, in the tests) may have other children, such as the servers it started, which are not.
        var components = new List<ComponentProcesses> { new("workers", [.. workers.Select(w => w.Pid)], IncludeChildren: workers.All(w => w.Pid != ownPid)) };
        components.AddRange(servers);
        var workerCpuBefore = workers.ToDictionary(w => w.Pid, w => ProcessStats.CpuSeconds(w.Pid) ?? 0);
        var before = components.ToDictionary(c => c.Name, c => c.CpuSeconds());
        var benchBefore = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

        // Ids chosen here, so that a chunk whose submit call fails can be checked in the database.
        var requests = Requests(workload, count, batchId).Select(q => q with { TaskId = Guid.CreateVersion7() }).ToList();
        var memory = BrokerMemorySampler.Start(_management, _brokerPids);
        var submitClock = Stopwatch.StartNew();
        if (rate is { } r)
        {
            await SubmitOpenLoopAsync(dataSource, requests, r, cancellationToken).ConfigureAwait(false);
        }
        else if (settings.OnComplete || settings.OneTransaction)
        {
            var onComplete = settings.OnComplete ? TaskRequest.Create("noop", new { }) : null;
            await client.SubmitBatchAsync(requests, onComplete, batchId, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            // One call: the client stores, sends and stamps its chunks itself, several at once.
            await client.SubmitManyAsync(requests, cancellationToken).ConfigureAwait(false);
        }

        var submitSeconds = submitClock.Elapsed.TotalSeconds;
        await WaitFinalAsync(dataSource, batchId, count, cancellationToken).ConfigureAwait(false);
        if (settings.OnComplete)
        {
            await LogCallbackDelayAsync(dataSource, batchId, cancellationToken).ConfigureAwait(false);
        }
        var brokerMemory = await memory.StopAsync().ConfigureAwait(false);

        var cpu = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var component in components)
        {
            cpu[component.Name] = Math.Max(0, component.CpuSeconds() - before[component.Name]);
        }

        if (!workers.Any(w => w.Pid == ownPid))
        {
            cpu["bench"] = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - benchBefore;
        }

        var samples = workers.Select(w => new WorkerSample(w.Id, w.Pid, ProcessStats.PeakRssBytes(w.Pid), perRunPeak,
            Math.Max(0, (ProcessStats.CpuSeconds(w.Pid) ?? 0) - workerCpuBefore[w.Pid]))).ToList();

        await using var command = dataSource.CreateCommand(StatsSql);
        command.Parameters.AddWithValue("batch", batchId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        var tasks = reader.GetInt64(0);
        var wall = reader.IsDBNull(3) ? 0 : reader.GetDouble(3);
        double? efficiency = single is null || wall <= 0 ? null : single.EffectiveMs / 1000.0 * tasks / (wall * Cores);
        var (p50, p95, p99) = (reader.IsDBNull(4) ? 0 : reader.GetDouble(4), reader.IsDBNull(5) ? 0 : reader.GetDouble(5), reader.IsDBNull(6) ? 0 : reader.GetDouble(6));
        var (succeeded, notSucceeded) = (reader.GetInt64(1), reader.GetInt64(2));
        var (firstTenth, lastTenth) = await GrowthAsync(dataSource, batchId, tasks, cancellationToken).ConfigureAwait(false);
        return new RunResult
        {
            Run = run,
            BatchId = batchId,
            Tasks = tasks,
            Succeeded = succeeded,
            NotSucceeded = notSucceeded,
            WallSeconds = wall,
            SubmitSeconds = submitSeconds,
            Throughput = wall > 0 ? tasks / wall : 0,
            LatencyP50Ms = p50,
            LatencyP95Ms = p95,
            LatencyP99Ms = p99,
            FirstTenthRate = firstTenth,
            LastTenthRate = lastTenth,
            Efficiency = efficiency,
            UsefulWorkerCpuFraction = single is null || !(cpu.GetValueOrDefault("workers") > 0) || workers.Any(w => w.Pid == ownPid)
                ? null
                : (single.CpuMs ?? single.WallMs) / 1000.0 * tasks / cpu["workers"],
            Workers = samples,
            CpuSeconds = cpu,
            BrokerMemory = brokerMemory,
        };
    }

    /// <summary>Tasks/s of the first and of the last tenth of a run's finishes (see <see cref="GrowthSql"/>); null below 100 tasks.</summary>
    private static async Task<(double? First, double? Last)> GrowthAsync(NpgsqlDataSource dataSource, Guid batchId, long tasks, CancellationToken cancellationToken)
    {
        if (tasks < 100)
        {
            return (null, null);
        }

        var tenth = tasks / 10;
        await using var command = dataSource.CreateCommand(GrowthSql);
        command.Parameters.AddWithValue("batch", batchId);
        command.Parameters.AddWithValue("tenth", tenth);
        command.Parameters.AddWithValue("n", tasks);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        double? Rate(int i) => reader.IsDBNull(i) || reader.GetDouble(i) <= 0 ? null : tenth / reader.GetDouble(i);
        return (Rate(0), Rate(1));
    }

    /// <summary>
    /// Open loop: chunk k (of about 1/100 s worth of tasks) is due at k x chunk / rate seconds, whatever happened to
    /// the earlier ones; up to 8 chunks are in flight so that a slow send does not hold back the arrivals.
    /// </summary>
    private async Task SubmitOpenLoopAsync(NpgsqlDataSource dataSource, List<TaskRequest> requests, double rate, CancellationToken cancellationToken)
    {
        var chunk = Math.Max(1, (int)Math.Round(rate / 100));
        var clock = Stopwatch.StartNew();
        var inflight = new List<Task>();
        var maxLagMs = 0.0;
        for (var start = 0; start < requests.Count; start += chunk)
        {
            var due = TimeSpan.FromSeconds(start / rate);
            var wait = due - clock.Elapsed;
            if (wait > TimeSpan.FromMilliseconds(1))
            {
                await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                maxLagMs = Math.Max(maxLagMs, -wait.TotalMilliseconds);
            }

            inflight.RemoveAll(t => t.IsCompletedSuccessfully);
            if (inflight.Count >= 8)
            {
                await Task.WhenAny(inflight).ConfigureAwait(false);
                inflight.RemoveAll(t => t.IsCompletedSuccessfully);
            }

            inflight.Add(client.SubmitManyAsync(requests.GetRange(start, Math.Min(chunk, requests.Count - start)), cancellationToken));
        }

        await Task.WhenAll(inflight).ConfigureAwait(false);
        var achieved = requests.Count / clock.Elapsed.TotalSeconds;
        if (achieved < rate * 0.95)
        {
            Log($"warning: the producer reached only {achieved:0} of {rate:0} tasks/s (max lag {maxLagMs:0} ms): the arrival rate is the client's limit");
        }
    }

    /// <summary>
    /// Waits until no task of the batch is open. The check must cost the database next to nothing, because it
    /// runs beside the load it measures (counting a large batch's rows on every poll takes a good share of
    /// PostgreSQL's CPU). An <c>EXISTS</c> on the open states reads the status index and stops at the first open row;
    /// it is polled every 250 ms, which only delays noticing the end (the figures come from the rows' own
    /// timestamps, not from this loop).
    /// </summary>
    /// <summary>Waits for the batch's onComplete task to end; logs how long after the batch's last end it started.</summary>
    private async Task LogCallbackDelayAsync(NpgsqlDataSource dataSource, Guid batchId, CancellationToken cancellationToken)
    {
        const string Sql = """
            SELECT extract(epoch FROM c.started_at - (SELECT max(finished_at) FROM fleet.tasks WHERE batch_id = @batch)) * 1000
            FROM fleet.tasks c WHERE c.after_batch_id = @batch AND c.finished_at IS NOT NULL
            """;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            await using var command = dataSource.CreateCommand(Sql);
            command.Parameters.AddWithValue("batch", batchId);
            if (await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is decimal delayMs)
            {
                Log($"onComplete of batch {batchId} started {delayMs:0} ms after the batch's last task ended");
                return;
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }

        throw new BenchException($"the onComplete task of batch {batchId} did not end within 60 s of the batch");
    }

    private async Task WaitFinalAsync(NpgsqlDataSource dataSource, Guid batchId, int count, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            await using (var command = dataSource.CreateCommand(AnyOpenSql))
            {
                command.Parameters.AddWithValue("batch", batchId);
                if (!(bool)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
                {
                    return;
                }
            }

            if (clock.Elapsed > settings.RunTimeout)
            {
                var progress = await client.GetBatchProgressAsync(batchId, cancellationToken).ConfigureAwait(false);
                throw new BenchException($"timed out after {clock.Elapsed.TotalSeconds:0} s with {progress.Final}/{count} tasks final; are workers running? (fleet workers)");
            }

            await Task.Delay(250, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Live workers of this host: rows of fleet.workers with a recent heartbeat whose pid runs Fleet.Worker here (or is this process).</summary>
    private static async Task<List<(string Id, int Pid)>> FindWorkersAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        var result = new List<(string, int)>();
        await using var command = dataSource.CreateCommand(WorkersSql);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var id = reader.GetString(0);
            var pid = reader.GetInt32(1);
            var cmdline = ProcessStats.CommandLine(pid);
            if (pid == Environment.ProcessId || (cmdline is not null && cmdline.Contains("Fleet.Worker", StringComparison.Ordinal)))
            {
                result.Add((id, pid));
            }
        }

        return result;
    }

    /// <summary>
    /// The PostgreSQL and RabbitMQ servers of this fleet: the processes listening on the ports of its connection strings
    /// (every node of a cluster on this machine counts as RabbitMQ).
    /// </summary>
    private List<ComponentProcesses> FindServers()
    {
        var servers = new List<ComponentProcesses>();
        var rabbits = new List<int>();
        foreach (var (_, port) in BrokerNodes.Of(settings.AmqpUri))
        {
            if (ProcessStats.ListenerPid(port) is { } rabbit)
            {
                rabbits.Add(rabbit);
            }
            else
            {
                Log($"warning: no local process listens on {port}: that RabbitMQ node's CPU and RSS are not measured");
            }
        }

        if (rabbits.Count > 0)
        {
            servers.Add(new ComponentProcesses("rabbitmq", rabbits, true));
        }

        _brokerPids = rabbits;

        var pgPort = new NpgsqlConnectionStringBuilder(settings.PostgresConnectionString).Port;
        if (ProcessStats.ListenerPid(pgPort) is { } postmaster)
        {
            servers.Add(new ComponentProcesses("postgres", [postmaster], true));
        }
        else
        {
            Log($"warning: no local process listens on {pgPort}: PostgreSQL CPU is not measured");
        }

        return servers;
    }

    private static string? CpuModel()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim();
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>The requests of one run of a standard workload, all in batch <paramref name="batchId"/>.</summary>
    private static IEnumerable<TaskRequest> Requests(string workload, int count, Guid batchId) =>
        Enumerable.Range(0, count).Select(i => new TaskRequest(workload, StandardWorkloads.Payload(workload, i)) { BatchId = batchId });

    private void Log(string message) => log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{DateTime.Now:HH:mm:ss}] {message}"));
}
