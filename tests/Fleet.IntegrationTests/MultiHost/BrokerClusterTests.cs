using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Npgsql;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.MultiHost;

/// <summary>
/// A run on a three-node RabbitMQ cluster with quorum lanes (<see cref="ClusterFixture"/>) loses a broker node to
/// SIGKILL in the middle, and (in the long variant) later a whole server, broker node and worker, to a 30 s network
/// cut. Every task must end <c>succeeded</c>, the run must finish, a task may run more than once only if it was in
/// flight on a worker whose broker connection was on the lost node (or on the cut server), and at the end every
/// quorum queue has its three members online again. The tasks are short <c>sleep</c>s, so that two cores carry three
/// brokers, three workers and PostgreSQL.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class BrokerClusterTests(ClusterFixture cluster, ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan StartWait = TimeSpan.FromMinutes(2);

    /// <summary>How far around a fault a duplicate's first execution may lie and still be the fault's (see RunAsync).</summary>
    private static readonly TimeSpan AckSlack = TimeSpan.FromSeconds(1);
    private const int IoConcurrency = 8;

    public Task InitializeAsync() => cluster.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public Task NodeKilled_DuringA2000TaskRun_EveryTaskSucceeds_OnlyTasksInFlightOnItsConnectionsRunTwice() =>
        RunAsync(tasks: 2000, sleepMs: 10, killAtPercent: 10, cutAtPercent: null, runWait: TimeSpan.FromMinutes(5));

    [Fact]
    [Trait("Category", "Chaos")]
    public Task NodeKilled_ThenAServerCutFor30Seconds_DuringA20000TaskRun_EveryTaskSucceeds_OnlyTasksInFlightOnTheLostNodesRunTwice() =>
        RunAsync(tasks: 20_000, sleepMs: 100, killAtPercent: 10, cutAtPercent: 50, runWait: TimeSpan.FromMinutes(20));

    /// <param name="sleepMs">How long each task sleeps: long enough in the long run that the cut lands inside it after
    /// the killed node's restart (about 30 s on a loaded machine).</param>
    private async Task RunAsync(int tasks, int sleepMs, int killAtPercent, int? cutAtPercent, TimeSpan runWait)
    {
        var clock = Stopwatch.StartNew();
        foreach (var host in cluster.Hosts)
        {
            cluster.StartWorker(host, IoConcurrency);
        }

        // Every worker consuming the I/O lane before the run starts.
        Assert.True(await EventuallyAsync(async () =>
        {
            cluster.AssertWorkersAlive();
            return (await cluster.WorkerConnectionsAsync([1, 2, 3])).Select(c => c.Host).Distinct().Count() == cluster.Hosts.Count
                   && (await cluster.QueueAsync(1, TaskQueues.Io)).Consumers == cluster.Hosts.Count;
        }, StartWait), "Not every worker connected to the cluster and consumed the I/O lane within 2 minutes.");
        var workersUp = clock.Elapsed;
        output.WriteLine($"before the run:{Environment.NewLine}{await cluster.QueuesAsync()}");

        var batch = Guid.CreateVersion7();
        var requests = Enumerable.Range(0, tasks).Select(_ =>
            new TaskRequest("sleep", JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["ms"] = sleepMs })) { BatchId = batch });
        clock.Restart();
        var ids = await cluster.Client.SubmitManyAsync(requests);
        var submitted = clock.Elapsed;
        var events = new List<FaultEvent>();

        // The kill: the node that carries the most worker connections, early in the run (the short run goes fast).
        await WaitForSucceededAsync(batch, tasks * killAtPercent / 100, runWait);
        var connections = await cluster.WorkerConnectionsAsync([1, 2, 3]);
        var victimNode = Enumerable.Range(1, ClusterFixture.NodeCount).MaxBy(n => connections.Count(c => c.Node == cluster.NodeName(n)));
        var onVictim = connections.Where(c => c.Node == cluster.NodeName(victimNode)).Select(c => c.Host).Distinct().ToArray();
        Assert.NotEmpty(onVictim);
        var killStart = DateTime.UtcNow;
        await cluster.KillNodeAsync(victimNode);
        var killEnd = DateTime.UtcNow;
        events.Add(new FaultEvent($"SIGKILL of node {victimNode}", killStart, killEnd, onVictim));
        output.WriteLine($"node {victimNode} ({cluster.NodeName(victimNode)}) killed at {Succeeded(await CountSucceededAsync(batch), tasks)}; workers connected to it: {string.Join(", ", onVictim)}");

        // The run goes on without it: the workers that were on it moved to another node.
        var atKill = await CountSucceededAsync(batch);
        clock.Restart();
        await WaitForSucceededAsync(batch, Math.Min(tasks, atKill + (tasks / 10)), runWait);
        var resumed = clock.Elapsed;
        Assert.True(await EventuallyAsync(async () =>
            (await cluster.WorkerConnectionsAsync(Enumerable.Range(1, 3).Where(n => n != victimNode))).Select(c => c.Host).Distinct().Count() == cluster.Hosts.Count,
            StartWait), "Not every worker was connected to a surviving node within 2 minutes of the kill.");
        var reconnected = clock.Elapsed;
        await cluster.RestartNodeAsync(victimNode);
        var restarted = clock.Elapsed;
        Assert.True(await EventuallyAsync(cluster.AllMembersOnlineAsync, StartWait), "The restarted node's quorum members did not come back online within 2 minutes.");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"after the kill: +{tasks / 10} tasks succeeded in {resumed.TotalSeconds:0.0} s, every worker on a surviving node at {reconnected.TotalSeconds:0.0} s, " +
            $"node {victimNode} restarted at {restarted.TotalSeconds:0.0} s and all members online at {clock.Elapsed.TotalSeconds:0.0} s"));

        if (cutAtPercent is { } cutAt)
        {
            // The cut: another server, worker and broker node together, for 30 s, while the run goes on.
            await WaitForSucceededAsync(batch, tasks * cutAt / 100, runWait);
            var server = cluster.Hosts.First(h => h.Number != victimNode);
            connections = await cluster.WorkerConnectionsAsync(Enumerable.Range(1, 3).Where(n => n != server.Number));
            var onCutNode = connections.Where(c => c.Node == cluster.NodeName(server.Number)).Select(c => c.Host).Append(server.Name).Distinct().ToArray();
            var cutStart = DateTime.UtcNow;
            await cluster.CutAsync(server);
            output.WriteLine($"{server.Name} cut at {Succeeded(await CountSucceededAsync(batch), tasks)}; workers on it or connected to its node: {string.Join(", ", onCutNode)}");
            await Task.Delay(TimeSpan.FromSeconds(30));
            var cutEnd = DateTime.UtcNow;
            await cluster.HealAsync(server);
            events.Add(new FaultEvent($"30 s cut of {server.Name}", cutStart, cutEnd, onCutNode));
            output.WriteLine($"{server.Name} healed at {Succeeded(await CountSucceededAsync(batch), tasks)}");
        }

        clock.Restart();
        await WaitForFinalAsync(batch, tasks, runWait);
        var finished = clock.Elapsed;
        var membersOnline = await EventuallyAsync(cluster.AllMembersOnlineAsync, TimeSpan.FromMinutes(4));
        output.WriteLine($"after the run:{Environment.NewLine}{await cluster.QueuesAsync()}");

        var report = await DeliveryReport.ReadAsync(cluster.DataSource, ids);
        var statuses = await ListAsync(
            "SELECT status, count(*) FROM fleet.tasks WHERE batch_id = @batch GROUP BY status",
            r => (Status: r.GetString(0), Count: r.GetInt64(1)), ("batch", batch));
        // Every execution of a task that ran more than once, in order.
        var duplicates = (await ListAsync(
            """
            SELECT a.task_id, w.host, a.started_at, a.finished_at, a.outcome FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
            WHERE a.task_id IN (SELECT task_id FROM fleet.task_attempts WHERE task_id = ANY(@ids) GROUP BY task_id HAVING count(*) > 1)
            ORDER BY a.task_id, a.started_at
            """,
            r => (Task: r.GetGuid(0), Host: r.GetString(1), Started: r.GetDateTime(2), Finished: r.IsDBNull(3) ? (DateTime?)null : r.GetDateTime(3), Outcome: r.GetString(4)),
            ("ids", ids.ToArray()))).GroupBy(a => a.Task).ToList();

        // A duplicate is explained by a fault when its first execution ran on a worker the fault touched (connected to the
        // lost node, or on the cut server) and its delivery was unacknowledged during the fault: the execution overlaps the
        // fault widened by AckSlack on both sides. Before it: a handler's end (finished_at) comes before its batched commit
        // and the acknowledgement after that, so a task finished just before the kill may still be unacknowledged when it
        // lands (a CI run: finished 3 ms before the redelivery). After it: a delivery already in the worker may start before
        // the worker sees its connection gone. A task run twice outside that window is a fault of Fleet's.
        FaultEvent? Explains(IGrouping<Guid, (Guid Task, string Host, DateTime Started, DateTime? Finished, string Outcome)> runs)
        {
            var first = runs.First();
            return events.FirstOrDefault(f => f.Hosts.Contains(first.Host) && first.Started < f.End + AckSlack
                && (first.Finished is null || first.Finished > f.Start - AckSlack));
        }

        foreach (var fault in events)
        {
            var atStart = await ListAsync(
                """
                SELECT count(DISTINCT a.task_id) FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
                WHERE a.task_id = ANY(@ids) AND w.host = ANY(@hosts) AND a.started_at < @start AND (a.finished_at IS NULL OR a.finished_at > @start)
                """,
                r => r.GetInt64(0), ("ids", ids.ToArray()), ("hosts", fault.Hosts), ("start", fault.Start));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{fault.What} ({fault.Start:HH:mm:ss.fff}-{fault.End:HH:mm:ss.fff}, {(fault.End - fault.Start).TotalSeconds:0.0} s): {atStart.Single()} tasks running on {string.Join(", ", fault.Hosts)} as it began; " +
                $"{duplicates.Count(d => Explains(d) == fault)} of them ran again"));
        }

        foreach (var runs in duplicates)
        {
            output.WriteLine($"  {runs.Key}: " + string.Join("; ", runs.Select(r => string.Create(CultureInfo.InvariantCulture,
                $"{r.Host} {r.Started:HH:mm:ss.fff}-{r.Finished:HH:mm:ss.fff} {r.Outcome}"))));
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{tasks} sleep tasks of {sleepMs} ms, 3 workers x {IoConcurrency}: workers up in {workersUp.TotalSeconds:0.0} s, submitted in {submitted.TotalSeconds:0.0} s, " +
            $"last task final {finished.TotalSeconds:0.0} s after the faults were over; {report}; final states: {string.Join(", ", statuses.Select(s => $"{s.Status} {s.Count}"))}"));

        Assert.Equal((0L, 0L, 0L), (report.Lost, report.Unexpected, report.OpenAttempts));
        Assert.Equal(new[] { ("succeeded", (long)tasks) }, statuses);
        Assert.All(duplicates, d => Assert.True(Explains(d) is not null,
            $"Task {d.Key} ran {d.Count()} times, but its first execution ({d.First().Host} {d.First().Started:HH:mm:ss.fff}-{d.First().Finished:HH:mm:ss.fff}) " +
            $"was under way on no worker a fault touched, within {AckSlack.TotalSeconds:0} s of it: " +
            string.Join("; ", events.Select(f => $"{f.What} {f.Start:HH:mm:ss.fff}-{f.End:HH:mm:ss.fff} on {string.Join(", ", f.Hosts)}"))));
        Assert.True(membersOnline, $"Not every quorum queue had its three members online within 4 minutes of the run's end:{Environment.NewLine}{await cluster.MembersReportAsync()}{Environment.NewLine}{await cluster.StatusAsync()}");
    }

    private static string Succeeded(long done, int tasks) => string.Create(CultureInfo.InvariantCulture, $"{done} of {tasks} succeeded");

    private async Task<long> CountSucceededAsync(Guid batch)
    {
        await using var command = cluster.DataSource.CreateCommand("SELECT count(*) FROM fleet.tasks WHERE batch_id = @batch AND status = 'succeeded'");
        command.Parameters.AddWithValue("batch", batch);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private async Task WaitForSucceededAsync(Guid batch, long count, TimeSpan timeout)
    {
        long done = 0;
        Assert.True(await EventuallyAsync(async () =>
        {
            cluster.AssertWorkersAlive();
            return (done = await CountSucceededAsync(batch)) >= count;
        }, timeout), $"Only {done} tasks succeeded within {timeout.TotalMinutes:0} minutes, waiting for {count}.");
    }

    private async Task WaitForFinalAsync(Guid batch, int count, TimeSpan timeout)
    {
        long final = 0;
        var ok = await EventuallyAsync(async () =>
        {
            await using var command = cluster.DataSource.CreateCommand(
                "SELECT count(*) FROM fleet.tasks WHERE batch_id = @batch AND status IN ('succeeded','failed','timed_out','cancelled')");
            command.Parameters.AddWithValue("batch", batch);
            final = (long)(await command.ExecuteScalarAsync())!;
            return final == count;
        }, timeout);
        if (!ok)
        {
            foreach (var host in cluster.Hosts)
            {
                output.WriteLine($"--- {host.Name}'s worker ---{Environment.NewLine}{cluster.WorkerOutput(host)}");
            }
        }

        Assert.True(ok, $"Only {final} of {count} tasks became final within {timeout.TotalMinutes:0} minutes.");
    }

    private Task<List<T>> ListAsync<T>(string sql, Func<NpgsqlDataReader, T> read, params (string Name, object Value)[] parameters) =>
        cluster.DataSource.ListAsync(sql, read, parameters);

    private static Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout) =>
        Sql.EventuallyAsync(condition, timeout, TimeSpan.FromMilliseconds(500));

    /// <summary>A fault: what, when it began and ended, and the servers whose workers it touched.</summary>
    private sealed record FaultEvent(string What, DateTime Start, DateTime End, string[] Hosts);
}
