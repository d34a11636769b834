using System.Net;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>The API's <c>/metrics</c>: the autoscaling signal follows a real backlog up and back down.</summary>
public sealed class ApiMetricsTests(FleetFixture fleet) : ApiTest(fleet)
{
    protected override IDictionary<string, string?> ApiSettings => new Dictionary<string, string?>
    {
        ["Api:Autoscale:SampleSeconds"] = "1",
        ["Api:Autoscale:MinWorkers"] = "1",
        ["Api:Autoscale:MaxWorkers"] = "50",
    };

    [Fact]
    public async Task DesiredWorkers_RisesWithABacklogWhileWorkersAreAway_AndFallsBackOnceItIsDrained()
    {
        // What Prometheus does: scrape with a read-only key.
        using var scraper = Api.CreateClient(ApiHost.ReadKey);

        // The sampler first sees the fixture's worker live, and so learns how many CPU slots a worker has.
        var metrics = await SeeTheLiveWorkerAsync(scraper);
        var slots = Environment.ProcessorCount;

        // No worker consumes now; a backlog of three workers' worth of CPU tasks piles up in fleet-cpu.
        await Fleet.StopWorkerAsync();
        var count = 3 * slots;
        var tasks = string.Join(',', Enumerable.Range(0, count).Select(i => $$$"""{"type": "sha256", "payload": {"size_kb": 1, "rounds": 1, "seed": {{{i}}}}}"""));
        using (var submitted = await Http.PostAsync("tasks/batch", Json($$"""{"tasks": [{{tasks}}]}""")))
        {
            Assert.Equal(HttpStatusCode.Accepted, submitted.StatusCode);
        }

        // Queue depths come from the management API, whose counters refresh every 5 s (every second on the test brokers).
        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await scraper.GetStringAsync("metrics");
            return PrometheusText.Sum(metrics, "fleet_queue_ready", "queue=\"fleet-cpu\"") == count
                && PrometheusText.Sum(metrics, "fleet_desired_workers") == 3;
        }), $"expected {count} ready in fleet-cpu and 3 desired workers ({slots} slots each, no rate measured yet):\n{PrometheusText.Lines(metrics)}");
        Assert.Single(PrometheusText.Samples(metrics, "fleet_desired_workers"));
        Assert.Equal(0, PrometheusText.Sum(metrics, "fleet_queue_unacked", "queue=\"fleet-cpu\""));
        Assert.Equal(0, PrometheusText.Sum(metrics, "fleet_workers_live"));
        Assert.Equal(3, PrometheusText.Sum(metrics, "fleet_desired_workers_by_lane", "lane=\"cpu\""));
        Assert.Equal(1, PrometheusText.Sum(metrics, "fleet_desired_workers_by_lane", "lane=\"io\""));

        // A worker comes back and drains the queue: the signal falls back to the minimum, and the rate is measured.
        await Fleet.StartWorkerAsync();
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE status = 'succeeded'") == count),
            "the worker did not drain the backlog");
        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await scraper.GetStringAsync("metrics");
            return PrometheusText.Sum(metrics, "fleet_queue_ready", "queue=\"fleet-cpu\"") == 0
                && PrometheusText.Sum(metrics, "fleet_desired_workers") == 1
                && PrometheusText.Sum(metrics, "fleet_worker_completion_rate", "lane=\"cpu\"") > 0;
        }), $"the signal did not fall back to 1 after the drain:\n{PrometheusText.Lines(metrics)}");
    }

    [Fact]
    public async Task DesiredWorkers_CountsDispatchedTasks_InTheDispatchQueueAndInPostgreSQL()
    {
        using var scraper = Api.CreateClient(ApiHost.ReadKey);
        var metrics = await SeeTheLiveWorkerAsync(scraper);
        var slots = Environment.ProcessorCount;

        // Twenty workers' worth of CPU tasks of one tenant, no worker consuming: the dispatcher publishes some to
        // fleet-cpu.dispatch (Dispatch:MinOutstanding, 32) and keeps the rest in PostgreSQL; the signal counts both.
        await Fleet.StopWorkerAsync();
        var count = 20 * slots;
        var tasks = string.Join(',', Enumerable.Range(0, count).Select(i => $$$"""{"type": "sha256", "tenant": "acme", "payload": {"size_kb": 1, "rounds": 1, "seed": {{{i}}}}}"""));
        using (var submitted = await Http.PostAsync("tasks/batch", Json($$"""{"tasks": [{{tasks}}]}""")))
        {
            Assert.Equal(HttpStatusCode.Accepted, submitted.StatusCode);
        }

        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await scraper.GetStringAsync("metrics");
            return PrometheusText.Sum(metrics, "fleet_queue_ready", "queue=\"fleet-cpu.dispatch\"") > 0
                && PrometheusText.Sum(metrics, "fleet_desired_workers_by_lane", "lane=\"cpu\"") == 20;
        }), $"expected 20 desired CPU workers for {count} dispatched tasks:\n{PrometheusText.Lines(metrics)}");
        Assert.True(await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE published_at IS NULL") > 0, "no task waited in PostgreSQL");
        await Fleet.StartWorkerAsync();
    }

    /// <summary>Scrapes until the sampler has seen the fixture's worker live (and so knows a worker's slots).</summary>
    private static async Task<string> SeeTheLiveWorkerAsync(HttpClient scraper)
    {
        var metrics = "";
        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await scraper.GetStringAsync("metrics");
            return PrometheusText.Sum(metrics, "fleet_workers_live") == 1;
        }), $"the sampler never saw the live worker:\n{PrometheusText.Lines(metrics)}");
        return metrics;
    }

    [Fact]
    public async Task Metrics_NeedAReadKeyByDefault_AndAreOpenOnlyWhenReadsAreOpenedExplicitly()
    {
        using var anonymous = Api.CreateClient(apiKey: null);
        using var reader = Api.CreateClient(ApiHost.ReadKey);
        using (await anonymous.GetAsync("alive"))
        {
        }

        using (var refused = await anonymous.GetAsync("metrics"))
        {
            await AssertProblemAsync(refused, HttpStatusCode.Unauthorized);
        }

        using (var allowed = await reader.GetAsync("metrics"))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
            Assert.Contains("http_server_request_duration_seconds", await allowed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        await using var opened = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?> { ["Api:ReadsRequireKey"] = "false" });
        using var noKey = opened.CreateClient(apiKey: null);
        using var open = await noKey.GetAsync("metrics");
        Assert.Equal(HttpStatusCode.OK, open.StatusCode);
    }
}
