using System.Diagnostics;
using System.Text.Json;
using Fleet.Client;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>Real worker processes: separate OS processes share the queues and drain on SIGTERM.</summary>
public sealed class WorkerProcessTests(FleetFixture fleet) : FleetTest(fleet)
{
    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();

        // Only the two processes consume in this test.
        await Fleet.StopWorkerAsync();
    }

    [Fact]
    public async Task TwoWorkerProcesses_ShareOneQueue_AndBothRecordTheirWork()
    {
        await using var a = WorkerProcess.Start(Fleet.WorkerSettings("proc-a", cpuConcurrency: 1));
        await using var b = WorkerProcess.Start(Fleet.WorkerSettings("proc-b", cpuConcurrency: 1));
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE state = 'running' AND host IN ('proc-a', 'proc-b')") == 2),
            "both worker processes should register in fleet.workers");

        var batch = Guid.NewGuid();
        var ids = await Fleet.Client.SubmitManyAsync(StandardRequests.Of("sha256", 40, batch));
        await WaitForFinalAsync(ids);

        var perHost = await ListAsync(
            """
            SELECT w.host, count(*) FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
            WHERE a.task_id = ANY(@ids) GROUP BY w.host ORDER BY w.host
            """,
            r => (Host: r.GetString(0), Count: r.GetInt64(1)), ("ids", ids.ToArray()));
        Assert.Equal(["proc-a", "proc-b"], perHost.Select(p => p.Host));
        Assert.All(perHost, p => Assert.True(p.Count > 0));
        Assert.Equal(40L, perHost.Sum(p => p.Count));
        Assert.Equal(40L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE batch_id = @b AND status = 'succeeded'", ("b", batch)));

        Assert.Equal(0, await a.TerminateAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(0, await b.TerminateAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(2L, await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE state = 'stopped' AND host IN ('proc-a', 'proc-b')"));
    }

    [Fact]
    public async Task Sigterm_FinishesTheTasksAWorkerHolds_BeforeItExits()
    {
        await using var worker = WorkerProcess.Start(Fleet.WorkerSettings("draining", cpuConcurrency: 1));
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE state = 'running' AND host = 'draining'") == 1));
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("sleep", new { ms = 2000 }));
        Assert.True(await EventuallyAsync(async () => (await GetTaskAsync(id))!.Status == "running"), "the sleep task never started");

        var exitCode = await worker.TerminateAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(0, exitCode);
        var info = await GetTaskAsync(id);
        Assert.Equal("succeeded", info!.Status);
        Assert.Equal("stopped", await ScalarAsync<string>("SELECT state FROM fleet.workers WHERE host = 'draining'"));
    }

    [Fact]
    public async Task AWorkerProcess_ServesHealthAndMetrics_AndItsCountersMoveWithWork()
    {
        var settings = Fleet.WorkerSettings("observed", cpuConcurrency: 1);
        var port = FreePort();
        settings["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        await using var worker = WorkerProcess.Start(settings);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        Assert.True(await EventuallyAsync(async () => await TryGetAsync(http, "/health") == System.Net.HttpStatusCode.OK), "/health never became ready");
        Assert.Equal(System.Net.HttpStatusCode.OK, await TryGetAsync(http, "/alive"));

        // Besides successes: a failure (unknown type) and a task that fails once, is retried, then succeeds.
        var ids = await Fleet.Client.SubmitManyAsync([
            .. StandardRequests.Of("sha256", 5), .. StandardRequests.Of("noop", 3), TaskRequest.Create("no-such-type", new { }),
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 1 }) with { MaxAttempts = 3 }]);
        await WaitForFinalAsync(ids);

        string metrics = "";
        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await http.GetStringAsync("/metrics");
            return Sample(metrics, "fleet_tasks_finished_total", "type=\"sha256\"") == 5 && Sample(metrics, "fleet_tasks_finished_total", "type=\"noop\"") == 3
                && Sample(metrics, "fleet_tasks_finished_total", "status=\"failed\"") == 1 && Sample(metrics, "fleet_task_retries_total", "type=\"fault-flaky\"") == 1;
        }, TimeSpan.FromSeconds(20)), $"counters did not reach 5 sha256 / 3 noop / 1 failed / 1 retry:\n{PrometheusText.Lines(metrics)}");
        Assert.Equal(5, Sample(metrics, "fleet_tasks_finished_total", "lane=\"cpu\",status=\"succeeded\""));
        Assert.Equal(1, Sample(metrics, "fleet_task_retries_total", "lane=\"io\""));
        Assert.Equal(1, Sample(metrics, "fleet_lane_capacity", "lane=\"cpu\""));
        Assert.Equal(0, Sample(metrics, "fleet_lane_busy", "lane=\"cpu\""));
        Assert.Equal(5, Sample(metrics, "fleet_task_duration_seconds_count", "type=\"sha256\""));

        // Buckets in seconds: a noop (well under a second) lands in the 1 s bucket, not only in a 5 s catch-all.
        Assert.Equal(3, Sample(metrics, "fleet_task_duration_seconds_bucket", "type=\"noop\",le=\"1\""));
        Assert.Equal(5, Sample(metrics, "fleet_task_queue_wait_seconds_count", "lane=\"cpu\""));
    }

    [Fact]
    public async Task AWorkerProcess_WithJsonLogs_WritesTheTaskIdAndTheProducersTraceIdOnLinesAboutATask()
    {
        var settings = Fleet.WorkerSettings("json-logs", cpuConcurrency: 1);
        settings["Logging:Format"] = "json";
        await using var worker = WorkerProcess.Start(settings);
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE state = 'running' AND host = 'json-logs'") == 1));

        // This test is the producer and traces its submit: the send carries the trace to the worker process.
        using var source = new ActivitySource("Fleet.IntegrationTests.Producer");
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name is "MassTransit" or "Fleet.IntegrationTests.Producer",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        ActivitySource.AddActivityListener(listener);
        Guid id;
        ActivityTraceId traceId;
        using (var submit = source.StartActivity("submit")!)
        {
            traceId = submit.TraceId;
            id = await Fleet.Client.SubmitAsync(TaskRequest.Create("no-such-type", new { }));
        }

        await WaitForFinalAsync([id]);

        // The failure is logged as a warning while the task is handled: its scopes hold the task and the trace.
        JsonElement? line = null;
        Assert.True(await EventuallyAsync(() =>
        {
            line = JsonLines(worker.Output).Where(l => Scope(l, "TaskId") == id.ToString()).Select(l => (JsonElement?)l).FirstOrDefault();
            return Task.FromResult(line is not null);
        }, TimeSpan.FromSeconds(10)), $"no JSON log line carries the task id {id} in its scopes:\n{worker.Output}");
        Assert.Equal("Warning", line!.Value.GetProperty("LogLevel").GetString());
        Assert.Equal(traceId.ToHexString(), Scope(line.Value, "TraceId"));
        Assert.Matches("^[0-9a-f]{16}$", Scope(line.Value, "SpanId"));
        Assert.Equal("no-such-type", Scope(line.Value, "TaskType"));
    }

    /// <summary>The lines of <paramref name="output"/> that are JSON objects (the JSON console formatter writes one per line).</summary>
    private static List<JsonElement> JsonLines(string output)
    {
        var lines = new List<JsonElement>();
        foreach (var text in output.Split('\n').Where(l => l.StartsWith('{')))
        {
            try
            {
                using var document = JsonDocument.Parse(text);
                lines.Add(document.RootElement.Clone());
            }
            catch (JsonException)
            {
                // A line cut by the reader, or not ours: not a log entry to look at.
            }
        }

        return lines;
    }

    /// <summary>The value of <paramref name="name"/> in any scope of a JSON log line, as text.</summary>
    private static string? Scope(JsonElement line, string name) =>
        line.TryGetProperty("Scopes", out var scopes) && scopes.ValueKind == JsonValueKind.Array
            ? scopes.EnumerateArray()
                .Where(s => s.ValueKind == JsonValueKind.Object && s.TryGetProperty(name, out _))
                .Select(s => s.GetProperty(name).ToString())
                .FirstOrDefault()
            : null;

    private static async Task<System.Net.HttpStatusCode?> TryGetAsync(HttpClient http, string path)
    {
        try
        {
            using var response = await http.GetAsync(path);
            return response.StatusCode;
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>The sum of the samples of <paramref name="metric"/> whose labels contain <paramref name="label"/>; 0 when none.</summary>
    private static double Sample(string exposition, string metric, string label) => PrometheusText.Sum(exposition, metric, label) ?? 0;

    private static int FreePort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
