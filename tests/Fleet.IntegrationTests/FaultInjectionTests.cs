using System.Text;
using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// Faults injected into real worker processes and real servers while work is in flight; afterwards the delivery
/// invariants are checked with SQL: nothing lost, nothing unexpected, duplicates only where a crash forced them.
/// </summary>
public sealed class FaultInjectionTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    [Fact]
    public async Task Kill9_InTheMiddleOfLongCpuTasks_LosesNothing()
    {
        var settings = Fleet.WorkerSettings("victim", cpuConcurrency: 1);
        await using var victim = WorkerProcess.Start(settings);
        await using var survivor = WorkerProcess.Start(Fleet.WorkerSettings("survivor", cpuConcurrency: 1));
        var ids = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 24).Select(i =>
            TaskRequest.Create("heat", new { n = 384, steps = 1500, seed = i })));

        var prefix = victim.WorkerIdPrefix("victim");
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE status = 'running' AND worker_id LIKE @p", ("p", prefix + "%")) > 0),
            "the victim never ran a task");
        await victim.KillAsync();
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(3));

        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, ids);
        output.WriteLine($"kill -9 mid-task: {report}");
        Assert.Equal((0L, 0L, 0L), (report.Lost, report.Unexpected, report.OpenAttempts));
        Assert.InRange(report.DuplicateExecutions, 1, 2);
        Assert.Equal(24L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded'", ("ids", ids.ToArray())));
        Assert.True(await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids) AND outcome = 'abandoned'", ("ids", ids.ToArray())) >= 1);
    }

    [Fact]
    public async Task Kill9_AfterTheCommitBeforeTheAck_KeepsOneResultAndDoesNotRunAgain()
    {
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-commit-exit", new { }));
        await using (var dying = WorkerProcess.Start(Fleet.WorkerSettings("commit-then-die", cpuConcurrency: 1)))
        {
            Assert.True(await EventuallyAsync(() => Task.FromResult(dying.HasExited), TimeSpan.FromSeconds(30)), "the worker did not die after its commit");
        }

        var finishedAt = (await GetTaskAsync(id))!.FinishedAt;
        await using var next = WorkerProcess.Start(Fleet.WorkerSettings("after-crash", cpuConcurrency: 1));
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT coalesce(sum(tasks_skipped), 0)::bigint FROM fleet.workers WHERE host = 'after-crash'") == 1, TimeSpan.FromSeconds(30)),
            "the redelivered message was not acknowledged as a duplicate");

        var info = await GetTaskAsync(id);
        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, [id]);
        output.WriteLine($"kill after commit, before ack: {report}; redelivery skipped as already final");
        Assert.Equal(("succeeded", 1, finishedAt), (info!.Status, info.Attempts, info.FinishedAt));
        Assert.Equal((0L, 0L, 0L), (report.Lost, report.DuplicateExecutions, report.Unexpected));
    }

    [Fact]
    public async Task ARetryWaitingForItsTime_SurvivesTheWorkerThatScheduledIt()
    {
        var settings = Fleet.WorkerSettings("retry-scheduler", cpuConcurrency: 1);
        settings["Worker:RetryBaseSeconds"] = "3";
        var id = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 1 }) with { MaxAttempts = 3 });
        await using (var first = WorkerProcess.Start(settings))
        {
            // The first attempt failed and its retry waits in PostgreSQL for its not_before: the task is queued again.
            Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id AND outcome = 'failed'", ("id", id)) == 1));
            Assert.Equal("queued", (await GetTaskAsync(id))!.Status);
            await first.KillAsync();
        }

        await using var second = WorkerProcess.Start(Fleet.WorkerSettings("after-restart", cpuConcurrency: 1));
        await WaitForFinalAsync([id]);

        // The new process has its own failure count: its first execution fails, its second succeeds.
        var info = await GetTaskAsync(id);
        Assert.Equal(("succeeded", 3), (info!.Status, info.Attempts));
        Assert.Equal(2L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id AND worker_id LIKE 'after-restart:%'", ("id", id)));
    }

    [Fact]
    public async Task AHandlerThatKillsItsProcess_EndsFailedAsACrashLoop_AfterBoundedTries()
    {
        var settings = Fleet.WorkerSettings("crashy", cpuConcurrency: 1);
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-exit", new { }) with { MaxAttempts = 2 });

        // A supervisor's job (systemd, Kubernetes): restart the worker whenever it dies.
        var starts = 0;
        while ((await GetTaskAsync(id))!.IsFinal is false && starts < 5)
        {
            await using var worker = WorkerProcess.Start(settings);
            starts++;
            await EventuallyAsync(async () => worker.HasExited || (await GetTaskAsync(id))!.IsFinal, TimeSpan.FromSeconds(30));
        }

        var info = await GetTaskAsync(id);
        output.WriteLine($"crash loop: {starts} worker starts, attempts {info!.Attempts}, {info.ErrorType}: {info.ErrorMessage}");
        Assert.Equal(("failed", "CrashLoop", 3), (info.Status, info.ErrorType, info.Attempts));
        Assert.Equal(["abandoned", "abandoned", "failed"], await ListAsync(
            "SELECT outcome FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt", r => r.GetString(0), ("id", id)));
    }

    [Fact]
    public async Task Sigterm_WithMoreWorkThanTheDrainAllows_HandsTheRestBack()
    {
        var settings = Fleet.WorkerSettings("drained", cpuConcurrency: 1);
        settings["Worker:DrainSeconds"] = "2";
        var ids = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 6).Select(_ => TaskRequest.Create("sleep", new { ms = 8000 })));
        await using (var drained = WorkerProcess.Start(settings))
        {
            Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'running'", ("ids", ids.ToArray())) == 6));

            Assert.Equal(0, await drained.TerminateAsync(TimeSpan.FromSeconds(30)));
        }

        Assert.Equal("stopped", await ScalarAsync<string>("SELECT state FROM fleet.workers WHERE host = 'drained'"));
        await using var next = WorkerProcess.Start(Fleet.WorkerSettings("next", cpuConcurrency: 1));
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(1));
        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, ids);
        output.WriteLine($"SIGTERM drain past DrainSeconds: {report}");
        Assert.Equal((0L, 0L, 0L), (report.Lost, report.Unexpected, report.OpenAttempts));
        Assert.Equal(6L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND worker_id LIKE 'next:%'", ("ids", ids.ToArray())));
    }

    [Fact]
    public async Task RabbitMqRestart_WithTasksQueuedAndInFlight_LosesNothing()
    {
        await using var worker = WorkerProcess.Start(Fleet.WorkerSettings("through-broker-restart", cpuConcurrency: 2));
        var ids = await Fleet.Client.SubmitManyAsync([
            .. StandardRequests.Of("noop", 3000),
            .. Enumerable.Range(0, 200).Select(_ => TaskRequest.Create("sleep", new { ms = 500 })),
        ]);
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded'", ("ids", ids.ToArray())) > 100));

        await Fleet.Servers.RestartRabbitMqAsync();
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(3));

        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, ids);
        output.WriteLine($"RabbitMQ restart: {report}");
        Assert.Equal((0L, 0L), (report.Lost, report.Unexpected));
        Assert.Equal(ids.Count, (int)await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded'", ("ids", ids.ToArray())));
    }

    [Fact]
    public async Task PostgresRestart_WhileWorkersWriteResults_LosesNothingAndFillsNoErrorQueue()
    {
        await using var worker = WorkerProcess.Start(Fleet.WorkerSettings("through-db-restart", cpuConcurrency: 2));
        var ids = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 400).Select(_ => TaskRequest.Create("sleep", new { ms = 100 })));
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded'", ("ids", ids.ToArray())) > 50));

        await Fleet.Servers.StopPostgresAsync();
        await Task.Delay(TimeSpan.FromSeconds(3));
        await Fleet.Servers.StartPostgresAsync();
        await Fleet.ReconnectAfterDatabaseRestartAsync();
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(2));

        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, ids);
        output.WriteLine($"PostgreSQL restart: {report}");
        Assert.Equal((0L, 0L), (report.Lost, report.Unexpected));
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-io_error"));
    }

    [Fact]
    public async Task MalformedBodies_AreRecordedAsFailedOrParkedInTheErrorQueue_AndGoodWorkContinues()
    {
        await using var worker = WorkerProcess.Start(Fleet.WorkerSettings("malformed", cpuConcurrency: 1));
        var noType = Guid.NewGuid();
        var good = Guid.NewGuid();
        var unreadable = new[] { "m-1", "m-3", "m-4" }.Select(TaskIdForMessageId).ToArray();

        await PublishRawAsync(TaskQueues.Cpu, "", Encoding.UTF8.GetBytes("not json at all"), "m-1");
        await PublishRawAsync(TaskQueues.Cpu, "", Encoding.UTF8.GetBytes($"{{\"taskId\":\"{noType}\",\"payload\":{{}}}}"), null);
        await PublishRawAsync(TaskQueues.Cpu, "", [0x7B, 0x00, 0x00, 0x22, 0x00], "m-3");
        await PublishRawAsync(TaskQueues.Cpu, "", new byte[5 * 1024 * 1024], "m-4");
        await PublishRawAsync(TaskQueues.Cpu, "", Encoding.UTF8.GetBytes("not json, and no message id"), null);
        await PublishRawAsync(TaskQueues.Cpu, "", Encoding.UTF8.GetBytes($"{{\"taskId\":\"{good}\",\"type\":\"sieve\",\"payload\":{{\"limit\":1000}}}}"), null);
        await WaitForFinalAsync([noType, good, .. unreadable]);

        Assert.Equal(("failed", "ValidationError"), ((await GetTaskAsync(noType))!.Status, (await GetTaskAsync(noType))!.ErrorType));
        Assert.Equal("succeeded", (await GetTaskAsync(good))!.Status);
        Assert.Equal(3L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'failed' AND error_type = 'InvalidMessage'", ("ids", unreadable)));
        Assert.True(await EventuallyAsync(async () => await QueueMessageCountAsync("fleet-cpu_error") == 1), "expected only the body without any id in fleet-cpu_error");
        Assert.Equal(5L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }

    [Fact]
    public async Task DuplicatePublishes_WithTheSameOrADifferentPayload_KeepTheFirstResult()
    {
        await using var worker = WorkerProcess.Start(Fleet.WorkerSettings("dupes", cpuConcurrency: 1));
        var id = Guid.NewGuid();
        var first = JsonSerializer.SerializeToElement(new { size_kb = 16, rounds = 1, seed = 1 });
        var different = JsonSerializer.SerializeToElement(new { size_kb = 16, rounds = 1, seed = 2 });

        await Fleet.Client.SubmitAsync(new TaskRequest("sha256", first) { TaskId = id });
        await WaitForFinalAsync([id]);
        var result = (await GetTaskAsync(id))!.Result;
        await Fleet.Client.SubmitManyAsync([new TaskRequest("sha256", first) { TaskId = id }, new TaskRequest("sha256", different) { TaskId = id }]);
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT tasks_skipped FROM fleet.workers WHERE host = 'dupes'") >= 2, TimeSpan.FromSeconds(30)), "the duplicates were not consumed");

        var info = await GetTaskAsync(id);
        Assert.Equal((result, 1), (info!.Result, info.Attempts));
        Assert.Contains("\"seed\": 1", info.Payload, StringComparison.Ordinal);
    }
}
