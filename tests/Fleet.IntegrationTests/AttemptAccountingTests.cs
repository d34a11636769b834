using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// Attempts count what happened: a drain hands tasks back without charging them, a crash charges the tasks that
/// were running, and the crash-loop guard quarantines the task that kills its process, not the tasks beside it.
/// </summary>
public sealed class AttemptAccountingTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    [Fact]
    public async Task ALongTask_DrainedThreeTimes_IsNotCharged_AndSucceedsAtLast()
    {
        var settings = Fleet.WorkerSettings("rolling-deploy", cpuConcurrency: 1);
        settings["Worker:DrainSeconds"] = "1";
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("sleep", new { ms = 6000 }));

        for (var deploy = 1; deploy <= 3; deploy++)
        {
            await using var worker = WorkerProcess.Start(settings);
            Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id AND outcome = 'running'", ("id", id)) == 1), $"deploy {deploy}: never started");
            Assert.Equal(0, await worker.TerminateAsync(TimeSpan.FromSeconds(30)));
        }

        await using (var last = WorkerProcess.Start(settings))
        {
            await WaitForFinalAsync([id]);
        }

        var info = await GetTaskAsync(id);
        output.WriteLine($"drained three times: {info!.Status} after {info.Attempts} executions");
        Assert.Equal("succeeded", info.Status);
        Assert.Equal(["handed_back", "handed_back", "handed_back", "succeeded"], await ListAsync(
            "SELECT outcome FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt", r => r.GetString(0), ("id", id)));
    }

    [Fact]
    public async Task OneTaskThatKillsItsProcess_AmongTwoHundred_IsQuarantined_AndTheOthersSucceed()
    {
        var settings = Fleet.WorkerSettings("poisoned", cpuConcurrency: 1);
        var healthy = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 200).Select(i => i % 2 == 0
            ? TaskRequest.Create("sleep", new { ms = 300 })
            : TaskRequest.Create("sha256", new { size_kb = 64, rounds = 1, seed = i })));
        var poison = await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-exit", new { }));
        var all = healthy.Append(poison).ToArray();

        // A supervisor's job (systemd, Kubernetes): restart the worker whenever it dies.
        var starts = 0;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        while (DateTime.UtcNow < deadline && await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status IN ('queued', 'running')", ("ids", all)) > 0)
        {
            await using var worker = WorkerProcess.Start(settings);
            starts++;
            await EventuallyAsync(async () => worker.HasExited || await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status IN ('queued', 'running')", ("ids", all)) == 0,
                TimeSpan.FromSeconds(60));
        }

        var poisoned = await GetTaskAsync(poison);
        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, all);
        var maxDeaths = await ScalarAsync<long>("""
            SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM fleet.task_attempts
                                             WHERE task_id = ANY(@ids) AND outcome = 'abandoned' GROUP BY task_id) d
            """, ("ids", healthy.ToArray()));
        output.WriteLine($"poison among 200: {starts} worker starts; {report}; poison {poisoned!.Status} {poisoned.ErrorType} " +
            $"after {poisoned.Attempts} executions; most deaths of a healthy task: {maxDeaths}");
        Assert.Equal(200L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded'", ("ids", healthy.ToArray())));
        Assert.Equal(("failed", "CrashLoop"), (poisoned.Status, poisoned.ErrorType));
        Assert.Equal((0L, 0L), (report.Lost, report.OpenAttempts));
        Assert.InRange(maxDeaths, 0, 1);
    }
}
