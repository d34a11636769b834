using Fleet.Bench;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// A small run of the <c>fleet-bench</c> code path against the fixture's fleet (in-process worker, real servers):
/// the report has sane fields. No speed assertions: the machines are shared.
/// </summary>
public sealed class BenchSmokeTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task Bench_OnNoopAndSha256_ReportsCountsRatesOrderedPercentilesAndEfficiency()
    {
        var settings = new BenchSettings
        {
            PostgresConnectionString = Fleet.PostgresConnectionString,
            AmqpUri = Fleet.AmqpUri,
            Workloads = ["noop"],
            Count = 200,
            Runs = 1,
            SingleTaskRepeats = 3,
            ParallelForSeconds = 0.5,
            WarmUpTasks = 20,
            RunTimeout = TimeSpan.FromMinutes(5),
        };
        using var log = new StringWriter();

        // 200 noop tasks (with the raw-broker baseline), then 10 sha256 tasks (with the single-task timing).
        var report = await new BenchRunner(settings, Fleet.Client, log).RunAsync(CancellationToken.None);
        var cpuReport = await new BenchRunner(settings with { Workloads = ["sha256"], Count = 10 }, Fleet.Client, log).RunAsync(CancellationToken.None);

        var noop = Assert.Single(report.Workloads);
        var noopRun = Assert.Single(noop.Runs);
        Assert.Equal(200, noopRun.Tasks);
        Assert.Equal(200, noopRun.Succeeded);
        AssertSaneRun(noopRun);
        Assert.Null(noopRun.Efficiency);
        Assert.True(noopRun.GrowthRatio > 0, "a run of 200 tasks reports its last tenth against its first");
        Assert.Contains("warm-up of 20 tasks", log.ToString(), StringComparison.Ordinal);
        var raw = Assert.Single(report.RawBroker);
        Assert.Equal(200, raw.Count);
        Assert.True(raw.RatePerSecond > 0);
        Assert.Equal(BenchRunner.NoopMessageBytes(), raw.BodyBytes); // by default the same bytes per message as Fleet's noop

        var sha = Assert.Single(cpuReport.Workloads);
        var shaRun = Assert.Single(sha.Runs);
        Assert.Equal(10, shaRun.Tasks);
        Assert.Equal(10, shaRun.Succeeded);
        AssertSaneRun(shaRun);
        Assert.NotNull(sha.SingleTask);
        Assert.True(sha.SingleTask.WallMs > 0);
        Assert.InRange(shaRun.Efficiency!.Value, 1e-6, 1.5);
        var parallel = sha.SingleTask.ParallelFor;
        Assert.NotNull(parallel);
        Assert.True(parallel.Tasks >= parallel.Threads * 4 && parallel.TasksPerSecond > 0, $"Parallel.For baseline: {parallel}");
        Assert.InRange(parallel.Efficiency, 1e-6, 1.5);
        Assert.Empty(cpuReport.RawBroker);

        // The in-process worker is this test process: it is found, with a peak RSS and some CPU time.
        var worker = Assert.Single(shaRun.Workers);
        Assert.Equal(Environment.ProcessId, worker.Pid);
        Assert.True(worker.PeakRssBytes > 0);
        Assert.True(shaRun.CpuSeconds["workers"] > 0);

        var markdown = BenchOutput.ToMarkdown(report);
        Assert.Contains("| noop | closed | 200 | 1 | 200 |", markdown, StringComparison.Ordinal);
        Assert.Contains("of the raw-broker median", markdown, StringComparison.Ordinal);
        Assert.Contains("\"throughput\"", BenchOutput.ToJson(cpuReport), StringComparison.Ordinal);
        Assert.Contains("\"parallelFor\"", BenchOutput.ToJson(cpuReport), StringComparison.Ordinal);
        Assert.Contains("| sha256 |", BenchOutput.ToMarkdown(cpuReport).Split("Parallel.For in the bench process")[1], StringComparison.Ordinal);
    }

    private static void AssertSaneRun(RunResult run)
    {
        Assert.Equal(0, run.NotSucceeded);
        Assert.True(run.WallSeconds > 0);
        Assert.True(run.Throughput > 0);
        Assert.True(run.LatencyP50Ms > 0);
        Assert.True(run.LatencyP50Ms <= run.LatencyP95Ms);
        Assert.True(run.LatencyP95Ms <= run.LatencyP99Ms);
        Assert.Contains("workers", run.CpuSeconds.Keys);
    }
}
