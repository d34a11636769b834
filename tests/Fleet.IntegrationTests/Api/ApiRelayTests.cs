using System.Net;
using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Fleet.Worker.Telemetry;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// Crash safety of submission: the API process dies between the commit of the rows and the broker's confirm (its
/// publisher fails, then the host is stopped), another API process's relay publishes what was left, and every task
/// is processed exactly once: one final row and one execution each.
/// </summary>
public sealed class ApiRelayTests(FleetFixture fleet) : FleetTest(fleet)
{
    private static readonly Dictionary<string, string?> NoRelay = new() { ["Api:RelayEnabled"] = "false" };

    // The relaying host publishes nothing of its own, so it can wait less than a live submission would need.
    private static readonly Dictionary<string, string?> QuickRelay = new() { ["Api:RelayAfterSeconds"] = "3", ["Api:PublishTimeoutSeconds"] = "2" };

    [Fact]
    public async Task PublishKilledAfterCommit_RelayOfAnotherApiPublishes_AndEveryTaskRunsExactlyOnce()
    {
        var ids = new List<Guid>();
        await using (var crashing = await ApiHost.StartAsync(Fleet, NoRelay, s => s.AddSingleton<ITaskPublisher>(new CrashingPublisher(sendFirst: null))))
        {
            using var http = crashing.CreateClient();
            ids.AddRange(await SubmitBatchAsync(http, 40));
            ids.Add(await SubmitOneAsync(http, idempotencyKey: "relay-test-1"));
            ids.Add(await SubmitOneAsync(http, idempotencyKey: null));
        }

        // The process is gone: every row is committed, none was published.
        Assert.Equal(42L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE status = 'queued' AND published_at IS NULL"));

        await using (await ApiHost.StartAsync(Fleet, QuickRelay))
        {
            await WaitForFinalAsync(ids, TimeSpan.FromMinutes(2));
        }

        await AssertExactlyOnceAsync(ids);
    }

    [Fact]
    public async Task ConfirmedButNeverStamped_RelaySendsCopies_AndWorkersRunEachTaskOnce()
    {
        await Fleet.StopWorkerAsync();
        var ids = new List<Guid>();
        await using (var crashing = await ApiHost.StartAsync(Fleet, NoRelay, s =>
            s.AddSingleton<ITaskPublisher>(_ => new CrashingPublisher(new RabbitMqTaskPublisher(RabbitMqAddress.Parse(Fleet.AmqpUri), "relay-test")))))
        {
            using var http = crashing.CreateClient();
            ids.AddRange(await SubmitBatchAsync(http, 30));
        }

        // The messages are in the queue, but the rows say unpublished: the relay sends each task a second time.
        Assert.Equal(30L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE published_at IS NULL"));
        await using (await ApiHost.StartAsync(Fleet, QuickRelay))
        {
            Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE published_at IS NULL") == 0),
                "the relay did not republish the unstamped tasks");
        }

        await Fleet.StartWorkerAsync();
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(2));
        var counters = Fleet.WorkerServices!.GetRequiredService<WorkerMetrics>();
        Assert.True(await EventuallyAsync(() => Task.FromResult(counters.Skipped >= 30)), $"expected 30 duplicate deliveries skipped, saw {counters.Skipped}");
        await AssertExactlyOnceAsync(ids);
    }

    [Fact]
    public async Task Relay_DoesNothingWhileAnotherProcessHoldsTheAdvisoryLock()
    {
        await Fleet.StopWorkerAsync();
        await using (var crashing = await ApiHost.StartAsync(Fleet, NoRelay, s => s.AddSingleton<ITaskPublisher>(new CrashingPublisher(sendFirst: null))))
        {
            using var http = crashing.CreateClient();
            await SubmitBatchAsync(http, 5);
        }

        await using var api = await ApiHost.StartAsync(Fleet, NoRelay);
        var relay = api.Services.GetRequiredService<OutboxRelay>();
        await using var other = await Fleet.DataSource.OpenConnectionAsync();
        await using (var take = other.CreateCommand())
        {
            take.CommandText = $"SELECT pg_advisory_lock({OutboxRelay.RelayLockKey})";
            await take.ExecuteNonQueryAsync();
        }

        var blocked = await relay.RelayUnpublishedAsync(TimeSpan.Zero, 100);

        Assert.Equal(new RelayResult(HeldLock: false, Republished: 0), blocked);
        Assert.Equal(5L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE published_at IS NULL"));
        await using (var release = other.CreateCommand())
        {
            release.CommandText = $"SELECT pg_advisory_unlock({OutboxRelay.RelayLockKey})";
            await release.ExecuteNonQueryAsync();
        }

        var relayed = await relay.RelayUnpublishedAsync(TimeSpan.Zero, 100);

        Assert.Equal(new RelayResult(HeldLock: true, Republished: 5), relayed);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE published_at IS NULL"));
    }

    private async Task AssertExactlyOnceAsync(List<Guid> ids)
    {
        var rows = await ListAsync(
            "SELECT t.status, t.attempts, (SELECT count(*) FROM fleet.task_attempts a WHERE a.task_id = t.id) FROM fleet.tasks t WHERE t.id = ANY(@ids)",
            r => (Status: r.GetString(0), Attempts: r.GetInt32(1), Executions: r.GetInt64(2)),
            ("ids", ids.ToArray()));
        Assert.Equal(ids.Count, rows.Count);
        Assert.All(rows, row => Assert.Equal(("succeeded", 1, 1L), row));
    }

    private static async Task<IReadOnlyList<Guid>> SubmitBatchAsync(HttpClient http, int count)
    {
        var tasks = string.Join(",", Enumerable.Range(0, count).Select(i => $$$"""{"type": "noop", "payload": {"i": {{{i}}}}}"""));
        using var response = await http.PostAsync("tasks/batch", new StringContent($$"""{"tasks": [{{tasks}}]}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var body = System.Text.Json.Nodes.JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        return [.. body["ids"]!.AsArray().Select(i => (Guid)i!)];
    }

    private static async Task<Guid> SubmitOneAsync(HttpClient http, string? idempotencyKey)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "tasks")
        {
            Content = new StringContent("""{"type": "sleep", "payload": {"ms": 1}}""", System.Text.Encoding.UTF8, "application/json"),
        };
        if (idempotencyKey is not null)
        {
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        }

        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        return (Guid)System.Text.Json.Nodes.JsonNode.Parse(await response.Content.ReadAsStringAsync())!["id"]!;
    }

    /// <summary>
    /// Stands for the API process dying inside the publish step: with <c>sendFirst</c> null before anything reached
    /// the broker, otherwise after the broker confirmed (but before <c>published_at</c> could be stamped).
    /// </summary>
    private sealed class CrashingPublisher(RabbitMqTaskPublisher? sendFirst) : ITaskPublisher, IAsyncDisposable
    {
        public ValueTask DisposeAsync() => sendFirst?.DisposeAsync() ?? ValueTask.CompletedTask;

        public async Task PublishAsync(IReadOnlyList<OutgoingTask> tasks, CancellationToken cancellationToken)
        {
            if (sendFirst is not null)
            {
                await sendFirst.PublishAsync(tasks, cancellationToken);
            }

            throw new InvalidOperationException("Simulated crash between the commit and the publisher confirm.");
        }
    }
}
