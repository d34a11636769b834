using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// <c>fleet queues migrate</c> on a classic deployment (in a vhost of its own) with its workers stopped: 1,000 queued
/// tasks, retries waiting in their rungs and a producer that keeps publishing during the migration all end as they
/// should under quorum workers; then back to classic.
/// </summary>
public sealed class QueueMigrationTests(FleetFixture fleet) : OwnWorkersTest(fleet)
{
    [Fact]
    public async Task ClassicToQuorumAndBack_LosesNoTask()
    {
        await using var vhost = await BrokerVhost.CreateAsync(Fleet, "migrate");
        await using var client = new FleetClient(new FleetClientOptions
        {
            PostgresConnectionString = Fleet.PostgresConnectionString,
            RabbitMqUri = vhost.AmqpUri,
            QueueType = BrokerQueueType.Classic,
        });

        // A classic worker fails each flaky task once and parks its retry in a rung (20 s, the 32 s rung); then it is stopped.
        var retried = await client.SubmitManyAsync(Enumerable.Range(0, 10).Select(_ =>
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 1 }) with { MaxAttempts = 3 }));
        await using (var classic = WorkerProcess.Start(WorkerSettings(vhost, "classic", "migrate-classic", retryBaseSeconds: 20)))
        {
            Assert.True(await EventuallyAsync(
                async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids)", ("ids", retried.ToArray())) == retried.Count,
                TimeSpan.FromMinutes(2)), classic.Output);
            await classic.TerminateAsync(TimeSpan.FromMinutes(1));
        }

        var queued = await client.SubmitManyAsync(Enumerable.Range(0, 1000).Select(i =>
            i % 2 == 0 ? TaskRequest.Create("noop", new { }) : TaskRequest.Create("sha256", new { size_kb = 1, rounds = 1, seed = i })));
        Assert.Contains(await vhost.QueuesAsync(), q => q.Name.StartsWith($"{TaskQueues.Io}.retry.", StringComparison.Ordinal));

        // A producer keeps submitting while the queues move.
        using var stopProducer = new CancellationTokenSource();
        var produced = new System.Collections.Concurrent.ConcurrentBag<Guid>();
        var producer = Task.Run(async () =>
        {
            while (!stopProducer.IsCancellationRequested)
            {
                foreach (var id in await client.SubmitManyAsync(Enumerable.Range(0, 10).Select(_ => TaskRequest.Create("noop", new { }))))
                {
                    produced.Add(id);
                }

                await Task.Delay(50);
            }
        });

        var (exit, output) = await vhost.MigrateAsync("quorum");
        Assert.True(exit == 0, output);
        Assert.Contains("fleet-io: classic -> quorum", output, StringComparison.Ordinal);
        await Task.Delay(1000);
        await stopProducer.CancelAsync();
        await producer;
        Assert.NotEmpty(produced);
        AssertAllOfType("quorum", await vhost.QueuesAsync());

        // Running it again finds nothing to do.
        (exit, output) = await vhost.MigrateAsync("quorum");
        Assert.True(exit == 0, output);
        Assert.Contains("fleet-cpu: already quorum", output, StringComparison.Ordinal);

        await using (var quorum = WorkerProcess.Start(WorkerSettings(vhost, "quorum", "migrate-quorum")))
        {
            await WaitForFinalAsync([.. retried, .. queued, .. produced], TimeSpan.FromMinutes(4));
            Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status <> 'succeeded'", ("ids", retried.Concat(queued).Concat(produced).ToArray())));

            // fault-flaky counts failures per process: the new worker fails each once more, then it succeeds.
            Assert.Equal(3L * retried.Count, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids)", ("ids", retried.ToArray())));

            // A worker consuming: the migration refuses to start.
            (exit, output) = await vhost.MigrateAsync("classic");
            Assert.Equal(2, exit);
            Assert.Contains("stop every worker", output, StringComparison.Ordinal);
            await quorum.TerminateAsync(TimeSpan.FromMinutes(1));
        }

        // And back to classic: a classic worker runs what is submitted next.
        (exit, output) = await vhost.MigrateAsync("classic");
        Assert.True(exit == 0, output);
        AssertAllOfType("classic", await vhost.QueuesAsync());
        var after = await client.SubmitManyAsync(Enumerable.Range(0, 20).Select(_ => TaskRequest.Create("noop", new { })));
        await using (WorkerProcess.Start(WorkerSettings(vhost, "classic", "migrate-back")))
        {
            await WaitForFinalAsync(after, TimeSpan.FromMinutes(2));
        }

        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status <> 'succeeded'", ("ids", after.ToArray())));
    }

    private Dictionary<string, string?> WorkerSettings(BrokerVhost vhost, string queueType, string host, double retryBaseSeconds = 1)
    {
        var settings = Fleet.WorkerSettings(host, 2);
        settings["ConnectionStrings:rabbitmq"] = vhost.AmqpUri;
        settings[QueueTopology.QueueTypeKey] = queueType;
        settings["Worker:RetryBaseSeconds"] = retryBaseSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return settings;
    }

    private static void AssertAllOfType(string type, List<(string Name, string Type, long Messages)> queues)
    {
        var lanes = queues.Where(q => q.Name.StartsWith("fleet-cpu", StringComparison.Ordinal) || q.Name.StartsWith("fleet-io", StringComparison.Ordinal)).ToList();
        Assert.Contains(lanes, q => q.Name == TaskQueues.Cpu);
        Assert.DoesNotContain(lanes, q => q.Name.EndsWith(".migrating", StringComparison.Ordinal));
        Assert.All(lanes, q => Assert.True(q.Type == type, $"{q.Name} is {q.Type}, not {type}"));
    }
}
