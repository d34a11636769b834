using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// A deployment with <c>RabbitMq:QueueType=quorum</c>: a real worker process, the real API and <see cref="FleetClient"/>
/// all declare and use quorum lanes (in a vhost of their own), tasks run, retries come back to the quorum lanes through
/// the due relay, and an unreadable message reaches a quorum <c>_error</c> queue.
/// </summary>
public sealed class QuorumQueueTests(FleetFixture fleet) : OwnWorkersTest(fleet)
{
    [Fact]
    public async Task QuorumDeployment_RunsTasksAndRetries_AndEveryLaneQueueIsQuorum()
    {
        await using var vhost = await BrokerVhost.CreateAsync(Fleet, "quorum");
        var quorum = new Dictionary<string, string?> { ["ConnectionStrings:rabbitmq"] = vhost.AmqpUri, [QueueTopology.QueueTypeKey] = "quorum" };

        // The API first: the lanes exist (declared quorum by its publisher) before any worker.
        await using var api = await ApiHost.StartAsync(ApiHost.DefaultSettings(Fleet.ApiPostgresConnectionString, vhost.AmqpUri, null), quorum);
        using var http = api.CreateClient();
        var batch = string.Join(',', Enumerable.Range(0, 30).Select(i => i % 2 == 0 ? """{"type": "noop"}""" : $$$"""{"type": "sha256", "payload": {"size_kb": 1, "rounds": 1, "seed": {{{i}}}}}"""));
        using var response = await http.PostAsync("tasks/batch", new StringContent($$"""{"tasks": [{{batch}}]}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.Accepted, response.StatusCode);
        var apiIds = (await System.Net.Http.Json.HttpContentJsonExtensions.ReadFromJsonAsync<System.Text.Json.Nodes.JsonObject>(response.Content))!["ids"]!
            .AsArray().Select(i => (Guid)i!).ToList();

        // One worker: fault-flaky counts its failures per process.
        var settings = Fleet.WorkerSettings("quorum-worker", 2);
        foreach (var (key, value) in quorum)
        {
            settings[key] = value;
        }

        await using var worker = WorkerProcess.Start(settings);
        await using var client = new FleetClient(new FleetClientOptions
        {
            PostgresConnectionString = Fleet.PostgresConnectionString,
            RabbitMqUri = vhost.AmqpUri,
            QueueType = BrokerQueueType.Quorum,
        });
        var recovers = await client.SubmitManyAsync(Enumerable.Range(0, 5).Select(_ =>
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 2 }) with { MaxAttempts = 3 }));
        var exhausts = await client.SubmitManyAsync(Enumerable.Range(0, 5).Select(_ =>
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 100 }) with { MaxAttempts = 2 }));

        await WaitForFinalAsync([.. apiIds, .. recovers, .. exhausts], TimeSpan.FromMinutes(3));
        var status = (await ListAsync("SELECT id, status FROM fleet.tasks", r => (r.GetGuid(0), r.GetString(1)))).ToDictionary(t => t.Item1, t => t.Item2);
        Assert.All(apiIds, id => Assert.Equal("succeeded", status[id]));
        Assert.All(recovers, id => Assert.Equal("succeeded", status[id]));
        Assert.All(exhausts, id => Assert.Equal("failed", status[id]));
        Assert.Equal(15L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids)", ("ids", recovers.ToArray())));

        // A body that is no task at all and names none: MassTransit faults it into the lane's _error queue.
        await using (var connection = await new RabbitMQ.Client.ConnectionFactory { Uri = new Uri(vhost.AmqpUri) }.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync(new RabbitMQ.Client.CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true)))
        {
            await channel.BasicPublishAsync(TaskQueues.Io, "", mandatory: true, new RabbitMQ.Client.BasicProperties { ContentType = "application/json" }, "not a task"u8.ToArray());
        }

        Assert.True(await EventuallyAsync(async () => (await vhost.QueuesAsync()).Any(q => q.Name == $"{TaskQueues.Io}_error"), TimeSpan.FromSeconds(60)), "no fleet-io_error queue appeared");
        var queues = await vhost.QueuesAsync();
        var laneQueues = queues.Where(q => q.Name.StartsWith("fleet-cpu", StringComparison.Ordinal) || q.Name.StartsWith("fleet-io", StringComparison.Ordinal)).ToList();
        Assert.Contains(laneQueues, q => q.Name == TaskQueues.Cpu);
        Assert.Contains(laneQueues, q => q.Name == TaskQueues.Io);
        Assert.DoesNotContain(laneQueues, q => q.Name.StartsWith($"{TaskQueues.Io}.retry.", StringComparison.Ordinal));
        Assert.All(laneQueues, q => Assert.True(q.Type == "quorum", $"{q.Name} is {q.Type}"));

        // The per-worker control queue stays classic: it is auto-deleted, which a quorum queue cannot be.
        Assert.Contains(queues, q => q.Name.Contains("fleet-control", StringComparison.Ordinal) && q.Type == "classic");
        Assert.False(worker.HasExited, worker.Output);
    }

    [Fact]
    public async Task WorkerWhoseLanesHaveTheOtherType_StopsWithOneLineNamingTheQueueAndTheFix()
    {
        await using var vhost = await BrokerVhost.CreateAsync(Fleet, "mismatch");
        await using (var client = new FleetClient(new FleetClientOptions
        {
            PostgresConnectionString = Fleet.PostgresConnectionString,
            RabbitMqUri = vhost.AmqpUri,
            QueueType = BrokerQueueType.Classic,
        }))
        {
            // Declares both lanes classic (a producer declares a lane that is missing).
            await client.SubmitManyAsync([TaskRequest.Create("noop", new { }), TaskRequest.Create("sha256", new { size_kb = 1, rounds = 1, seed = 1 })]);
        }

        var settings = Fleet.WorkerSettings("mismatch-worker", 1);
        settings["ConnectionStrings:rabbitmq"] = vhost.AmqpUri;
        settings[QueueTopology.QueueTypeKey] = "quorum";
        await using var worker = WorkerProcess.Start(settings);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await worker.WaitForExitAsync(timeout.Token);

        Assert.NotEqual(0, worker.ExitCode);
        var line = Assert.Single(worker.Output.Split('\n'), l => l.Contains("crit:", StringComparison.Ordinal));
        Assert.Contains("fleet-cpu", line, StringComparison.Ordinal);
        Assert.Contains("classic", line, StringComparison.Ordinal);
        Assert.Contains("RabbitMq:QueueType is quorum", line, StringComparison.Ordinal);
        Assert.Contains("fleet queues migrate --to quorum", line, StringComparison.Ordinal);
        Assert.All(await vhost.QueuesAsync(), q => Assert.Equal("classic", q.Type));
    }
}
