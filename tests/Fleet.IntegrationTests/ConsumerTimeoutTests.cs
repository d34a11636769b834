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
        settings["Worker:MaxTimeoutSeconds"] = "40";
        settings["Worker:DefaultTimeoutSeconds"] = "40";
        settings["Worker:ConsumerTimeoutSeconds"] = "111"; // 111 - 40 - 1 (grace) - 60 = a 10 s wait at most
        await using var worker = WorkerProcess.Start(settings);

        // This worker alone consumes the CPU lane: another consumer would take the second task and run it at once.
        Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync("fleet-cpu") == 1),
            $"fleet-cpu has {await QueueConsumerCountAsync("fleet-cpu")} consumers, not this test's worker alone");

        // The first runs into its 40 s limit; the second, claimed ahead behind it, waits past 10 s. The second's wait
        // counts from its delivery, which comes after the test has seen the first running and submitted the second:
        // on a loaded machine that took over 10 s (a 20 s limit failed once in a fresh-machine run), so the margin
        // is 30 s. The second is submitted once the first's handler runs (its first progress report), not once it is
        // `running`, which only means claimed: a fresh worker still preparing the first claimed the second, ran it on
        // the free thread and finished it before the first began (a fresh-machine run: second 05:32:40.376-.398,
        // first from .398).
        var first = await Fleet.Client.SubmitAsync(TaskRequest.Create("heat", new { n = 1024, steps = 100_000, seed = 1 }) with { TimeoutSeconds = 40 });
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = @id AND status = 'running' AND progress IS NOT NULL", ("id", first)) == 1));
        var second = await Fleet.Client.SubmitAsync(StandardRequests.Of("sieve", 1).Single());
        await WaitForFinalAsync([first, second], TimeSpan.FromSeconds(90));

        var attempts = await ListAsync("SELECT outcome FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt", r => r.GetString(0), ("id", second));
        // Who ran what when, should the second task ever run without being handed back again.
        var timeline = string.Join("; ", await ListAsync(
            "SELECT task_id = @first, attempt, outcome, worker_id, started_at, finished_at FROM fleet.task_attempts WHERE task_id IN (@first, @second) ORDER BY started_at",
            r => $"{(r.GetBoolean(0) ? "first" : "second")} #{r.GetInt32(1)} {r.GetString(2)} on {r.GetString(3)} {r.GetFieldValue<DateTimeOffset>(4):HH:mm:ss.fff}-{(r.IsDBNull(5) ? "" : r.GetFieldValue<DateTimeOffset>(5).ToString("HH:mm:ss.fff", System.Globalization.CultureInfo.InvariantCulture))}",
            ("first", first), ("second", second)));
        output.WriteLine($"second task's executions: {string.Join(", ", attempts)}; {timeline}");
        output.WriteLine(worker.Output);
        // Handed back once per 10 s wait while the first still holds the thread (how many depends on when the
        // second arrived), then run once.
        Assert.Equal("succeeded", attempts[^1]);
        Assert.True(attempts.Count > 1, $"the second task was never handed back: {timeline}; fleet-cpu consumers now {await QueueConsumerCountAsync("fleet-cpu")}");
        Assert.All(attempts[..^1], outcome => Assert.Equal("handed_back", outcome));
        Assert.Contains("sent to the back of its queue", worker.Output, StringComparison.Ordinal);
        Assert.Equal("timed_out", (await GetTaskAsync(first))!.Status);
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-cpu_error"));
    }
}
