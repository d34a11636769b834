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
}
