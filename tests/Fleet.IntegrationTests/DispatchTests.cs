using System.Text.Json;
using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// The dispatcher, run by the fixture's worker host (no API): tasks with a tenant, a priority or a limited type wait in
/// PostgreSQL and are published to the lane's dispatch queue a few at a time, in priority order, tenants in turns,
/// within fleet.limits. Assertions are about order and counts, never about speed; the timings are printed.
/// </summary>
public sealed class DispatchTests(FleetFixture fleet, ITestOutputHelper output) : FleetTest(fleet)
{
    private static TaskRequest Sleep(int ms, string? tenant = null, int priority = 0) =>
        new("sleep", JsonSerializer.SerializeToElement(new { ms })) { Tenant = tenant, Priority = priority };

    [Fact]
    public async Task ATaskWithATenant_IsStoredForTheDispatcher_ThenRunsOnce()
    {
        var id = await Fleet.Client.SubmitAsync(new TaskRequest("noop", JsonSerializer.SerializeToElement(new { })) { Tenant = "acme" });

        Assert.True(await ScalarAsync<bool>("SELECT dispatched FROM fleet.tasks WHERE id = @id", ("id", id)));
        await WaitForFinalAsync([id]);
        Assert.Equal("succeeded", (await GetTaskAsync(id))!.Status);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id", ("id", id)));
        Assert.Equal("fleet-io", await ScalarAsync<string>("SELECT queue FROM fleet.tasks WHERE id = @id", ("id", id)));
    }

    [Fact]
    public async Task APriority9Task_StartsAheadOfABacklogOfPriority0Tasks()
    {
        // 3,000 plain tasks of 20 ms on 64 I/O slots: about a second of backlog; the priority task is submitted after them.
        var backlog = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 3000).Select(_ => Sleep(20)));
        var submitted = DateTimeOffset.UtcNow;
        var urgent = await Fleet.Client.SubmitAsync(Sleep(1, priority: 9));

        await WaitForFinalAsync([urgent]);
        var startedAt = await ScalarAsync<DateTime>("SELECT started_at FROM fleet.tasks WHERE id = @id", ("id", urgent));
        var backlogLeft = await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE status = 'queued' AND id = ANY(@ids)", ("ids", backlog.ToArray()));
        output.WriteLine($"priority 9 started {(new DateTimeOffset(startedAt, TimeSpan.Zero) - submitted).TotalMilliseconds:0} ms after its submit; {backlogLeft} of 3000 priority-0 tasks still queued when it ended");
        Assert.True(backlogLeft > 1000, $"the priority-9 task waited for the backlog: only {backlogLeft} of 3000 were still queued");
        await WaitForFinalAsync(backlog, TimeSpan.FromMinutes(2));
    }

    [Fact]
    public async Task ASecondTenant_StartsWithinTheFloodOfTheFirst()
    {
        var flood = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 3000).Select(_ => Sleep(20, "flood")));
        var few = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 10).Select(_ => Sleep(1, "few")));

        await WaitForFinalAsync(few);
        var floodLeft = await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE status = 'queued' AND tenant = 'flood'");
        output.WriteLine($"tenant 'few' done with {floodLeft} of 3000 'flood' tasks still queued");
        Assert.True(floodLeft > 1000, $"tenant 'few' waited behind the flood: only {floodLeft} of 3000 were left");
        await WaitForFinalAsync(flood, TimeSpan.FromMinutes(2));
    }
}
