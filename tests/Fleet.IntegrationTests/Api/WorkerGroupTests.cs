using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// Worker groups: a queue the operator declares (<c>Api:Queues</c>, and <c>FLEET_QUEUES</c> in the broker definitions
/// the run's broker loaded: <c>reports=cpu</c>) is accepted by the API and served only by the worker processes that
/// list it, each side with its own login (fleet_api, fleet_worker), so the rendered rights are part of the test.
/// </summary>
public sealed class WorkerGroupTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    private const string Group = "reports";

    private Dictionary<string, string?> Settings(string host, params string[] queues)
    {
        var settings = Fleet.WorkerSettings(host, cpuConcurrency: 1);
        settings["Worker:PauseCheckSeconds"] = "1";
        for (var i = 0; i < queues.Length; i++)
        {
            settings[$"Worker:Queues:{i}"] = queues[i];
        }

        return settings;
    }

    [Fact]
    public async Task ADeclaredQueue_IsAccepted_AndServedOnlyByTheWorkersThatListIt_EvenOnesStartedBeforeItWasDeclared()
    {
        // As on a fleet whose API has not declared it yet (the table outlives the other tests' resets).
        await ScalarAsync<long>("WITH gone AS (DELETE FROM fleet.queues WHERE name = @n RETURNING 1) SELECT count(*) FROM gone", ("n", Group));

        // Started before the API declares the queue: the worker runs (its heartbeat says so) and waits for the row.
        await using var group = WorkerProcess.Start(Settings("group-reports", Group));
        await using var general = WorkerProcess.Start(Settings("group-general"));
        Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync("fleet-io") == 1
            && await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE host = 'group-reports' AND state = 'running'") == 1), "the workers never started");
        // Its check has run (it says so) and found no row: it consumes nothing of the group's queue.
        Assert.True(await EventuallyAsync(() => Task.FromResult(group.Output.Contains($"Queue {Group} of Worker:Queues is not declared", StringComparison.Ordinal))),
            "the group's worker never reported the missing declaration");
        Assert.Equal(0u, await QueueConsumerCountAsync(Group));

        await using var api = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?>
        {
            [$"Api:Queues:{Group}"] = "cpu",
            ["Api:Autoscale:SampleSeconds"] = "1",
        });
        using var http = api.CreateClient();
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.queues WHERE name = @n AND lane = 'cpu'", ("n", Group)) == 1), "the API never declared the queue");
        Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync(Group) == 1), "the group's worker never consumed its queue");
        Assert.Equal(1u, await QueueConsumerCountAsync($"{Group}.dispatch"));

        // Tasks for the group (one through the dispatcher: a tenant's) and tasks for the built-in lanes.
        var tasks = string.Join(",", Enumerable.Range(0, 6).Select(i => $$"""{"type": "sha256", "payload": {"size_kb": 1, "rounds": 1, "seed": {{i}}}, "queue": "{{Group}}"{{(i == 0 ? ", \"tenant\": \"acme\"" : "")}}}"""));
        var groupIds = await SubmitBatchAsync(http, tasks);
        var generalIds = await SubmitBatchAsync(http, string.Join(",", Enumerable.Repeat("""{"type": "sha256", "payload": {"size_kb": 1, "rounds": 1, "seed": 7}}""", 6)));
        await WaitForFinalAsync([.. groupIds, .. generalIds]);
        output.WriteLine(group.Output);

        Assert.Equal(6L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND queue = @q AND worker_id LIKE 'group-reports:%'",
            ("ids", groupIds), ("q", Group)));
        Assert.Equal(6L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND queue = 'fleet-cpu' AND worker_id LIKE 'group-general:%'",
            ("ids", generalIds)));
        Assert.Contains($"Queue {Group} is declared (lane cpu): this worker consumes it", group.Output, StringComparison.Ordinal);

        // The group's queue can be paused like a lane, and is listed with its lane.
        using (var paused = await http.PostAsync($"queues/{Group}/pause", null))
        {
            Assert.Equal(HttpStatusCode.OK, paused.StatusCode);
        }

        Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync(Group) == 0), "the paused group queue was still consumed");
        var queues = await http.GetFromJsonAsync<JsonArray>("queues");
        Assert.Contains(queues!, q => (string?)q!["name"] == Group && (string?)q["lane"] == "cpu" && (bool)q["paused"]!);
        using (var resumed = await http.PostAsync($"queues/{Group}/resume", null))
        {
            Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
        }

        // Its error queues are among the dead-letter queues.
        var deadLetters = await http.GetFromJsonAsync<JsonObject>($"dead-letters?queue={Group}_error");
        Assert.NotNull(deadLetters!["queues"]);

        // The autoscaling signal sizes the built-in lanes' workers: the group's worker, busy with its own queue, is
        // neither live nor busy for it (the group scales on its queue's depth).
        var busy = await SubmitBatchAsync(http, string.Join(",", Enumerable.Repeat($$"""{"type": "sleep", "payload": {"ms": 1500}, "queue": "{{Group}}"}""", 3)));
        using var scraper = api.CreateClient(ApiHost.ReadKey);
        var metrics = "";
        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await scraper.GetStringAsync("metrics");
            return await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'running'", ("ids", busy)) >= 1
                && PrometheusText.Sum(metrics, "fleet_workers_live") == 1;
        }), $"expected one live worker while the group's runs a task:\n{PrometheusText.Lines(metrics)}\n"
            + string.Join('\n', api.Logs.Lines.Where(l => l.Contains("Autoscal", StringComparison.Ordinal))));
        Assert.Equal(0, PrometheusText.Sum(metrics, "fleet_workers_busy"));
        await WaitForFinalAsync(busy);

        // A queue nobody declared is refused with the accepted ones named.
        using var refused = await http.PostAsync("tasks", new StringContent("""{"type": "noop", "queue": "elsewhere"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains($"fleet-cpu, fleet-io, {Group}", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnApiDeclaringAQueueTheBrokerLacks_DoesNotStart_AndSaysWhatToAdd()
    {
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            ApiHost.StartAsync(Fleet, new Dictionary<string, string?> { ["Api:Queues:nowhere"] = "io" }));
        Assert.Contains("exchange nowhere, queue nowhere, exchange nowhere.dispatch, queue nowhere.dispatch", ex.Message, StringComparison.Ordinal);
        Assert.Contains("FLEET_QUEUES=\"nowhere=io\"", ex.Message, StringComparison.Ordinal);
    }

    private static async Task<Guid[]> SubmitBatchAsync(HttpClient http, string tasks)
    {
        using var response = await http.PostAsync("tasks/batch", new StringContent($$"""{"tasks": [{{tasks}}]}""", Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, body);
        return [.. JsonNode.Parse(body)!["ids"]!.AsArray().Select(n => (Guid)n!)];
    }
}
