using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Fleet.Api.Monitoring;
using Fleet.IntegrationTests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.IntegrationTests.Api;

/// <summary>GET /workers, /stats, /health, /alive, the OpenAPI document, the dashboard's files and API-key rules for reads.</summary>
public sealed class ApiMonitoringTests(FleetFixture fleet) : ApiTest(fleet)
{
    [Fact]
    public async Task Workers_ListsTheLiveWorkerWithItsLanes_AndAStaleOneAsNotLive()
    {
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.workers") >= 1), "the worker never registered");
        await using (var stale = Fleet.DataSource.CreateCommand("""
            INSERT INTO fleet.workers (id, host, pid, queues, cpu_concurrency, io_concurrency, started_at, last_seen_at, state, tasks_succeeded, tasks_failed, tasks_skipped,
                                       process_slots, process_busy, process_children_started, process_kills, process_deaths)
            VALUES ('gone:1:abcdef', 'gone', 1, '{fleet-io}', 1, 8, now() - interval '10 minutes', now() - interval '5 minutes', 'running', 5, 1, 0, 2, 1, 9, 4, 3),
                   ('old:2:abcdef', 'old', 2, '{fleet-io}', 1, 8, now() - interval '3 hours', now() - interval '2 hours', 'stopped', 0, 0, 0, 0, 0, 0, 0, 0)
            """))
        {
            await stale.ExecuteNonQueryAsync();
        }

        using var response = await Http.GetAsync("workers");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var workers = (await ReadJsonAsync(response)).AsArray();
        Assert.Equal(2, workers.Count);
        var live = workers.Single(w => (string?)w!["host"] == "in-process")!;
        Assert.True((bool)live["live"]!);
        Assert.Equal("running", (string?)live["state"]);
        Assert.Equal(["fleet-cpu", "fleet-io"], live["queues"]!.AsArray().Select(q => (string?)q));
        Assert.Equal(Environment.ProcessorCount, (int)live["cpuConcurrency"]!);
        Assert.Equal(64, (int)live["ioConcurrency"]!);
        Assert.Equal(Environment.ProcessId, (int)live["pid"]!);
        foreach (var field in new[] { "id", "lastSeenAt", "tasksSucceeded", "tasksFailed", "tasksSkipped", "runningCpu", "runningIo" })
        {
            Assert.NotNull(live[field]);
        }

        // The fixture's worker runs no type in a process lane: no slots, and nothing its children did.
        Assert.Equal(new long[] { 0, 0, 0, 0, 0 }, ProcessLane(live));

        var gone = workers.Single(w => (string?)w!["host"] == "gone")!;
        Assert.False((bool)gone["live"]!);
        Assert.Equal(5, (int)gone["tasksSucceeded"]!);
        Assert.Equal(new long[] { 2, 1, 9, 4, 3 }, ProcessLane(gone));
    }

    [Fact]
    public async Task Workers_CountsTheTasksAWorkerIsRunning()
    {
        var id = await SubmitAsync("sleep", """{"ms": 3000}""");
        Assert.True(await EventuallyAsync(async () => (await GetTaskAsync(id))?.Status == "running"), "the task never started");

        // The reset emptied fleet.workers; the worker's next heartbeat (every second here) writes its row again.
        JsonNode? live = null;
        Assert.True(await EventuallyAsync(async () =>
        {
            using var response = await Http.GetAsync("workers");
            live = (await ReadJsonAsync(response)).AsArray().SingleOrDefault(w => (bool)w!["live"]!);
            return live is not null;
        }), "no live worker listed");

        Assert.Equal(1, (int)live!["runningIo"]!);
        Assert.Equal(0, (int)live["runningCpu"]!);
    }

    [Fact]
    public async Task Stats_CountsOpenAndFinishedTasks_ThroughputSeriesAndQueues()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var api = await ApiHost.StartAsync(Fleet, configureServices: s => s.AddKeyedSingleton<TimeProvider>(StatsService.ClockKey, clock));
        using var http = api.CreateClient();
        var ids = new List<Guid>();
        for (var i = 0; i < 12; i++)
        {
            ids.Add(await SubmitAsync("noop", "{}"));
        }

        ids.Add(await SubmitAsync("sha256", """{"size_kb": 0}"""));
        await WaitForFinalAsync(ids);
        await Fleet.StopWorkerAsync();
        await SubmitAsync("noop", "{}");

        // The series holds complete 5-second buckets only: the stats clock moves past the last finish's bucket.
        clock.SetUtcNow(DateTimeOffset.UtcNow);
        clock.Advance(TimeSpan.FromSeconds(FinishedBuckets.BucketSeconds));
        using var response = await http.GetAsync("stats");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var stats = await ReadJsonAsync(response);
        Assert.Equal(
            ["generatedAt", "queues", "queuesError", "open", "lastHour", "last24h", "throughputLastMinute", "series"],
            stats.AsObject().Select(p => p.Key));
        Assert.Equal(1, (int)stats["open"]!["queued"]!);
        Assert.Equal(0, (int)stats["open"]!["running"]!);
        Assert.Equal(12, (int)stats["lastHour"]!["succeeded"]!);
        Assert.Equal(1, (int)stats["lastHour"]!["failed"]!);
        Assert.Equal(0, (int)stats["lastHour"]!["timedOut"]! + (int)stats["lastHour"]!["cancelled"]!);
        Assert.Equal(12, (int)stats["last24h"]!["succeeded"]!);
        Assert.Equal(Math.Round(13 / 60.0, 3), (double)stats["throughputLastMinute"]!);
        var series = stats["series"]!.AsArray();
        Assert.Equal(180, series.Count);
        Assert.Equal(13, series.Sum(p => (long)p!["finished"]!));
        var times = series.Select(p => DateTimeOffset.Parse((string)p!["t"]!, CultureInfo.InvariantCulture)).ToList();
        Assert.All(times.Zip(times.Skip(1)), pair => Assert.Equal(TimeSpan.FromSeconds(5), pair.Second - pair.First));
        Assert.Equal(0, times[0].ToUnixTimeSeconds() % 5);

        // Queue depths come from the management API, whose counters refresh every 5 s (every second on the test brokers).
        JsonNode? io = null;
        Assert.True(await EventuallyAsync(async () =>
        {
            using var again = await http.GetAsync("stats");
            var body = await ReadJsonAsync(again);
            Assert.Null((string?)body["queuesError"]);
            io = body["queues"]!.AsArray().FirstOrDefault(q => (string?)q!["name"] == "fleet-io");
            return io is not null && (int)io["ready"]! == 1 && (int)io["consumers"]! == 0;
        }, TimeSpan.FromSeconds(30)), $"fleet-io never showed 1 ready message and no consumer (the worker is stopped): {io?.ToJsonString()}");
        Assert.Equal(0, (int)io!["unacked"]!);
    }

    [Fact]
    public async Task Stats_CountsTasksThatFinishAfterTheFirstRequest()
    {
        using var before = await Http.GetAsync("stats");
        Assert.Equal(0, (int)(await ReadJsonAsync(before))["lastHour"]!["succeeded"]!);
        var ids = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add(await SubmitAsync("noop", "{}"));
        }

        await WaitForFinalAsync(ids);

        // The second refresh recounts only the last minute and keeps the rest from the first.
        using var after = await Http.GetAsync("stats");
        var stats = await ReadJsonAsync(after);
        Assert.Equal(5, (int)stats["lastHour"]!["succeeded"]!);
        Assert.Equal(5, (int)stats["last24h"]!["succeeded"]!);
    }

    [Fact]
    public async Task Stats_ReportsQueuesError_WhenTheManagementApiIsNotConfigured()
    {
        await using var api = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?> { ["Api:RabbitMqManagementUri"] = null });
        using var http = api.CreateClient();

        using var response = await http.GetAsync("stats");

        var stats = await ReadJsonAsync(response);
        Assert.Empty(stats["queues"]!.AsArray());
        Assert.Contains("Api:RabbitMqManagementUri", (string?)stats["queuesError"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Health_IsReadyWhenDatabaseAndBrokerAnswer_AndAliveAnswers()
    {
        using var anonymous = Api.CreateClient(apiKey: null);

        HttpStatusCode status = 0;
        JsonNode? health = null;
        Assert.True(await EventuallyAsync(async () =>
        {
            using var response = await anonymous.GetAsync("health");
            status = response.StatusCode;
            health = await ReadJsonAsync(response);
            return status == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(30)), $"/health: {(int)status} {health?.ToJsonString()}");
        Assert.Equal("Healthy", (string?)health!["status"]);
        Assert.Equal(["broker", "database"], health["checks"]!.AsArray().Select(c => (string?)c!["name"]).Order());
        using var alive = await anonymous.GetAsync("alive");
        Assert.Equal(HttpStatusCode.OK, alive.StatusCode);
    }

    [Fact]
    public async Task Health_Is503WhenTheDatabaseDoesNotAnswer_WhileAliveStays200()
    {
        var unreachable = new Npgsql.NpgsqlConnectionStringBuilder(Fleet.PostgresConnectionString) { Port = FreePort(), Timeout = 2 };
        await using var api = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?>
        {
            ["ConnectionStrings:fleetdb"] = unreachable.ConnectionString,
            ["Api:RelayEnabled"] = "false",
        });
        using var http = api.CreateClient(apiKey: null);

        using var health = await http.GetAsync("health");
        using var alive = await http.GetAsync("alive");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        var text = await health.Content.ReadAsStringAsync();
        var database = System.Text.Json.Nodes.JsonNode.Parse(text)!["checks"]!.AsArray().Single(c => (string?)c!["name"] == "database")!;
        Assert.Equal("Unhealthy", (string?)database["status"]);
        Assert.DoesNotContain(unreachable.Password ?? "\u0000", text, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, alive.StatusCode);
    }

    [Fact]
    public async Task OpenApiDocument_DescribesEveryPinnedPathAndTheResponseShapes()
    {
        using var response = await Http.GetAsync("openapi/v1.json");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var document = await ReadJsonAsync(response);
        var paths = document["paths"]!.AsObject().Select(p => p.Key).ToHashSet();
        Assert.Superset(
            new HashSet<string> { "/tasks", "/tasks/batch", "/tasks/{id}", "/tasks/{id}/cancel", "/batches/{id}", "/workers", "/stats" },
            paths);
        var schemas = document["components"]!["schemas"]!.AsObject();
        Assert.Equal(
            ["generatedAt", "queues", "queuesError", "open", "lastHour", "last24h", "throughputLastMinute", "series"],
            schemas["StatsSnapshot"]!["properties"]!.AsObject().Select(p => p.Key));
        Assert.Contains("timedOut", schemas["FinalCounts"]!["properties"]!.AsObject().Select(p => p.Key));
        Assert.Contains("next", schemas["TaskPage"]!["properties"]!.AsObject().Select(p => p.Key));
        Assert.Contains("live", schemas["WorkerInfo"]!["properties"]!.AsObject().Select(p => p.Key));
        Assert.Superset(
            new HashSet<string> { "processSlots", "processBusy", "processChildrenStarted", "processKills", "processDeaths" },
            schemas["WorkerInfo"]!["properties"]!.AsObject().Select(p => p.Key).ToHashSet());
        Assert.NotNull(document["components"]!["securitySchemes"]!["bearer"]);
        Assert.Equal(2, document["paths"]!["/tasks"]!["post"]!["security"]!.AsArray().Count);
        // Each operation names the scope its key needs, in both of its security requirements.
        foreach (var (path, method, scope) in new[] { ("/tasks", "post", "write"), ("/tasks/{id}/cancel", "post", "admin"), ("/stats", "get", "read") })
        {
            var requirements = document["paths"]![path]![method]!["security"]!.AsArray();
            Assert.Equal(2, requirements.Count);
            Assert.All(requirements, r => Assert.Equal([scope], r!.AsObject().Single().Value!.AsArray().Select(s => (string?)s)));
        }

        Assert.DoesNotContain("string", schemas["SubmitTaskBody"]!["properties"]!["timeoutSeconds"]!["type"]!.ToJsonString(), StringComparison.Ordinal);

        // The workflow and operator routes are described, with a request example for those that take a body.
        Assert.Superset(
            new HashSet<string> { "/tasks/{id}/requeue", "/tasks/requeue", "/dead-letters", "/dead-letters/replay", "/dead-letters/discard", "/queues", "/queues/{name}/pause", "/queues/{name}/resume" },
            paths);
        Assert.Superset(new HashSet<string> { "then", "uniqueKey" }, schemas["SubmitTaskBody"]!["properties"]!.AsObject().Select(p => p.Key).ToHashSet());
        Assert.Contains("onComplete", schemas["SubmitBatchBody"]!["properties"]!.AsObject().Select(p => p.Key));
        Assert.Contains("onCompleteTaskId", schemas["BatchStatus"]!["properties"]!.AsObject().Select(p => p.Key));
        foreach (var (path, field) in new[] { ("/tasks", "then"), ("/tasks/batch", "onComplete"), ("/tasks/requeue", "status"), ("/dead-letters/replay", "queue") })
        {
            var example = document["paths"]![path]!["post"]!["requestBody"]!["content"]!["application/json"]!["example"];
            Assert.True(example?[field] is not null, $"POST {path} has no request example with {field}");
        }
    }

    [Fact]
    public async Task Root_ServesTheDashboardPage()
    {
        using var anonymous = Api.CreateClient(apiKey: null);

        using var response = await anonymous.GetAsync("/");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("<html", await response.Content.ReadAsStringAsync(), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Reads_NeedAKeyByDefault_AndAreOpenOnlyWithReadsRequireKeyFalse()
    {
        using var noKey = Api.CreateClient(apiKey: null);
        using var reader = Api.CreateClient(ApiHost.ReadKey);
        foreach (var path in new[] { "stats", "workers", "tasks", $"tasks/{Guid.NewGuid()}", $"batches/{Guid.NewGuid()}" })
        {
            using var refused = await noKey.GetAsync(path);
            await AssertProblemAsync(refused, HttpStatusCode.Unauthorized);
        }

        using var allowed = await reader.GetAsync("stats");
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        using var health = await noKey.GetAsync("alive");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using var openApi = await noKey.GetAsync("openapi/v1.json");
        Assert.Equal(HttpStatusCode.OK, openApi.StatusCode);

        await using var opened = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?> { ["Api:ReadsRequireKey"] = "false" });
        using var anonymous = opened.CreateClient(apiKey: null);
        using var open = await anonymous.GetAsync("stats");
        Assert.Equal(HttpStatusCode.OK, open.StatusCode);
    }

    [Fact]
    public async Task ApiKeys_NeverAppearInTheLogs_EvenAtTraceLevel()
    {
        const string wrongKey = "wrong-key-3b9d1f0c7e2a4d6b";
        await using var api = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?> { ["Logging:LogLevel:Default"] = "Trace" });
        using var good = api.CreateClient();
        using var bad = api.CreateClient(wrongKey);
        using var anonymous = api.CreateClient(apiKey: null);

        using (await good.PostAsync("tasks", Json("""{"type": "noop"}"""))) { }
        using (await bad.PostAsync("tasks", Json("""{"type": "noop"}"""))) { }
        using (await anonymous.SendAsync(Request(HttpMethod.Post, "tasks/batch", """{"tasks": [{"type": "noop"}]}""", apiKeyHeader: ApiHost.ApiKey))) { }
        using (await anonymous.SendAsync(Request(HttpMethod.Post, "tasks", """{"type": "noop"}""", apiKeyHeader: wrongKey))) { }
        using (await good.GetAsync("stats")) { }

        var lines = api.Logs.Lines.ToList();
        Assert.Contains(lines, l => l.Contains("/tasks", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains(ApiHost.ApiKey, StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains(wrongKey, StringComparison.Ordinal));
    }

    /// <summary>A worker's process-lane fields in <c>GET /workers</c>: slots, busy, children started, kills, deaths.</summary>
    private static long[] ProcessLane(JsonNode worker) =>
        [.. new[] { "processSlots", "processBusy", "processChildrenStarted", "processKills", "processDeaths" }.Select(f => (long)worker[f]!)];

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
