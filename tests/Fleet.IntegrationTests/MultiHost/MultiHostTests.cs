using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Npgsql;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.MultiHost;

/// <summary>
/// Workers on separate simulated servers (network namespaces with their own addresses), all reaching PostgreSQL
/// and RabbitMQ over the bridge: scale-out, fair dispatch to a slower server, and a network partition of one
/// server in the middle of a run. The work is real <c>heat</c> tasks on a 64 x 64 grid, small so that the tests
/// stay short on a busy machine. Every figure is printed; the only time-based checks compare figures measured
/// in the same run.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class MultiHostTests(MultiHostFixture fleet, ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan StartWait = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan RunWait = TimeSpan.FromMinutes(8);

    public Task InitializeAsync() => fleet.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task ScaleOut_ThreeServersShareA3000TaskRunEvenly_EachRegisteredUnderItsHostName()
    {
        foreach (var host in fleet.Hosts)
        {
            fleet.StartWorker(host, cpuConcurrency: 2);
        }

        await fleet.WaitForWorkersAsync(fleet.Hosts, StartWait);

        // Separate hosts for real: each worker's broker and database connections come from its own address.
        Assert.True(
            await EventuallyAsync(async () =>
            {
                var connections = await fleet.BrokerConnectionsAsync();
                return fleet.Hosts.All(h => connections.Any(c => c.Name.StartsWith($"fleet-worker {h.Name}:", StringComparison.Ordinal) && c.PeerHost == h.Address.ToString()));
            }, StartWait),
            "Not every server's broker connection came from its own address.");
        var clients = await ListAsync(
            "SELECT DISTINCT host(client_addr) FROM pg_stat_activity WHERE datname = current_database() AND client_addr IS NOT NULL",
            r => r.GetString(0));
        Assert.All(fleet.Hosts, h => Assert.Contains(h.Address.ToString(), clients));

        var batch = Guid.CreateVersion7();
        var ids = await fleet.Client.SubmitManyAsync(HeatRequests(3000, steps: 2500, batch));
        await WaitForFinalAsync(batch, ids.Count);

        var report = await DeliveryReport.ReadAsync(fleet.DataSource, ids);
        var shares = await PerHostAsync(batch);
        Print($"scale-out, 3 servers x 2 CPU-lane threads, {ids.Count} heat tasks: {report}", shares);
        Assert.Equal((0L, 0L), (report.Lost, report.Unexpected));
        Assert.Equal(fleet.Hosts.Select(h => h.Name), shares.Select(s => s.Host));
        foreach (var share in shares)
        {
            // Within 20% of a third: 800 to 1,200 of 3,000.
            Assert.InRange(share.Tasks, 800, 1200);
        }

        var workers = await ListAsync("SELECT host, id FROM fleet.workers ORDER BY host", r => (Host: r.GetString(0), Id: r.GetString(1)));
        Assert.Equal(fleet.Hosts.Select(h => h.Name), workers.Select(w => w.Host));
        Assert.All(workers, w => Assert.StartsWith(w.Host + ":", w.Id, StringComparison.Ordinal));

        // The API sees the same fleet: every server live in GET /workers.
        await using var api = await fleet.StartApiAsync();
        using var http = api.CreateClient();
        using var listed = JsonDocument.Parse(await http.GetStringAsync(new Uri("workers", UriKind.Relative)));
        Assert.Equal(
            fleet.Hosts.Select(h => h.Name),
            listed.RootElement.EnumerateArray().Where(w => w.GetProperty("live").GetBoolean()).Select(w => w.GetProperty("host").GetString()).Order());
    }

    [Fact]
    public async Task FairDispatch_ASlowServerHoldsNoBacklog_RunEndsWithin15PercentOfWhatTheCapacitiesPredict_AndTheAutoscalingSignalFollowsIt()
    {
        // server-3 is the slow one: one CPU-lane thread against two.
        var threads = new Dictionary<string, int> { ["server-1"] = 2, ["server-2"] = 2, ["server-3"] = 1 };
        foreach (var host in fleet.Hosts)
        {
            fleet.StartWorker(host, threads[host.Name]);
        }

        await fleet.WaitForWorkersAsync(fleet.Hosts, StartWait);

        // What keeps the slow server from hoarding: its prefetch is its CPU-lane threads plus one task per thread claimed
        // ahead (Worker:CpuClaimAhead) and one delivered (Worker:CpuLookahead), so the broker gives it only what it
        // starts next, and the rest waits in the queue for whichever server frees a thread first.
        IReadOnlyList<(string Connection, string PeerHost, int Prefetch)> consumers = [];
        Assert.True(await EventuallyAsync(async () => (consumers = await fleet.QueueConsumersAsync(TaskQueues.Cpu)).Count == fleet.Hosts.Count, StartWait));
        foreach (var host in fleet.Hosts)
        {
            Assert.Equal(3 * threads[host.Name], Assert.Single(consumers, c => c.PeerHost == host.Address.ToString()).Prefetch);
        }

        // The autoscaling signal of the same run: the API samples the backlog, the in-flight work and the
        // servers every second, and /metrics is read before, during and after the run.
        await using var api = await fleet.StartApiAsync(new Dictionary<string, string?>
        {
            ["Api:Autoscale:SampleSeconds"] = "1",
            ["Api:Autoscale:MinWorkers"] = "1",
            ["Api:Autoscale:MaxWorkers"] = "50",
        });
        using var scrape = api.CreateClient(ApiHost.ReadKey);
        var signal = new List<(double Desired, double Backlog)>();
        async Task<(double Desired, double Backlog)> ReadSignalAsync()
        {
            var metrics = await scrape.GetStringAsync(new Uri("metrics", UriKind.Relative));
            return (PrometheusText.Sum(metrics, "fleet_desired_workers") ?? double.NaN,
                (PrometheusText.Sum(metrics, "fleet_queue_ready") ?? 0) + (PrometheusText.Sum(metrics, "fleet_queue_unacked") ?? 0));
        }

        Assert.True(await EventuallyAsync(async () =>
        {
            var metrics = await scrape.GetStringAsync(new Uri("metrics", UriKind.Relative));
            return PrometheusText.Sum(metrics, "fleet_workers_live") == fleet.Hosts.Count;
        }, StartWait), "the API's sampler never saw the three servers live");
        var idle = await ReadSignalAsync();

        var batch = Guid.CreateVersion7();
        // About 10 to 20 s of work. The queue counters come from the management API, which refreshes them every 5 s
        // by default, and a quorum queue reports them on its own 5 s tick (later under load): runs like this one saw
        // their backlog only in their last 3 s, or not at all. The tests' broker refreshes both every second
        // (services.sh, FLEET_THROWAWAY), and the scrapes follow the backlog down second by second.
        var ids = await fleet.Client.SubmitManyAsync(HeatRequests(1800, steps: 5000, batch));
        using (var stopSampling = new CancellationTokenSource())
        {
            var sampling = Task.Run(async () =>
            {
                while (!stopSampling.IsCancellationRequested)
                {
                    signal.Add(await ReadSignalAsync());
                    await Task.Delay(500, CancellationToken.None);
                }
            });
            await WaitForFinalAsync(batch, ids.Count);
            await stopSampling.CancelAsync();
            await sampling;
        }

        // Once the queues are empty and nobody is busy, the next samples say so.
        var drained = idle;
        var fell = await EventuallyAsync(async () => (drained = await ReadSignalAsync()) is { Backlog: 0 } && drained.Desired < signal.Max(x => x.Desired), StartWait);
        var peak = signal.MaxBy(x => x.Desired);

        var report = await DeliveryReport.ReadAsync(fleet.DataSource, ids);
        var shares = await PerHostAsync(batch);
        var first = shares.Min(s => s.FirstStart);
        var last = shares.Max(s => s.LastFinish);
        var actual = (last - first).TotalSeconds;

        // Capacity = each server's own rate over its own busy span, measured in this run; the prediction is the
        // time the whole run takes if every server works at its rate until the end.
        var capacity = shares.Sum(s => s.TasksPerSecond);
        var predicted = ids.Count / capacity;
        var slow = shares.Single(s => s.Host == "server-3");
        var fastLast = shares.Where(s => s.Host != "server-3").Max(s => s.LastFinish);

        // The whole run is written, and carried by every assertion's message, before the first assertion.
        var trace = string.Join(" ", signal.Select(x => string.Create(CultureInfo.InvariantCulture, $"{x.Desired}/{x.Backlog}")));
        var run = Print($"fair dispatch, threads 2/2/1, {ids.Count} heat tasks: {report}", shares) + string.Create(CultureInfo.InvariantCulture,
            $"run {actual:0.00} s, predicted from the servers' rates {predicted:0.00} s (sum {capacity:0.0} tasks/s): ratio {actual / predicted:0.000}; " +
            $"server-3 finished {(slow.LastFinish - fastLast).TotalSeconds:0.000} s after the last of the others. " +
            $"fleet_desired_workers/backlog: {idle.Desired}/{idle.Backlog} idle before the run, peak {peak.Desired}/{peak.Backlog}, " +
            $"{drained.Desired}/{drained.Backlog} after the drain; {signal.Count} scrapes: {trace}");
        output.WriteLine(run);

        Assert.True(fell, $"The signal did not fall after the run. {run}");
        Assert.True(peak.Desired > idle.Desired, $"The signal did not rise with the run. {run}");
        // The scrapes see the backlog and follow it: the counters refresh every second here, so a run of 10 s or more
        // shows it falling through several values (about ten on this machine; one or none when they refreshed every 5 s).
        var backlogs = signal.Where(x => x.Backlog > 0).Select(x => x.Backlog).Distinct().Count();
        Assert.True(backlogs >= 3, $"The scrapes saw {backlogs} different backlogs, not the backlog falling. {run}");
        Assert.Equal((0L, 0L), (report.Lost, report.Unexpected));
        Assert.True(actual <= 1.15 * predicted, $"The run took {actual:0.00} s, more than 15% over the {predicted:0.00} s its servers' capacities predict. {run}");
        Assert.All(shares.Where(s => s.Host != "server-3"), fast => Assert.True(slow.Tasks < fast.Tasks, $"server-3 ran {slow.Tasks}, {fast.Host} {fast.Tasks}. {run}"));
    }

    [Fact]
    public async Task Partition_ACutServersTasksGoToTheOthers_ItRejoinsAfterHealing_EveryTaskFinalExactlyOnce()
    {
        // sleep tasks of 3 s, 3 at a time per server (I/O lane, prefetch 3): whenever the cable is pulled, the
        // server surely holds tasks it has started and not acknowledged, however busy the machine is. A 5 s
        // heartbeat: the broker gives a silent connection up after about two of them.
        const int heartbeatSeconds = 5;
        const int inFlightPerServer = 3;
        var victim = fleet.Hosts[1];
        var workers = fleet.Hosts.ToDictionary(h => h.Name, h => fleet.StartWorker(h, cpuConcurrency: 1, inFlightPerServer, heartbeatSeconds));
        await fleet.WaitForWorkersAsync(fleet.Hosts, StartWait);

        // A producer keeps a backlog queued for the whole test, so every server always has all its slots busy.
        var batch = Guid.CreateVersion7();
        var submitted = new List<Guid>();
        using var stopProducer = new CancellationTokenSource();
        var producer = Task.Run(async () =>
        {
            while (!stopProducer.IsCancellationRequested)
            {
                if ((await fleet.QueueAsync(TaskQueues.Io)).Ready < 20)
                {
                    var requests = Enumerable.Range(0, 20)
                        .Select(_ => new TaskRequest("sleep", JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["ms"] = 3000 })) { BatchId = batch });
                    var ids = await fleet.Client.SubmitManyAsync(requests);
                    lock (submitted)
                    {
                        submitted.AddRange(ids);
                    }
                }

                await Task.Delay(200, CancellationToken.None);
            }
        });

        try
        {
            Assert.True(await EventuallyAsync(async () => await SucceededOnSinceAsync(victim, DateTime.MinValue) >= 3, StartWait), "The server to cut never got going.");

            // Cut while the server is surely running tasks it has not acknowledged (each takes 3 s).
            Assert.True(await EventuallyAsync(async () => await RunningOnAsync(victim) >= 2, StartWait), "The server to cut never had two tasks running.");
            var cutStart = DateTime.UtcNow;
            await fleet.CutAsync(victim);
            var cutEnd = DateTime.UtcNow;
            var clock = Stopwatch.StartNew();

            // Only the cut server's consumer can leave the queue: the broker has closed its connection.
            Assert.True(await EventuallyAsync(async () => (await fleet.QueueAsync(TaskQueues.Io)).Consumers == fleet.Hosts.Count - 1, TimeSpan.FromMinutes(2)),
                "RabbitMQ never closed the cut server's connection.");
            var brokerClosed = clock.Elapsed;

            // Still cut until every task the cut server held has started on another server, so that the hand-over
            // is shown to happen during the partition (a fixed pause raced with a slow redelivery on a busy machine).
            Assert.True(await EventuallyAsync(async () => (await ListAsync(
                """
                SELECT a.task_id FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
                WHERE w.host = @victim AND a.started_at < @cut_start AND (a.finished_at IS NULL OR a.finished_at > @cut_end)
                  AND NOT EXISTS (SELECT 1 FROM fleet.task_attempts b JOIN fleet.workers v ON v.id = b.worker_id
                                  WHERE b.task_id = a.task_id AND v.host <> @victim AND b.started_at > @cut_start)
                """,
                r => r.GetGuid(0), ("victim", victim.Name), ("cut_start", cutStart), ("cut_end", cutEnd))).Count == 0, TimeSpan.FromMinutes(1)),
                "The tasks the cut server held were not handed to the other servers within a minute of the broker dropping it.");
            var healStart = DateTime.UtcNow;
            await fleet.HealAsync(victim);
            clock.Restart();
            Assert.True(await EventuallyAsync(async () => (await fleet.QueueAsync(TaskQueues.Io)).Consumers == fleet.Hosts.Count, TimeSpan.FromMinutes(2)),
                "The healed server never reconnected to RabbitMQ.");
            var reconnected = clock.Elapsed;
            Assert.True(await EventuallyAsync(async () => await SucceededOnSinceAsync(victim, healStart) >= 3, TimeSpan.FromMinutes(2)),
                "The healed server did not keep taking work.");

            await stopProducer.CancelAsync();
            await producer;
            List<Guid> ids;
            lock (submitted)
            {
                ids = [.. submitted];
            }

            await WaitForFinalAsync(batch, ids.Count);
            var report = await DeliveryReport.ReadAsync(fleet.DataSource, ids);
            var shares = await PerHostAsync(batch);

            // Surely unacknowledged at the cut: executions on the cut server that had started before the cut
            // began and had not finished when it was done. Each must have been handed to another server.
            var heldAtCut = await ListAsync(
                """
                SELECT a.task_id FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
                WHERE w.host = @victim AND a.started_at < @cut_start AND (a.finished_at IS NULL OR a.finished_at > @cut_end)
                """,
                r => r.GetGuid(0), ("victim", victim.Name), ("cut_start", cutStart), ("cut_end", cutEnd));
            var takenOver = await ListAsync(
                """
                SELECT a.task_id, min(a.started_at) FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
                WHERE a.task_id = ANY(@ids) AND w.host <> @victim AND a.started_at > @cut_start
                GROUP BY a.task_id
                """,
                r => (Task: r.GetGuid(0), Start: r.GetDateTime(1)), ("ids", heldAtCut.ToArray()), ("victim", victim.Name), ("cut_start", cutStart));

            // Every task that ran more than once, and whether the cut server had started it by the end of the cut.
            var duplicates = await ListAsync(
                """
                SELECT a.task_id, count(*), bool_or(w.host = @victim AND a.started_at < @cut_end)
                FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
                WHERE a.task_id = ANY(@ids)
                GROUP BY a.task_id HAVING count(*) > 1
                """,
                r => (Task: r.GetGuid(0), Runs: r.GetInt64(1), OnCutServer: r.GetBoolean(2)), ("ids", ids.ToArray()), ("victim", victim.Name), ("cut_end", cutEnd));
            var statuses = await ListAsync(
                "SELECT status, count(*) FROM fleet.tasks WHERE batch_id = @batch GROUP BY status",
                r => (Status: r.GetString(0), Count: r.GetInt64(1)), ("batch", batch));

            Print($"partition of {victim.Name} ({victim.Address}), AMQP heartbeat {heartbeatSeconds} s, {ids.Count} sleep tasks of 3 s: {report}", shares);
            var rejoined = await ListAsync(
                """
                SELECT min(a.started_at) FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
                WHERE w.host = @victim AND a.started_at > @heal
                """,
                r => r.GetDateTime(0), ("victim", victim.Name), ("heal", healStart));
            var handOver = takenOver.Count > 0 ? (takenOver.Min(t => t.Start) - cutEnd).TotalSeconds : double.NaN;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"cut (ip link down took {(cutEnd - cutStart).TotalSeconds:0.000} s) -> RabbitMQ closed the cut server's connection: {brokerClosed.TotalSeconds:0.0} s; " +
                $"-> the first of its {heldAtCut.Count} held tasks started on another server: {handOver:0.0} s"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"heal -> reconnected to RabbitMQ: {reconnected.TotalSeconds:0.0} s; -> it started its first new task: {(rejoined.Single() - healStart).TotalSeconds:0.0} s"));
            output.WriteLine($"lost {report.Lost} / duplicate executions {report.DuplicateExecutions} / unexpected {report.Unexpected}; final states: {string.Join(", ", statuses.Select(s => $"{s.Status} {s.Count}"))}");
            var attempts = await ListAsync(
                """
                SELECT a.task_id, a.attempt, w.host, a.started_at, a.finished_at, a.outcome
                FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
                WHERE a.task_id = ANY(@ids) ORDER BY a.task_id, a.attempt
                """,
                r => string.Create(CultureInfo.InvariantCulture,
                    $"  {r.GetGuid(0)} #{r.GetInt32(1)} on {r.GetString(2)}: started {(r.GetDateTime(3) - cutEnd).TotalSeconds:+0.00;-0.00} s, " +
                    $"ended {(r.IsDBNull(4) ? "-" : (r.GetDateTime(4) - cutEnd).TotalSeconds.ToString("+0.00;-0.00", CultureInfo.InvariantCulture))} s after the cut: {r.GetString(5)}"),
                ("ids", heldAtCut.Concat(duplicates.Select(d => d.Task)).Distinct().ToArray()));
            output.WriteLine($"executions of the tasks held by the cut server or run twice:{Environment.NewLine}{string.Join(Environment.NewLine, attempts)}");

            Assert.Equal((0L, 0L, 0L), (report.Lost, report.Unexpected, report.OpenAttempts));
            Assert.Equal(new[] { ("succeeded", (long)ids.Count) }, statuses);
            Assert.NotEmpty(heldAtCut);
            Assert.Equal(heldAtCut.Order(), takenOver.Select(t => t.Task).Order());
            Assert.All(takenOver, t => Assert.True(t.Start < healStart, $"Task {t.Task} of the cut server was taken over only at {t.Start:O}, after the heal at {healStart:O}."));
            Assert.All(duplicates, d => Assert.True(d.OnCutServer && d.Runs == 2, $"Task {d.Task} ran {d.Runs} times and was {(d.OnCutServer ? "" : "not ")}started on the cut server before the cut."));
            Assert.InRange(duplicates.Count, heldAtCut.Count, inFlightPerServer);
            Assert.Equal(report.DuplicateExecutions, duplicates.Count);
        }
        catch
        {
            output.WriteLine($"--- {victim.Name}'s worker log ---{Environment.NewLine}{workers[victim.Name].Output}");
            throw;
        }
        finally
        {
            await stopProducer.CancelAsync();
            await producer;
        }
    }

    /// <summary>heat on a 64 x 64 grid, task i with seed i.</summary>
    private static IEnumerable<TaskRequest> HeatRequests(int count, int steps, Guid batch) =>
        Enumerable.Range(0, count).Select(i => new TaskRequest("heat", JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["n"] = 64, ["steps"] = steps, ["seed"] = i }))
        {
            BatchId = batch,
        });

    private async Task<long> RunningOnAsync(SimulatedHost host)
    {
        await using var command = fleet.DataSource.CreateCommand(
            "SELECT count(*) FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id WHERE w.host = @host AND a.outcome = 'running'");
        command.Parameters.AddWithValue("host", host.Name);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Executions that succeeded on <paramref name="host"/> and started after <paramref name="since"/>.</summary>
    private async Task<long> SucceededOnSinceAsync(SimulatedHost host, DateTime since)
    {
        await using var command = fleet.DataSource.CreateCommand(
            """
            SELECT count(*) FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
            WHERE w.host = @host AND a.outcome = 'succeeded' AND a.started_at > @since
            """);
        command.Parameters.AddWithValue("host", host.Name);
        command.Parameters.AddWithValue("since", DateTime.SpecifyKind(since, DateTimeKind.Utc));
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private async Task WaitForFinalAsync(Guid batch, int count)
    {
        long final = 0;
        var ok = await EventuallyAsync(async () =>
        {
            await using var command = fleet.DataSource.CreateCommand(
                "SELECT count(*) FROM fleet.tasks WHERE batch_id = @batch AND status IN ('succeeded','failed','timed_out','cancelled')");
            command.Parameters.AddWithValue("batch", batch);
            final = (long)(await command.ExecuteScalarAsync())!;
            return final == count;
        }, RunWait);
        Assert.True(ok, $"Only {final} of {count} tasks became final within {RunWait.TotalMinutes:0} minutes.");
    }

    /// <summary>One row per server: successful executions of the batch, and the span from its first start to its last finish.</summary>
    private Task<List<HostShare>> PerHostAsync(Guid batch) => ListAsync(
        """
        SELECT w.host, count(*), min(a.started_at), max(a.finished_at)
        FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id JOIN fleet.tasks t ON t.id = a.task_id
        WHERE t.batch_id = @batch AND a.outcome = 'succeeded'
        GROUP BY w.host ORDER BY w.host
        """,
        r => new HostShare(r.GetString(0), r.GetInt64(1), r.GetDateTime(2), r.GetDateTime(3)),
        ("batch", batch));

    /// <summary>Writes the run's title and each server's share, and returns the same text on one line (for a failure's message).</summary>
    private string Print(string title, IReadOnlyCollection<HostShare> shares)
    {
        output.WriteLine(title);
        var total = shares.Sum(s => s.Tasks);
        var line = new StringBuilder(title).Append("; ");
        foreach (var s in shares)
        {
            var share = string.Create(CultureInfo.InvariantCulture,
                $"{s.Host}: {s.Tasks} tasks ({100.0 * s.Tasks / total:0.0}%), busy {s.Busy.TotalSeconds:0.00} s, {s.TasksPerSecond:0.0} tasks/s");
            output.WriteLine("  " + share);
            line.Append(share).Append("; ");
        }

        return line.ToString();
    }

    private Task<List<T>> ListAsync<T>(string sql, Func<NpgsqlDataReader, T> read, params (string Name, object Value)[] parameters) =>
        fleet.DataSource.ListAsync(sql, read, parameters);

    private static Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout) =>
        Sql.EventuallyAsync(condition, timeout, TimeSpan.FromMilliseconds(200));

    private sealed record HostShare(string Host, long Tasks, DateTime FirstStart, DateTime LastFinish)
    {
        public TimeSpan Busy => LastFinish - FirstStart;

        public double TasksPerSecond => Tasks / Busy.TotalSeconds;
    }
}
