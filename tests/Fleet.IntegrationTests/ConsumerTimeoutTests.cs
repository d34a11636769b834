using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// A CPU-queue message waits for a lane thread before its own time limit starts. The broker closes a channel that
/// holds one message unacknowledged past its consumer_timeout, and puts back every message of that channel, so a
/// message that waited too long goes to the back of its queue and is acknowledged instead.
/// </summary>
public sealed class ConsumerTimeoutTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    [Fact]
    public async Task ACpuMessage_WaitingForAThreadPastItsLimit_GoesToTheBackOfTheQueue_AndRunsOnce()
    {
        var settings = Fleet.WorkerSettings("long-wait", cpuConcurrency: 1);
        settings["Worker:CpuClaimAhead"] = "0"; // the wait for a place, unclaimed (the next test waits claimed)
        settings["Worker:CpuLookahead"] = "2";
        settings["Worker:MaxTimeoutSeconds"] = "5";
        settings["Worker:DefaultTimeoutSeconds"] = "5";
        settings["Worker:ConsumerTimeoutSeconds"] = "76"; // 76 - 5 - 1 (grace) - 60 = a 10 s wait at most
        await using var worker = WorkerProcess.Start(settings);

        // Each runs into its 5 s limit; the third waits behind two of them, over 10 s.
        var ids = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 3).Select(i =>
            TaskRequest.Create("heat", new { n = 512, steps = 100_000, seed = i }) with { TimeoutSeconds = 5 }));
        await WaitForFinalAsync(ids, TimeSpan.FromSeconds(60));

        output.WriteLine(worker.Output);
        Assert.Contains("sent to the back of its queue", worker.Output, StringComparison.Ordinal);
        Assert.Equal(3L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'timed_out' AND attempts = 1", ("ids", ids.ToArray())));
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-cpu_error"));
    }

    [Fact]
    public async Task ACpuTaskClaimedAhead_WaitingForAThreadPastItsLimit_IsHandedBackUncharged_AndRunsFromTheBackOfTheQueue()
    {
        var settings = Fleet.WorkerSettings("long-claim", cpuConcurrency: 1);
        settings["Worker:CpuClaimAhead"] = "1";
        settings["Worker:CpuLookahead"] = "0";
        settings["Worker:MaxTimeoutSeconds"] = "20";
        settings["Worker:DefaultTimeoutSeconds"] = "20";
        settings["Worker:ConsumerTimeoutSeconds"] = "91"; // 91 - 20 - 1 (grace) - 60 = a 10 s wait at most
        await using var worker = WorkerProcess.Start(settings);

        // The first runs into its 20 s limit; the second, claimed ahead behind it, waits past 10 s. The margin is the
        // difference, 10 s: the second's wait counts from its delivery, which on a loaded machine came more than 2 s
        // after the first started when the limit was 12 s, and the thread was free before the wait ran out.
        var first = await Fleet.Client.SubmitAsync(TaskRequest.Create("heat", new { n = 1024, steps = 100_000, seed = 1 }) with { TimeoutSeconds = 20 });
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = @id AND status = 'running'", ("id", first)) == 1));
        var second = await Fleet.Client.SubmitAsync(StandardRequests.Of("sieve", 1).Single());
        await WaitForFinalAsync([first, second], TimeSpan.FromSeconds(60));

        var attempts = await ListAsync("SELECT outcome FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt", r => r.GetString(0), ("id", second));
        output.WriteLine($"second task's executions: {string.Join(", ", attempts)}");
        output.WriteLine(worker.Output);
        Assert.Equal(["handed_back", "succeeded"], attempts);
        Assert.Contains("sent to the back of its queue", worker.Output, StringComparison.Ordinal);
        Assert.Equal("timed_out", (await GetTaskAsync(first))!.Status);
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-cpu_error"));
    }
}
