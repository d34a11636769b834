using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Fleet.Client;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// A real worker process with a process lane, whose children start, are killed at a time limit and die by
/// themselves: each view of the worker (its <c>fleet.workers</c> row, its <c>/metrics</c>, <c>GET /workers</c> and
/// <c>fleet workers</c>) shows the same slots, busy children, starts, kills and deaths.
/// </summary>
public sealed class ProcessLaneVisibilityTests(FleetFixture fleet) : OwnWorkersTest(fleet)
{
    private const string Host = "proc-lane";

    [Fact]
    public async Task ChildrenStartedKilledAndDead_ShowAlikeInTheWorkersRow_ItsMetrics_GetWorkers_AndFleetWorkers()
    {
        var settings = Fleet.WorkerSettings(Host, cpuConcurrency: 2);
        settings["Worker:ProcessTypes:0"] = "sha256";
        settings["Worker:ProcessTypes:1"] = "fault-hang";
        settings["Worker:ProcessTypes:2"] = "fault-exit";
        settings["Worker:ProcessConcurrency"] = "2";
        settings["Worker:ProcessKillGraceSeconds"] = "0.5";
        var port = FreePort();
        settings["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        await using var worker = WorkerProcess.Start(settings);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };

        // Registered with its slots before any child started: children start as tasks need them.
        Assert.True(await EventuallyAsync(async () => (await RowAsync())?.Slots == 2), $"the worker never registered with 2 process slots:\n{worker.Output}");
        Assert.Equal((2, 0, 0L, 0L, 0L), (await RowAsync())!.Value);

        // Children run tasks; one ignores its time limit and is killed; one crashes its child (no retry, so one death).
        var ok = await Fleet.Client.SubmitManyAsync(StandardRequests.Of("sha256", 4));
        await WaitForFinalAsync(ok);
        var hang = await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-hang", new { seconds = 60 }) with { TimeoutSeconds = 1, MaxAttempts = 1 });
        await WaitForFinalAsync([hang]);
        var exit = await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-exit", new { }) with { MaxAttempts = 1 });
        await WaitForFinalAsync([exit]);
        Assert.Equal("timed_out", (await GetTaskAsync(hang))!.Status);
        Assert.False(worker.HasExited, $"the worker died with its child:\n{worker.Output}");

        // The heartbeat (every second here) catches up with the pool.
        (int Slots, int Busy, long Started, long Kills, long Deaths)? row = null;
        Assert.True(await EventuallyAsync(async () => (row = await RowAsync()) is { Kills: 1, Deaths: 1 }),
            $"fleet.workers never showed 1 kill and 1 death: {row}\n{worker.Output}");
        var (slots, busy, started, kills, deaths) = row!.Value;
        Assert.Equal((2, 0, 1L, 1L), (slots, busy, kills, deaths));

        // At least the child that was killed and the one that died: each was started, by the pool, for a task.
        Assert.True(started >= 2, $"{started} children started");

        var metrics = await http.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Equal(2, Sample(metrics, "fleet_process_lane_slots"));
        Assert.Equal(0, Sample(metrics, "fleet_process_lane_busy"));
        Assert.Equal(started, Sample(metrics, "fleet_process_lane_children_started_total"));
        Assert.Equal(1, Sample(metrics, "fleet_process_lane_kills_total", "reason=\"time_limit\""));
        Assert.Equal(0, Sample(metrics, "fleet_process_lane_kills_total", "reason=\"memory\""));
        Assert.Equal(1, Sample(metrics, "fleet_process_lane_deaths_total"));
        Assert.Equal(0, Sample(metrics, "fleet_process_lane_recycled_total"));
        Assert.InRange(Sample(metrics, "fleet_process_lane_children"), 0, 2);

        await using (var api = await ApiHost.StartAsync(Fleet))
        {
            using var client = api.CreateClient();
            var listed = JsonNode.Parse(await client.GetStringAsync(new Uri("workers", UriKind.Relative)))!.AsArray();
            var shown = listed.Single(w => (string?)w!["host"] == Host)!;
            Assert.Equal(
                new long[] { 2, 0, started, 1, 1 },
                new[] { "processSlots", "processBusy", "processChildrenStarted", "processKills", "processDeaths" }.Select(f => (long)shown[f]!));
        }

        var line = (await FleetWorkersAsync()).Split('\n').Single(l => l.Contains($" {Host} ", StringComparison.Ordinal));
        var columns = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("2", columns[4]);
        Assert.Equal("0/2", columns[6]);
        Assert.Equal([started.ToString(CultureInfo.InvariantCulture), "1", "1"], columns[^3..]);

        Assert.Equal(0, await worker.TerminateAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>The worker's process-lane columns in <c>fleet.workers</c>; null until it registered.</summary>
    private async Task<(int Slots, int Busy, long Started, long Kills, long Deaths)?> RowAsync()
    {
        var rows = await ListAsync(
            """
            SELECT process_slots, process_busy, process_children_started, process_kills, process_deaths
            FROM fleet.workers WHERE host = @host AND state = 'running'
            """,
            r => (r.GetInt32(0), r.GetInt32(1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4)), ("host", Host));
        return rows.Count == 0 ? null : rows.Single();
    }

    /// <summary>What <c>fleet workers</c> prints, from the CLI's build output, against this run's database.</summary>
    private async Task<string> FleetWorkersAsync()
    {
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        var dll = Repository.PathTo("src", "Fleet.Cli", "bin", configuration, "net10.0", "fleet.dll");
        Assert.True(File.Exists(dll), $"Build the solution first: {dll} is missing.");
        var info = new ProcessStartInfo("dotnet", [dll, "workers"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["ConnectionStrings__fleetdb"] = Fleet.PostgresConnectionString;
        using var cli = Process.Start(info)!;
        var output = cli.StandardOutput.ReadToEndAsync();
        var errors = cli.StandardError.ReadToEndAsync();
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await cli.WaitForExitAsync(wait.Token);
        Assert.True(cli.ExitCode == 0, $"fleet workers exited {cli.ExitCode}: {await errors}");
        return await output;
    }

    /// <summary>The sum of the samples of <paramref name="metric"/> (with <paramref name="label"/>); -1 when there are none.</summary>
    private static double Sample(string exposition, string metric, string? label = null) => PrometheusText.Sum(exposition, metric, label) ?? -1;

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
