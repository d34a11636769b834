using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// <c>fleet queue pause fleet-io</c>: the workers stop consuming the lane and its dispatch queue (their tasks in
/// flight finish), its messages stay ready in RabbitMQ, a worker started while it is paused takes none of them, the
/// dispatcher publishes nothing to it, and after <c>fleet queue resume</c> every task runs, once.
/// </summary>
public sealed class QueuePauseTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    private Dictionary<string, string?> Settings(string host)
    {
        var settings = Fleet.WorkerSettings(host, cpuConcurrency: 1);
        settings["Worker:PauseCheckSeconds"] = "1";
        return settings;
    }

    [Fact]
    public async Task APausedLane_IsConsumedByNoWorker_NotEvenANewOne_AndResumedRunsEveryTaskOnce()
    {
        await using var first = WorkerProcess.Start(Settings("pause-a"));
        try
        {
            Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync("fleet-io") == 1), "the worker never consumed fleet-io");

            // In flight when the pause arrives: these finish normally, each once.
            var inFlight = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 4).Select(_ => TaskRequest.Create("sleep", new { ms = 4000 })));
            Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'running'", ("ids", inFlight.ToArray())) == 4));

            var pause = await FleetCliAsync("queue", "pause", "fleet-io", "--reason", "broker maintenance");
            Assert.True(pause.ExitCode == 0, pause.Output);
            Assert.Matches(@"fleet-io\s+io\s+paused\s+\S+\s+broker maintenance", pause.Output);

            // The pause's stop waits for the tasks in flight, then cancels the consumers of the lane and its dispatch queue.
            Assert.True(await EventuallyAsync(async () =>
                await QueueConsumerCountAsync("fleet-io") == 0 && await QueueConsumerCountAsync("fleet-io.dispatch") == 0), "the worker kept consuming the paused lane");
            await WaitForFinalAsync(inFlight);
            Assert.Equal(4L, await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND attempts = 1", ("ids", inFlight.ToArray())));

            // Submitted while paused: plain lane tasks go to the lane's queue, a tenant's task waits for the dispatcher.
            var waiting = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 20).Select(_ => TaskRequest.Create("noop", new { })));
            var dispatched = await Fleet.Client.SubmitAsync(TaskRequest.Create("noop", new { }) with { Tenant = "acme" });
            var all = waiting.Append(dispatched).ToArray();

            // A worker started now: once it runs (its heartbeat is in fleet.workers) and has checked the pauses again,
            // nothing of the lane has started, and its messages are still ready in the broker.
            await using var second = WorkerProcess.Start(Settings("pause-b"));
            Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.workers WHERE host = 'pause-b' AND state = 'running'") == 1), "the second worker never started");
            Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync("fleet-cpu") == 2), "the second worker never consumed fleet-cpu");
            await Task.Delay(TimeSpan.FromSeconds(2));
            Assert.Equal(0L, await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND (status <> 'queued' OR started_at IS NOT NULL)", ("ids", all)));
            Assert.Equal(0u, await QueueConsumerCountAsync("fleet-io"));
            Assert.Equal((uint)waiting.Count, await QueueMessageCountAsync("fleet-io"));
            Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = @id AND published_at IS NOT NULL", ("id", dispatched)));

            var queues = await FleetCliAsync("queues");
            Assert.True(queues.ExitCode == 0, queues.Output);
            Assert.Matches(@"fleet-io\s+io\s+paused", queues.Output);
            Assert.Matches(@"fleet-cpu\s+cpu\s+active", queues.Output);

            var resume = await FleetCliAsync("queue", "resume", "fleet-io");
            Assert.True(resume.ExitCode == 0, resume.Output);
            await WaitForFinalAsync(all);
            output.WriteLine(first.Output);
            output.WriteLine(second.Output);
            Assert.Equal((long)all.Length, await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND attempts = 1", ("ids", all)));
            Assert.Equal((long)all.Length, await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids)", ("ids", all)));
            Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync("fleet-io") == 2), "the workers did not both consume fleet-io again");
            Assert.Contains("Lane fleet-io is paused (broker maintenance): this worker does not consume it", second.Output, StringComparison.Ordinal);
            Assert.Contains("Lane fleet-io resumed", first.Output, StringComparison.Ordinal);
        }
        finally
        {
            // Whatever happened, the next test finds the lane running.
            await using var cleanup = Fleet.DataSource.CreateCommand("DELETE FROM fleet.queue_pauses");
            await cleanup.ExecuteNonQueryAsync();
        }
    }

    [Fact]
    public async Task TheCli_RefusesADispatchQueueOrAnUnknownName_WithExitCode2()
    {
        var dispatch = await FleetCliAsync("queue", "pause", "fleet-io.dispatch");
        Assert.Equal(2, dispatch.ExitCode);
        Assert.Contains("pause or resume the queue fleet-io", dispatch.Output, StringComparison.Ordinal);

        var unknown = await FleetCliAsync("queue", "resume", "fleet-gpu");
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("There is no queue 'fleet-gpu'", unknown.Output, StringComparison.Ordinal);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.queue_pauses"));
    }
}
