using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using RabbitMQ.Client;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// <c>make chaos</c>: a longer randomized soak, excluded from <c>make test</c>. Three worker processes run a mixed
/// healthy workload (noop, sleep, sha256; FLEET_CHAOS_TASKS, default 20,000, over FLEET_CHAOS_SECONDS, default 180)
/// while workers are killed (-9) or stopped (SIGTERM) and replaced, RabbitMQ and PostgreSQL are restarted, both lanes'
/// queues are purged right after a backlog was submitted (the reconciler must republish what the purge took), and
/// bursts of hostile raw AMQP messages arrive on both lanes. FLEET_CHAOS_SEED replays a run's choice of faults.
/// <para>At the end these must hold, read with SQL and from the broker:</para>
/// <list type="number">
/// <item>nothing lost, nothing unexpected: every submitted task is final, and no row exists for an id nobody sent;</item>
/// <item>no attempt row left open (<c>outcome = 'running'</c>);</item>
/// <item>no healthy task wrongly failed: noop, sleep and sha256 cannot fail on their own, so every healthy task ends
/// <c>succeeded</c> (any other state is reported with its error_type and message);</item>
/// <item>every duplicate execution is explained by a fault. An execution after the first exists only because the claim
/// before it was taken over: the task was queued again (a drain's hand-back, the reconciler) or a redelivered message
/// claimed it while it was running. So each execution N (N &gt; 1) is explained by execution N-1, which must either
/// have been cut off, ending <c>abandoned</c>, <c>handed_back</c> or <c>lost</c>, by a fault that touched it: its own
/// worker killed, drained or exited after it started, or a RabbitMQ or PostgreSQL restart during its life (from its
/// start to its end, with a margin of 5 s before the fault and 10 s after, and started at most 30 s before the fault:
/// these executions take milliseconds, so one older than that was not in flight); or have finished itself (its late
/// completion overwrites the <c>abandoned</c> mark the takeover wrote) after a fault had already given its message to
/// another worker: its own worker drained, or a RabbitMQ restart, during its life. The only such faults are those that
/// close a live worker's channel; a kill cannot be one (the killed execution never completes) and a database restart
/// neither (it redelivers nothing). Any other duplicate is unexplained and fails the test; the counts per explanation
/// are printed;</item>
/// <item>duplicates bounded: at most one extra execution per message a fault can take from a worker, i.e. the
/// in-flight capacity of a worker (its I/O concurrency plus its CPU threads plus its CPU lookahead) per worker killed,
/// drained or exited, and that of the whole fleet per RabbitMQ or PostgreSQL restart. Purges and hostile bursts add
/// none (a purge takes only ready messages, never claimed);</item>
/// <item>no message in <c>fleet-cpu_error</c> or <c>fleet-io_error</c>;</item>
/// <item>every hostile message (NUL in a payload string, a lone surrogate escape, a body that is not JSON under a
/// UUID message_id, a payload that is a number, a payload nested 10,000 levels, a 5 MB type) ends as a task row
/// <c>failed</c> with an error_type, under its own id; none missing. They are checked apart from the healthy tasks;</item>
/// <item>a worker that exits by itself is replaced at once, as its supervisor would; that is a finding unless it had
/// claimed nothing (a worker that cannot reach RabbitMQ while it starts gives up, and held no task).</item>
/// </list>
/// </summary>
[Trait("Category", "Chaos")]
public sealed partial class ChaosSoakTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    private const int WorkerCount = 3;
    private const int CpuConcurrency = 1;
    private const int ChunkSize = 500;

    /// <summary>Chunks a purge submits at once, just before it purges: the backlog it purges.</summary>
    private const int PurgeBacklogChunks = 3;

    private const int MaxBrokerRestarts = 3;
    private const int MaxDatabaseRestarts = 3;
    private const int MaxHostileBursts = 2;

    /// <summary>How far before a fault's start, and after its end, an execution still counts as touched by it.</summary>
    private static readonly TimeSpan MarginBefore = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan MarginAfter = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long before a fault an execution it cut off may have started: a noop, sleep or sha256 execution takes
    /// milliseconds, and its writes wait through a database restart for seconds; one that started earlier than this
    /// was over (or cut off by something else) when the fault came.
    /// </summary>
    private static readonly TimeSpan InFlightLimit = TimeSpan.FromSeconds(30);

    private readonly Lock _gate = new();
    private readonly List<Fault> _faults = [];
    private readonly List<string> _findings = [];

    [Fact]
    public async Task RandomFaults_LoseNothing_FailNoHealthyTask_AndEveryDuplicateHasAFault()
    {
        var total = int.TryParse(Environment.GetEnvironmentVariable("FLEET_CHAOS_TASKS"), out var n) ? n : 20_000;
        var seconds = int.TryParse(Environment.GetEnvironmentVariable("FLEET_CHAOS_SECONDS"), out var s) ? s : 180;
        var seed = int.TryParse(Environment.GetEnvironmentVariable("FLEET_CHAOS_SEED"), out var chosen) ? chosen : Environment.TickCount;
        var random = new Random(seed);
        output.WriteLine($"FLEET_CHAOS_SEED={seed}");

        var workers = new List<WorkerProcess>();
        var hosts = new List<string>();
        var generation = 0;
        (WorkerProcess, string) StartWorker()
        {
            var host = $"chaos-{++generation}";
            return (WorkerProcess.Start(ChaosWorkerSettings(host)), host);
        }

        for (var i = 0; i < WorkerCount; i++)
        {
            var (worker, host) = StartWorker();
            workers.Add(worker);
            hosts.Add(host);
        }

        // Tasks arrive over FLEET_CHAOS_SECONDS in chunks, so the faults hit a fleet that is busy the whole time. A
        // chunk that fails (broker or database restarting) is submitted again with the same ids: resubmitting is
        // idempotent. At one or two chunks chosen now, the submitter sends the next PurgeBacklogChunks at once and
        // purges both lanes right after: a purge of a lane with a backlog, which only the reconciler can heal.
        static TaskRequest Mixed(int i) => (i % 20) switch
        {
            < 15 => TaskRequest.Create("noop", new { }),
            < 19 => TaskRequest.Create("sleep", new { ms = 20 }),
            _ => TaskRequest.Create("sha256", new { size_kb = 256, rounds = 4, seed = i }),
        };

        var requests = Enumerable.Range(0, total).Select(i => Mixed(i) with { TaskId = Guid.CreateVersion7() }).ToList();
        var ids = requests.Select(r => r.TaskId!.Value).ToList();
        var chunks = new ConcurrentQueue<TaskRequest[]>(requests.Chunk(ChunkSize));
        var chunkCount = chunks.Count;
        var purgeAt = new HashSet<int> { random.Next(chunkCount / 5, Math.Max(chunkCount / 5 + 1, chunkCount * 3 / 5)) };
        if (random.Next(2) == 0)
        {
            purgeAt.Add(random.Next(chunkCount / 5, Math.Max(chunkCount / 5 + 1, chunkCount * 4 / 5)));
        }

        var submitted = 0;
        var resubmits = 0;
        var submitter = Task.Run(async () =>
        {
            for (var index = 0; chunks.TryDequeue(out var chunk); index++)
            {
                if (purgeAt.Contains(index))
                {
                    var backlog = new List<TaskRequest>(chunk);
                    for (var more = 1; more < PurgeBacklogChunks && chunks.TryDequeue(out var next); more++)
                    {
                        backlog.AddRange(next);
                    }

                    await SubmitAsync(backlog);
                    await PurgeLanesAsync(backlog.Count);
                    Interlocked.Add(ref submitted, backlog.Count);
                }
                else
                {
                    await SubmitAsync(chunk);
                    Interlocked.Add(ref submitted, chunk.Length);
                }

                await Task.Delay(TimeSpan.FromSeconds((double)seconds / chunkCount));
            }
        });

        async Task SubmitAsync(IReadOnlyList<TaskRequest> chunk)
        {
            while (true)
            {
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                    await Fleet.Client.SubmitManyAsync(chunk, timeout.Token);
                    return;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    Interlocked.Increment(ref resubmits);
                    await Task.Delay(1000);
                }
            }
        }

        // The first hostile burst comes once this many tasks were submitted; a second may come at random.
        var hostileAt = (int)(total * (0.1 + (random.NextDouble() * 0.6)));
        var hostile = new List<HostileTask>();

        var clock = Stopwatch.StartNew();
        var brokerRestarts = 0;
        var databaseRestarts = 0;
        try
        {
            while (clock.Elapsed < TimeSpan.FromMinutes(15)
                   && (!submitter.IsCompleted || hostile.Count == 0 || await FinalCountAsync(ids) < ids.Count))
            {
                await Task.Delay(TimeSpan.FromMilliseconds(random.Next(2_000, 6_000)));
                ReplaceWorkersThatExited(workers, hosts, StartWorker);
                var victim = random.Next(workers.Count);
                var started = DateTime.UtcNow;
                var pick = hostile.Count == 0 && Volatile.Read(ref submitted) >= hostileAt ? 10 : random.Next(11);
                switch (pick)
                {
                    case < 4:
                        await workers[victim].KillAsync();
                        await workers[victim].DisposeAsync();
                        Record(FaultKind.Kill, started, hosts[victim]);
                        (workers[victim], hosts[victim]) = StartWorker();
                        break;
                    case < 7:
                        await workers[victim].TerminateAsync(TimeSpan.FromSeconds(60));
                        await workers[victim].DisposeAsync();
                        Record(FaultKind.Drain, started, hosts[victim]);
                        (workers[victim], hosts[victim]) = StartWorker();
                        break;
                    case < 8 when brokerRestarts < MaxBrokerRestarts:
                        brokerRestarts++;
                        await Fleet.Servers.RestartRabbitMqAsync();
                        Record(FaultKind.BrokerRestart, started);
                        break;
                    case < 9 when databaseRestarts < MaxDatabaseRestarts:
                        databaseRestarts++;
                        await Fleet.Servers.StopPostgresAsync();
                        await Task.Delay(TimeSpan.FromSeconds(random.Next(1, 5)));
                        await Fleet.Servers.StartPostgresAsync();
                        await Fleet.ReconnectAfterDatabaseRestartAsync();
                        Record(FaultKind.DatabaseRestart, started);
                        break;
                    case 10 when hostile.Count < MaxHostileBursts * HostileKinds.Length * TaskQueues.All.Count:
                        var burst = HostileBurst();
                        await PublishHostileAsync(burst);
                        hostile.AddRange(burst);
                        Record(FaultKind.HostileBurst, started, detail: $"{burst.Count} messages");
                        break;
                    default:
                        Record(FaultKind.Pause, started);
                        break;
                }

                output.WriteLine($"{clock.Elapsed:mm\\:ss} {LastFault()}; {Volatile.Read(ref submitted)} submitted, {await FinalCountAsync(ids)} final");
            }

            await submitter;
            ReplaceWorkersThatExited(workers, hosts, StartWorker);
            await WaitUntilAsync(async () => await FinalCountAsync(ids) == ids.Count, TimeSpan.FromMinutes(5));

            // On a worker without hostile-input handling these never become final (they are retried, then sent to
            // _error): the wait is bounded, and each missing one is reported below.
            var hostileIds = hostile.Select(h => h.Id).ToList();
            await WaitUntilAsync(async () => await FinalCountAsync(hostileIds) == hostileIds.Count, TimeSpan.FromSeconds(90));

            // A duplicate execution may still run when its task is already final: let it end before looking.
            await WaitUntilAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE outcome = 'running'") == 0,
                TimeSpan.FromSeconds(60));
        }
        finally
        {
            foreach (var worker in workers)
            {
                await worker.DisposeAsync();
            }
        }

        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, ids, hostile.Select(h => h.Id).ToList());
        if (report.Lost > 0)
        {
            _findings.Add($"{report.Lost} healthy tasks lost (not final): {string.Join("; ", await NotFinalAsync(ids))}");
        }

        if (report.Unexpected > 0)
        {
            _findings.Add($"{report.Unexpected} task rows for ids never sent");
        }

        var openAttempts = await CheckOpenAttemptsAsync();
        var wronglyFailed = await CheckHealthyTasksSucceededAsync(ids);
        var (duplicates, explanations, unexplained) = await CheckDuplicatesAsync([.. ids, .. hostile.Select(h => h.Id)]);
        var bound = DuplicateBound(out var boundText);
        if (duplicates > bound)
        {
            _findings.Add($"{duplicates} duplicate executions, more than the faults can cause: {boundText}");
        }

        var errorQueues = await CheckErrorQueuesAsync(hostile);
        var exitedWorkers = await CheckExitedWorkersAsync();
        var hostileFailed = await CheckHostileAsync(hostile);

        var purges = Faults().Where(f => f.Kind == FaultKind.Purge).Select(f => f.Detail).ToList();
        if (purges.Count == 0)
        {
            _findings.Add("no purge happened (the broker refused it for 90 s)");
        }

        var summary = $"chaos: {report}; {clock.Elapsed.TotalSeconds:0} s, seed {seed}, {resubmits} chunk resubmits, " +
            $"faults: {string.Join(", ", Faults().GroupBy(f => f.Name).Select(g => $"{g.Count()} x {g.Key}"))}; " +
            $"{exitedWorkers} workers exited by themselves, {openAttempts} open attempts, {wronglyFailed} healthy not succeeded, " +
            $"duplicates {duplicates} (bound {bound}: {boundText}; {unexplained} unexplained" +
            (explanations.Count > 0 ? $"; {string.Join(", ", explanations.OrderByDescending(e => e.Value).Select(e => $"{e.Value} x {e.Key}"))}" : "") + "); " +
            $"{(purges.Count == 0 ? "no purge" : string.Join(", ", purges))}; " +
            $"hostile {hostileFailed} of {hostile.Count} failed with an error_type; _error queues {errorQueues.Cpu} + {errorQueues.Io}";
        output.WriteLine(summary);
        Console.WriteLine(summary);
        foreach (var finding in _findings)
        {
            output.WriteLine($"FINDING: {finding}");
            Console.WriteLine($"chaos FINDING: {finding}");
        }

        Assert.True(_findings.Count == 0, string.Join('\n', _findings));
    }

    /// <summary>The fixture's worker settings, with a reconciler quick enough to heal a purge within the soak.</summary>
    private Dictionary<string, string?> ChaosWorkerSettings(string host)
    {
        var settings = Fleet.WorkerSettings(host, cpuConcurrency: CpuConcurrency);
        settings["Worker:ReconcileIntervalSeconds"] = "2";
        settings["Worker:ReconcileAfterSeconds"] = "10";
        return settings;
    }

    /// <summary>Messages one worker can hold at once: its I/O concurrency, its CPU threads and its CPU lookahead (one per thread).</summary>
    private int InFlightPerWorker() =>
        int.Parse(ChaosWorkerSettings("capacity")["Worker:IoConcurrency"]!, CultureInfo.InvariantCulture) + CpuConcurrency + CpuConcurrency;

    private long DuplicateBound(out string text)
    {
        var perWorker = InFlightPerWorker();
        int Count(FaultKind kind) => _faults.Count(f => f.Kind == kind);
        var workerFaults = Count(FaultKind.Kill) + Count(FaultKind.Drain) + Count(FaultKind.Exited);
        var fleetFaults = Count(FaultKind.BrokerRestart) + Count(FaultKind.DatabaseRestart);
        text = $"{perWorker} x ({Count(FaultKind.Kill)} kills + {Count(FaultKind.Drain)} drains + {Count(FaultKind.Exited)} exits) + {WorkerCount * perWorker} x " +
            $"({Count(FaultKind.BrokerRestart)} RabbitMQ + {Count(FaultKind.DatabaseRestart)} PostgreSQL restarts)";
        return ((long)perWorker * workerFaults) + ((long)WorkerCount * perWorker * fleetFaults);
    }

    /// <summary>
    /// A worker that ended although nothing stopped it is replaced at once, as its supervisor would, so that the
    /// soak goes on; whether it hurt anything is judged at the end (<see cref="CheckExitedWorkersAsync"/>).
    /// </summary>
    private void ReplaceWorkersThatExited(List<WorkerProcess> workers, List<string> hosts, Func<(WorkerProcess, string)> start)
    {
        for (var i = 0; i < workers.Count; i++)
        {
            if (!workers[i].HasExited)
            {
                continue;
            }

            var lines = workers[i].Output.Split('\n');
            var reason = lines.FirstOrDefault(l => l.StartsWith("Unhandled exception.", StringComparison.Ordinal)) ?? string.Join(" | ", lines.TakeLast(5));
            Record(FaultKind.Exited, DateTime.UtcNow, hosts[i], $"pid {workers[i].Pid}: {reason}");
            (workers[i], hosts[i]) = start();
        }
    }

    /// <summary>
    /// A worker that exited by itself before it claimed any task held nothing and hurt nothing (one that cannot reach
    /// RabbitMQ while starting gives up, for one): counted, not a finding. One that exited after it claimed tasks is
    /// a finding, with its reason.
    /// </summary>
    private async Task<int> CheckExitedWorkersAsync()
    {
        var exited = Faults().Where(f => f.Kind == FaultKind.Exited).ToList();
        foreach (var fault in exited)
        {
            var claimed = await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE worker_id LIKE @prefix", ("prefix", fault.Host + ":%"));
            var what = $"worker {fault.Host} exited by itself at {fault.Start:HH:mm:ss} ({fault.Detail})";
            if (claimed > 0)
            {
                _findings.Add($"{what} after it had claimed {claimed} executions");
            }
            else
            {
                output.WriteLine($"{what} before it claimed any task");
            }
        }

        return exited.Count;
    }

    /// <summary>Purges both lanes (retrying while the broker restarts) and records what each held ready.</summary>
    private async Task PurgeLanesAsync(int backlog)
    {
        var started = DateTime.UtcNow;
        var deadline = started + TimeSpan.FromSeconds(90);
        while (true)
        {
            try
            {
                await using var connection = await Fleet.OpenRabbitAsync();
                await using var channel = await connection.CreateChannelAsync();
                var io = await channel.QueuePurgeAsync(TaskQueues.Io);
                var cpu = await channel.QueuePurgeAsync(TaskQueues.Cpu);
                Record(FaultKind.Purge, started, detail: $"purge after a {backlog}-task backlog took {io} from fleet-io and {cpu} from fleet-cpu");
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(1000);
            }
        }
    }

    private void Record(FaultKind kind, DateTime started, string? host = null, string? detail = null)
    {
        lock (_gate)
        {
            _faults.Add(new Fault(kind, started, DateTime.UtcNow, host, detail));
        }
    }

    private string LastFault()
    {
        lock (_gate)
        {
            var last = _faults[^1];
            return last.Detail is null ? last.Name : $"{last.Name} ({last.Detail})";
        }
    }

    private List<Fault> Faults()
    {
        lock (_gate)
        {
            return [.. _faults];
        }
    }

    // ---- hostile messages ----

    private static readonly string FiveMegabytes = new('t', 5 * 1024 * 1024);

    /// <summary>Each kind of hostile message, as the body and AMQP message_id published for a task id.</summary>
    private static readonly (string Kind, Func<Guid, (string Body, string? MessageId)> Make)[] HostileKinds =
    [
        ("NUL in a payload string", id => (Envelope(id, "noop", """{"note":"a\u0000b"}"""), null)),
        ("lone surrogate in a payload string", id => (Envelope(id, "noop", """{"note":"\ud800"}"""), null)),
        ("body not JSON, message_id a UUID", id => ("this is not JSON {", id.ToString())),
        ("payload a number", id => (Envelope(id, "noop", "5"), null)),
        ("payload nested 10,000 levels", id => (Envelope(id, "noop", new string('[', 10_000) + new string(']', 10_000)), null)),
        ("5 MB type", id => (Envelope(id, FiveMegabytes, "{}"), null)),
    ];

    private static string Envelope(Guid id, string type, string payload) =>
        $$"""{"taskId":"{{id}}","type":"{{type}}","payload":{{payload}},"maxAttempts":1}""";

    private static List<HostileTask> HostileBurst() =>
        [.. HostileKinds.SelectMany(kind => TaskQueues.All.Select(lane =>
        {
            var id = Guid.CreateVersion7();
            var (body, messageId) = kind.Make(id);
            return new HostileTask(kind.Kind, lane, id, Encoding.UTF8.GetBytes(body), messageId);
        }))];

    /// <summary>Publishes raw bodies as any AMQP client would (persistent, publisher confirms), retrying while the broker restarts.</summary>
    private async Task PublishHostileAsync(IReadOnlyList<HostileTask> messages)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            try
            {
                await using var connection = await Fleet.OpenRabbitAsync();
                await using var channel = await connection.CreateChannelAsync(
                    new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
                foreach (var message in messages)
                {
                    var properties = new BasicProperties { ContentType = "application/json", DeliveryMode = DeliveryModes.Persistent, MessageId = message.MessageId };
                    await channel.BasicPublishAsync(message.Lane, "", mandatory: true, properties, message.Body);
                }

                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(1000);
            }
        }
    }

    /// <summary>Each hostile message must be a task row, failed, with an error_type. Returns how many are.</summary>
    private async Task<int> CheckHostileAsync(IReadOnlyList<HostileTask> hostile)
    {
        var rows = (await ListAsync(
            "SELECT id, status, error_type, left(error_message, 160) FROM fleet.tasks WHERE id = ANY(@ids)",
            r => (Id: r.GetGuid(0), Status: r.GetString(1), ErrorType: r.IsDBNull(2) ? null : r.GetString(2), Message: r.IsDBNull(3) ? null : r.GetString(3)),
            ("ids", hostile.Select(h => h.Id).ToArray()))).ToDictionary(r => r.Id);
        var failed = 0;
        foreach (var message in hostile)
        {
            var what = $"hostile '{message.Kind}' on {message.Lane} (task {message.Id})";
            if (!rows.TryGetValue(message.Id, out var row))
            {
                _findings.Add($"{what}: no task row");
            }
            else if (row.Status != "failed" || string.IsNullOrEmpty(row.ErrorType))
            {
                _findings.Add($"{what}: ended {row.Status} with error_type {row.ErrorType ?? "null"} ({row.Message}), expected failed with an error_type");
            }
            else
            {
                failed++;
                output.WriteLine($"{what}: failed, {row.ErrorType}: {row.Message}");
            }
        }

        return failed;
    }

    /// <summary>The _error queues must be empty; what is in them is described (and left there).</summary>
    private async Task<(uint Cpu, uint Io)> CheckErrorQueuesAsync(IReadOnlyList<HostileTask> hostile)
    {
        var cpu = await QueueMessageCountAsync($"{TaskQueues.Cpu}_error");
        var io = await QueueMessageCountAsync($"{TaskQueues.Io}_error");
        foreach (var (queue, count) in new[] { ($"{TaskQueues.Cpu}_error", cpu), ($"{TaskQueues.Io}_error", io) })
        {
            if (count > 0)
            {
                _findings.Add($"{count} messages in {queue}: {string.Join("; ", await PeekAsync(queue, hostile))}");
            }
        }

        return (cpu, io);
    }

    /// <summary>The messages of a queue, read without acknowledging them (they stay), with the fault MassTransit recorded.</summary>
    private async Task<List<string>> PeekAsync(string queue, IReadOnlyList<HostileTask> hostile)
    {
        var seen = new List<string>();
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync();
        for (var i = 0; i < 40 && await channel.BasicGetAsync(queue, autoAck: false) is { } message; i++)
        {
            var body = Encoding.UTF8.GetString(message.Body.Span[..Math.Min(message.Body.Length, 400)]);
            var messageId = message.BasicProperties.MessageId;
            var kind = hostile.FirstOrDefault(h => body.Contains(h.Id.ToString(), StringComparison.Ordinal) || (messageId is not null && h.MessageId == messageId));
            var taskId = TaskIdInBody().Match(body) is { Success: true } match ? match.Groups[1].Value : messageId ?? "none";
            string? Header(string name) => message.BasicProperties.Headers?.TryGetValue(name, out var value) == true
                ? value is byte[] bytes ? Encoding.UTF8.GetString(bytes) : value?.ToString()
                : null;
            var fault = Header("MT-Fault-Message");
            seen.Add($"{(kind is null ? $"healthy task {taskId}" : $"hostile '{kind.Kind}' on {kind.Lane} (task {kind.Id})")}: " +
                $"{Header("MT-Fault-ExceptionType")}: {fault?[..Math.Min(fault.Length, 200)]}");
        }

        return seen;
    }

    [System.Text.RegularExpressions.GeneratedRegex("\"taskId\"\\s*:\\s*\"([0-9a-fA-F-]{36})\"")]
    private static partial System.Text.RegularExpressions.Regex TaskIdInBody();

    // ---- the SQL invariants ----

    /// <summary>No attempt row may stay open; each one left is reported with its task and its worker's fate.</summary>
    private async Task<long> CheckOpenAttemptsAsync()
    {
        var open = await ListAsync(
            """
            SELECT a.task_id, a.attempt, a.worker_id, a.started_at, t.status, t.attempts
            FROM fleet.task_attempts a LEFT JOIN fleet.tasks t ON t.id = a.task_id
            WHERE a.outcome = 'running' ORDER BY a.started_at
            """,
            r => $"task {r.GetGuid(0)} attempt {r.GetInt32(1)} of {(r.IsDBNull(5) ? "?" : r.GetInt32(5).ToString(CultureInfo.InvariantCulture))} on {r.GetString(2)} " +
                 $"({WorkerFate(r.GetString(2))}), started {r.GetDateTime(3):HH:mm:ss.fff}, task {(r.IsDBNull(4) ? "missing" : r.GetString(4))}");
        if (open.Count > 0)
        {
            _findings.Add($"{open.Count} attempt rows still running: {string.Join("; ", open.Take(10))}");
        }

        return open.Count;
    }

    /// <summary>Healthy tasks cannot fail on their own: each must end succeeded. Returns how many did not (among those with a row).</summary>
    private async Task<int> CheckHealthyTasksSucceededAsync(IReadOnlyCollection<Guid> ids)
    {
        var wrong = await ListAsync(
            """
            SELECT t.id, t.type, t.status, coalesce(t.error_type, ''), coalesce(left(t.error_message, 300), ''), t.attempts,
                   (SELECT string_agg(a.attempt || ' ' || a.outcome || ' on ' || a.worker_id, ', ' ORDER BY a.attempt)
                    FROM fleet.task_attempts a WHERE a.task_id = t.id)
            FROM fleet.tasks t WHERE t.id = ANY(@ids) AND t.status <> 'succeeded' ORDER BY t.submitted_at
            """,
            r => $"task {r.GetGuid(0)} ({r.GetString(1)}) ended {r.GetString(2)}, {r.GetString(3)}: {r.GetString(4)}; attempts {r.GetInt32(5)}: " +
                 (r.IsDBNull(6) ? "none" : r.GetString(6)),
            ("ids", ids.ToArray()));
        if (wrong.Count > 0)
        {
            _findings.Add($"{wrong.Count} healthy tasks did not succeed: {string.Join("; ", wrong.Take(10))}");
        }

        return wrong.Count;
    }

    /// <summary>
    /// Explains each execution after the first of a task by the one before it (see the class comment). Returns the
    /// duplicate executions, their counts per explanation, and how many have none.
    /// </summary>
    private async Task<(long Duplicates, Dictionary<string, int> Explanations, int Unexplained)> CheckDuplicatesAsync(IReadOnlyCollection<Guid> ids)
    {
        var rows = await ListAsync(
            """
            SELECT a.task_id, a.attempt, a.worker_id, a.started_at, a.finished_at, a.outcome
            FROM fleet.task_attempts a
            WHERE a.task_id IN (SELECT task_id FROM fleet.task_attempts WHERE task_id = ANY(@ids) GROUP BY task_id HAVING count(*) > 1)
            ORDER BY a.task_id, a.attempt
            """,
            r => new AttemptRow(r.GetGuid(0), r.GetInt32(1), r.GetString(2), r.GetDateTime(3), r.IsDBNull(4) ? null : r.GetDateTime(4), r.GetString(5)),
            ("ids", ids.ToArray()));
        var faults = Faults();
        var explanations = new Dictionary<string, int>();
        var unexplained = new List<string>();
        long duplicates = 0;
        foreach (var task in rows.GroupBy(r => r.TaskId))
        {
            var attempts = task.ToList();
            for (var i = 1; i < attempts.Count; i++)
            {
                duplicates++;
                var before = attempts[i - 1];
                if (Explain(before, faults) is { } explanation)
                {
                    explanations[explanation] = explanations.GetValueOrDefault(explanation) + 1;
                }
                else
                {
                    unexplained.Add($"task {task.Key} attempt {attempts[i].Attempt} on {attempts[i].WorkerId} after attempt {before.Attempt} on {before.WorkerId} " +
                        $"({WorkerFate(before.WorkerId)}) ended {before.Outcome}, ran {before.StartedAt:HH:mm:ss.fff}-{before.FinishedAt:HH:mm:ss.fff}; " +
                        $"all: {string.Join(", ", attempts.Select(a => $"{a.Attempt} {a.Outcome} {a.StartedAt:HH:mm:ss.fff}-{a.FinishedAt:HH:mm:ss.fff}"))}");
                }
            }
        }

        if (unexplained.Count > 0)
        {
            _findings.Add($"{unexplained.Count} duplicate executions without a fault to explain them: {string.Join("; ", unexplained.Take(10))}");
        }

        return (duplicates, explanations, unexplained.Count);
    }

    /// <summary>Why the execution after <paramref name="before"/> exists, or null when no fault explains it.</summary>
    private static string? Explain(AttemptRow before, IReadOnlyList<Fault> faults)
    {
        var host = HostOf(before.WorkerId);
        var end = before.FinishedAt ?? DateTime.MaxValue;
        bool Touched(Fault f) =>
            f.Start - MarginBefore <= end && before.StartedAt <= f.End + MarginAfter && before.StartedAt >= f.Start - InFlightLimit;
        bool OwnWorker(Fault f) => f.Host == host && f.Start >= before.StartedAt - MarginBefore && Touched(f);
        FaultKind? Cause(params FaultKind[] kinds) =>
            kinds.Cast<FaultKind?>().FirstOrDefault(k => faults.Any(f => f.Kind == k && (k is FaultKind.Kill or FaultKind.Drain or FaultKind.Exited ? OwnWorker(f) : Touched(f))));

        switch (before.Outcome)
        {
            case "abandoned" or "handed_back" or "lost":
                var cut = Cause(FaultKind.Kill, FaultKind.Exited, FaultKind.Drain, FaultKind.BrokerRestart, FaultKind.DatabaseRestart);
                return cut is null ? null : $"{before.Outcome} ({Describe(cut.Value)})";
            case "running":
                return null;
            default:
                var overtaken = Cause(FaultKind.Drain, FaultKind.BrokerRestart);
                return overtaken is null ? null : $"{before.Outcome} late, its message redelivered ({Describe(overtaken.Value)})";
        }
    }

    private static string Describe(FaultKind kind) => kind switch
    {
        FaultKind.Kill => "its worker killed",
        FaultKind.Exited => "its worker exited by itself",
        FaultKind.Drain => "its worker drained",
        FaultKind.BrokerRestart => "RabbitMQ restart",
        FaultKind.DatabaseRestart => "PostgreSQL restart",
        _ => kind.ToString(),
    };

    private static string HostOf(string workerId)
    {
        var colon = workerId.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? workerId : workerId[..colon];
    }

    private string WorkerFate(string workerId)
    {
        var host = HostOf(workerId);
        var fate = Faults().FirstOrDefault(f => f.Host == host);
        return fate is null ? "its worker ran to the end" : $"its worker: {fate.Name} at {fate.Start:HH:mm:ss.fff}";
    }

    private async Task<List<string>> NotFinalAsync(IReadOnlyCollection<Guid> ids) =>
        await ListAsync(
            """
            SELECT s.id, t.status, t.attempts, t.queue FROM unnest(@ids) AS s(id) LEFT JOIN fleet.tasks t ON t.id = s.id
            WHERE t.status IS NULL OR t.status NOT IN ('succeeded','failed','timed_out','cancelled') LIMIT 10
            """,
            r => $"{r.GetGuid(0)} {(r.IsDBNull(1) ? "no row" : $"{r.GetString(1)}, {r.GetInt32(2)} attempts, {r.GetString(3)}")}",
            ("ids", ids.ToArray()));

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && !await condition())
        {
            await Task.Delay(500);
        }
    }

    private async Task<long> FinalCountAsync(IReadOnlyCollection<Guid> ids)
    {
        try
        {
            return await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status IN ('succeeded','failed','timed_out','cancelled')", ("ids", ids.ToArray()));
        }
        catch (Npgsql.NpgsqlException)
        {
            // Asked while the database restarts.
            return -1;
        }
    }

    private enum FaultKind
    {
        Kill,
        Drain,
        BrokerRestart,
        DatabaseRestart,
        Purge,
        HostileBurst,
        Pause,
        Exited,
    }

    /// <summary>One injected fault: when it began and ended (UTC, the clock the workers and PostgreSQL also use), and the worker it hit.</summary>
    private sealed record Fault(FaultKind Kind, DateTime Start, DateTime End, string? Host, string? Detail)
    {
        public string Name => Kind switch
        {
            FaultKind.Kill => "kill -9 worker",
            FaultKind.Drain => "SIGTERM worker",
            FaultKind.BrokerRestart => "restart RabbitMQ",
            FaultKind.DatabaseRestart => "restart PostgreSQL",
            FaultKind.Purge => "purge both lanes",
            FaultKind.HostileBurst => "hostile burst",
            FaultKind.Exited => "worker exited by itself",
            _ => "pause",
        };
    }

    private sealed record HostileTask(string Kind, string Lane, Guid Id, byte[] Body, string? MessageId);

    private sealed record AttemptRow(Guid TaskId, int Attempt, string WorkerId, DateTime StartedAt, DateTime? FinishedAt, string Outcome);
}
