using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using RabbitMQ.Client;

namespace Fleet.IntegrationTests;

/// <summary>Retries, time limits and cancels in the in-process worker (fault-injection task types enabled).</summary>
public sealed class ReliabilityTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task TransientFailures_AreRetriedWithBackoff_UntilTheTaskSucceeds()
    {
        var id = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 2 }) with { MaxAttempts = 3 });

        await WaitForFinalAsync([id]);

        var info = await GetTaskAsync(id);
        Assert.Equal(("succeeded", 3), (info!.Status, info.Attempts));
        var attempts = await ListAsync(
            "SELECT attempt, outcome, error_type, started_at, finished_at FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt",
            r => (Attempt: r.GetInt32(0), Outcome: r.GetString(1), ErrorType: r.IsDBNull(2) ? null : r.GetString(2),
                  Started: r.GetFieldValue<DateTimeOffset>(3), Finished: r.GetFieldValue<DateTimeOffset>(4)),
            ("id", id));
        Assert.Equal(["failed", "failed", "succeeded"], attempts.Select(a => a.Outcome));
        Assert.Equal("System.InvalidOperationException", attempts[0].ErrorType);

        // Backoff, not an immediate redelivery: base 0.5 s in this run, less 20% jitter.
        Assert.True(attempts[1].Started - attempts[0].Finished >= TimeSpan.FromMilliseconds(350),
            $"the first retry started {(attempts[1].Started - attempts[0].Finished).TotalMilliseconds:0} ms after the failure");
    }

    [Fact]
    public async Task ATaskThatFailsEveryAttempt_EndsFailed_WithTheLastError()
    {
        var id = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 100 }) with { MaxAttempts = 2 });

        await WaitForFinalAsync([id]);

        var info = await GetTaskAsync(id);
        Assert.Equal(("failed", 2, "System.InvalidOperationException"), (info!.Status, info.Attempts, info.ErrorType));
        Assert.Contains("Injected failure 2", info.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(2L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id AND outcome = 'failed'", ("id", id)));
    }

    [Fact]
    public async Task AHandlerIgnoringItsTimeLimit_EndsTimedOut_AndItsCpuSlotIsFreed()
    {
        var hangs = new List<Guid>();
        for (var i = 0; i < Environment.ProcessorCount; i++)
        {
            hangs.Add(await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-hang", new { seconds = 30 }) with { TimeoutSeconds = 1, Queue = TaskQueues.Cpu }));
        }

        var after = await Fleet.Client.SubmitManyAsync(StandardRequests.Of("sha256", 4));
        await WaitForFinalAsync([.. hangs, .. after], TimeSpan.FromSeconds(25));

        foreach (var id in hangs)
        {
            var info = await GetTaskAsync(id);
            Assert.Equal(("timed_out", "Timeout"), (info!.Status, info.ErrorType));
            Assert.Contains("abandoned", info.ErrorMessage, StringComparison.Ordinal);
        }

        Assert.Equal(4L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded'", ("ids", after.ToArray())));
    }

    [Fact]
    public async Task ATaskWithoutItsOwnLimit_GetsItsTypesDefaultLimit()
    {
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-hang", new { seconds = 20 }));

        await WaitForFinalAsync([id], TimeSpan.FromSeconds(15));

        var info = await GetTaskAsync(id);
        Assert.Equal(("timed_out", "Timeout"), (info!.Status, info.ErrorType));
        Assert.Contains("time limit of 2 s", info.ErrorMessage, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARunningTask_IsCancelledByTheBroadcast_AndEndsCancelled()
    {
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("sleep", new { ms = 60_000 }));
        Assert.True(await EventuallyAsync(async () => (await GetTaskAsync(id))!.Status == "running"), "the task never started");

        // Broadcast as any sender with the right may (the API does it as fleet_api; a worker's own user may not).
        await using (var connection = await Fleet.OpenRabbitAsync())
        await using (var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true)))
        {
            var cancel = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new CancelTask { TaskId = id, Reason = "Cancelled by the test." }, System.Text.Json.JsonSerializerOptions.Web);
            await channel.BasicPublishAsync(TaskQueues.Control, "", mandatory: true, new BasicProperties { ContentType = "application/json" }, cancel);
        }

        await WaitForFinalAsync([id], TimeSpan.FromSeconds(15));

        var info = await GetTaskAsync(id);
        Assert.Equal(("cancelled", "Cancelled", "Cancelled by the test."), (info!.Status, info.ErrorType, info.ErrorMessage));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id AND outcome = 'cancelled'", ("id", id)));
    }
}
