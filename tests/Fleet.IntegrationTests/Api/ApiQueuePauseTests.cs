using System.Net;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// /queues on the real API and database: pause, list, resume with their status codes and the stored row, and the
/// 400s and 404s of a dispatch queue's name, an unknown name and a bad body; and the autoscaling signal, which asks
/// for no workers for a paused lane's backlog. What the worker processes do with a pause is <see cref="QueuePauseTests"/>.
/// </summary>
public sealed class ApiQueuePauseTests(FleetFixture fleet) : ApiTest(fleet)
{
    protected override IDictionary<string, string?> ApiSettings => new Dictionary<string, string?>
    {
        ["Api:Autoscale:SampleSeconds"] = "1",
        ["Api:Autoscale:MinWorkers"] = "1",
        ["Api:Autoscale:MaxWorkers"] = "50",
    };

    [Fact]
    public async Task APausedLanesBacklog_AsksForNoWorkers_AndRunsAfterTheResume()
    {
        try
        {
            using (var paused = await Http.PostAsync("queues/fleet-cpu/pause", null))
            {
                Assert.Equal(HttpStatusCode.OK, paused.StatusCode);
            }

            // The fixture's worker stops consuming the lane, then three workers' worth of CPU tasks pile up in it
            // (ApiMetricsTests: unpaused, such a backlog asks for 3).
            Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync("fleet-cpu") == 0), "the worker kept consuming the paused lane");
            var count = 3 * Environment.ProcessorCount;
            var tasks = string.Join(',', Enumerable.Range(0, count).Select(i => $$$"""{"type": "sha256", "payload": {"size_kb": 1, "rounds": 1, "seed": {{{i}}}}}"""));
            using (var submitted = await Http.PostAsync("tasks/batch", Json($$"""{"tasks": [{{tasks}}]}""")))
            {
                Assert.Equal(HttpStatusCode.Accepted, submitted.StatusCode);
            }

            using var scraper = Api.CreateClient(ApiHost.ReadKey);
            var metrics = "";
            Assert.True(await EventuallyAsync(async () =>
            {
                metrics = await scraper.GetStringAsync("metrics");
                return PrometheusText.Sum(metrics, "fleet_queue_ready", "queue=\"fleet-cpu\"") == count
                    && PrometheusText.Sum(metrics, "fleet_workers_live") == 1;
            }), $"expected {count} ready in fleet-cpu and the live worker:\n{PrometheusText.Lines(metrics)}");
            Assert.Equal(1, PrometheusText.Sum(metrics, "fleet_desired_workers_by_lane", "lane=\"cpu\""));
            Assert.Equal(1, PrometheusText.Sum(metrics, "fleet_desired_workers"));

            using (var resumed = await Http.PostAsync("queues/fleet-cpu/resume", null))
            {
                Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
            }

            Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE status = 'succeeded' AND attempts = 1") == count), "the resumed lane's backlog did not run");
        }
        finally
        {
            await using var cleanup = Fleet.DataSource.CreateCommand("DELETE FROM fleet.queue_pauses");
            await cleanup.ExecuteNonQueryAsync();
        }
    }

    [Fact]
    public async Task PauseListResume_AnswerWithTheLaneState_AndRefuseWhatIsNotALane()
    {
        try
        {
            DateTimeOffset pausedAt;
            using (var paused = await Http.PostAsync("queues/fleet-io/pause", Json("""{"reason": "upstream maintenance"}""")))
            {
                Assert.Equal(HttpStatusCode.OK, paused.StatusCode);
                var lane = await ReadJsonAsync(paused);
                Assert.Equal(("fleet-io", true, "upstream maintenance"), ((string?)lane["name"], (bool)lane["paused"]!, (string?)lane["reason"]));
                pausedAt = (DateTimeOffset)lane["pausedAt"]!;
            }

            // Paused again without a body: the same pause, its time and reason kept.
            using (var again = await Http.PostAsync("queues/fleet-io/pause", null))
            {
                Assert.Equal(HttpStatusCode.OK, again.StatusCode);
                var lane = await ReadJsonAsync(again);
                Assert.Equal((pausedAt, "upstream maintenance"), ((DateTimeOffset)lane["pausedAt"]!, (string?)lane["reason"]));
            }

            using (var list = await Http.GetAsync("queues"))
            {
                Assert.Equal(HttpStatusCode.OK, list.StatusCode);
                var lanes = (await ReadJsonAsync(list)).AsArray();
                // The built-in lanes first (a declared queue of another test may follow them), each with its lane.
                Assert.Equal(["fleet-cpu:cpu:False", "fleet-io:io:True"], lanes.Take(2).Select(l => $"{(string?)l!["name"]}:{(string?)l["lane"]}:{(bool)l["paused"]!}"));
            }

            Assert.Equal("upstream maintenance", await ScalarAsync<string>("SELECT reason FROM fleet.queue_pauses WHERE queue = 'fleet-io'"));

            // /stats marks the paused lane's queues (the dashboard shows it).
            using (var stats = await Http.GetAsync("stats"))
            {
                var queues = (await ReadJsonAsync(stats))["queues"]!.AsArray();
                Assert.Contains(queues, q => (string?)q!["name"] == "fleet-io" && (bool)q["paused"]!);
                Assert.Contains(queues, q => (string?)q!["name"] == "fleet-cpu" && !(bool)q["paused"]!);
            }

            using (var dispatch = await Http.PostAsync("queues/fleet-io.dispatch/pause", null))
            {
                Assert.Contains("pause or resume the queue fleet-io", (string?)(await AssertProblemAsync(dispatch, HttpStatusCode.BadRequest))["detail"], StringComparison.Ordinal);
            }

            using (var unknown = await Http.PostAsync("queues/fleet-gpu/resume", null))
            {
                Assert.Contains("the queues are fleet-cpu, fleet-io", (string?)(await AssertProblemAsync(unknown, HttpStatusCode.NotFound))["detail"], StringComparison.Ordinal);
            }

            using (var badReason = await Http.PostAsync("queues/fleet-cpu/pause", Json($$"""{"reason": "{{new string('x', 501)}}", "until": 5}""")))
            {
                var errors = (await AssertProblemAsync(badReason, HttpStatusCode.BadRequest))["errors"]!;
                Assert.NotNull(errors["reason"]);
                Assert.NotNull(errors["until"]);
            }

            using (var notAnObject = await Http.PostAsync("queues/fleet-cpu/pause", Json("[]")))
            {
                await AssertProblemAsync(notAnObject, HttpStatusCode.BadRequest);
            }

            Assert.Equal(["fleet-io"], await ListAsync("SELECT queue FROM fleet.queue_pauses", r => r.GetString(0)));

            using (var resumed = await Http.PostAsync("queues/fleet-io/resume", null))
            {
                Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
                var lane = await ReadJsonAsync(resumed);
                Assert.Equal(("fleet-io", false), ((string?)lane["name"], (bool)lane["paused"]!));
                Assert.Null(lane["pausedAt"]);
            }

            Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.queue_pauses"));
        }
        finally
        {
            await using var cleanup = Fleet.DataSource.CreateCommand("DELETE FROM fleet.queue_pauses");
            await cleanup.ExecuteNonQueryAsync();
        }
    }
}
