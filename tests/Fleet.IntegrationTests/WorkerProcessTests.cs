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
        var ids = await Fleet.Client.SubmitManyAsync(Workloads.Requests("sha256", 40, batch));
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

        var ids = await Fleet.Client.SubmitManyAsync([.. Workloads.Requests("sha256", 5), .. Workloads.Requests("noop", 3)]);
        await WaitForFinalAsync(ids);

        string metrics = "";
        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await http.GetStringAsync("/metrics");
            return Sample(metrics, "fleet_tasks_finished_total", "type=\"sha256\"") == 5 && Sample(metrics, "fleet_tasks_finished_total", "type=\"noop\"") == 3;
        }, TimeSpan.FromSeconds(20)), $"counters did not reach 5 sha256 / 3 noop:\n{string.Join('\n', metrics.Split('\n').Where(l => l.StartsWith("fleet_", StringComparison.Ordinal)))}");
        Assert.Contains("fleet_lane_capacity{", metrics, StringComparison.Ordinal);
        Assert.Contains("fleet_task_duration_seconds_bucket{", metrics, StringComparison.Ordinal);
    }

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

    /// <summary>The sum of the samples of <paramref name="metric"/> whose labels contain <paramref name="label"/>.</summary>
    private static double Sample(string exposition, string metric, string label) => exposition.Split('\n')
        .Where(l => l.StartsWith(metric + "{", StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal))
        .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));

    private static int FreePort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
