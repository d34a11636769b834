using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// <c>fleet queues migrate</c> on a classic deployment (in a vhost of its own) with its workers stopped: 1,000 queued
/// tasks, retries an older version left waiting in a retry rung and a producer that keeps publishing during the
/// migration all end as they should under quorum workers; then back to classic.
/// </summary>
public sealed class QueueMigrationTests(FleetFixture fleet) : OwnWorkersTest(fleet)
{
    /// <summary>The one rung the older version used here; the migration skips the twelve others, which do not exist.</summary>
    private static readonly string Rung = QueueTopology.RetryRungName(TaskQueues.Io, 32);

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

        // Retries as an older version parked them: the task queued after a failed first attempt, published, due in 20 s,
        // and its message in the 32 s rung with a 20 s expiration, to dead-letter into the lane.
        var retried = Enumerable.Range(0, 10).Select(_ => Guid.NewGuid()).ToList();
        await using (var insert = Fleet.DataSource.CreateCommand("""
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, priority, submitted_at, published_at, not_before)
            SELECT id, 'noop', 'fleet-io', 'queued', '{}', 1, 3, 0, now(), now(), now() + interval '20 seconds' FROM unnest(@ids) AS i(id)
            """))
        {
            insert.Parameters.AddWithValue("ids", retried.ToArray());
            await insert.ExecuteNonQueryAsync();
        }

        await using (var connection = await new RabbitMQ.Client.ConnectionFactory { Uri = new Uri(vhost.AmqpUri) }.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync(new RabbitMQ.Client.CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true)))
        {
            await channel.QueueDeclareAsync(Rung, durable: true, exclusive: false, autoDelete: false, QueueTopology.RetryRungArguments(BrokerQueueType.Classic, TaskQueues.Io));
            foreach (var id in retried)
            {
                var properties = new RabbitMQ.Client.BasicProperties { ContentType = "application/json", Persistent = true, MessageId = id.ToString(), Expiration = "20000" };
                await channel.BasicPublishAsync("", Rung, mandatory: true, properties, System.Text.Encoding.UTF8.GetBytes($$"""{"taskId":"{{id}}","type":"noop","payload":{},"maxAttempts":3}"""));
            }
        }

        var queued = await client.SubmitManyAsync(Enumerable.Range(0, 1000).Select(i =>
            i % 2 == 0 ? TaskRequest.Create("noop", new { }) : TaskRequest.Create("sha256", new { size_kb = 1, rounds = 1, seed = i })));
        Assert.Contains(await vhost.QueuesAsync(), q => q.Name == Rung && q.Type == "classic");

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
        Assert.Contains($"{Rung}: classic -> quorum", output, StringComparison.Ordinal);
        Assert.DoesNotContain(QueueTopology.RetryRungName(TaskQueues.Io, 1), output, StringComparison.Ordinal);
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

            // The parked retries came back from their rung, now a quorum queue, and ran once each: their second attempt.
            Assert.Equal((long)retried.Count, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids) AND attempt = 2", ("ids", retried.ToArray())));
            Assert.Equal((long)retried.Count, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids)", ("ids", retried.ToArray())));

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

    private Dictionary<string, string?> WorkerSettings(BrokerVhost vhost, string queueType, string host)
    {
        var settings = Fleet.WorkerSettings(host, 2);
        settings["ConnectionStrings:rabbitmq"] = vhost.AmqpUri;
        settings[QueueTopology.QueueTypeKey] = queueType;
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
