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

    private Task SetLimitAsync(string scope, string key, double? perSecond, int? maxRunning, int? burst = null) =>
        new Fleet.Persistence.Limits.LimitStore(Fleet.DataSource).SetAsync(scope, key, perSecond, burst, maxRunning, DateTimeOffset.UtcNow, CancellationToken.None);

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
        // Plain tasks of 20 ms on 64 I/O slots (3,000: about a second of backlog; FLEET_DISPATCH_FLOOD=10000 for the
        // issue's measurement); the priority task is submitted after them.
        var size = Math.Min(FloodSize, 20_000);
        var backlog = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, size).Select(_ => Sleep(20)));
        var submitted = DateTimeOffset.UtcNow;
        var urgent = await Fleet.Client.SubmitAsync(Sleep(1, priority: 9));

        await WaitForFinalAsync([urgent]);
        var startedAt = await ScalarAsync<DateTime>("SELECT started_at FROM fleet.tasks WHERE id = @id", ("id", urgent));
        var backlogLeft = await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE status = 'queued' AND id = ANY(@ids)", ("ids", backlog.ToArray()));
        output.WriteLine($"priority 9 started {(new DateTimeOffset(startedAt, TimeSpan.Zero) - submitted).TotalMilliseconds:0} ms after its submit; {backlogLeft} of {size} priority-0 tasks still queued when it ended");
        Assert.True(backlogLeft > size / 3, $"the priority-9 task waited for the backlog: only {backlogLeft} of {size} were still queued");
        await WaitForFinalAsync(backlog, TimeSpan.FromMinutes(size > 3000 ? 10 : 2));
    }

    /// <summary>
    /// The flood's size: 3,000 in the suite; <c>FLEET_DISPATCH_FLOOD=100000</c> runs the measurement (100,000
    /// noop-sized tasks of one tenant, then 10 of another) with the same assertions.
    /// </summary>
    private static int FloodSize =>
        int.TryParse(Environment.GetEnvironmentVariable("FLEET_DISPATCH_FLOOD"), out var n) && n >= 1000 ? n : 3000;

    [Fact]
    public async Task ASecondTenant_StartsWithinTheFloodOfTheFirst()
    {
        var size = FloodSize;
        var started = DateTimeOffset.UtcNow;
        var flood = new List<Guid>(size);
        foreach (var chunk in Enumerable.Range(0, size).Chunk(10_000))
        {
            flood.AddRange(await Fleet.Client.SubmitManyAsync(chunk.Select(_ => Sleep(size > 3000 ? 1 : 20, "flood"))));
        }

        var submitted = DateTimeOffset.UtcNow;
        var few = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 10).Select(_ => Sleep(1, "few")));

        await WaitForFinalAsync(few);
        var fewDone = DateTimeOffset.UtcNow;
        var floodLeft = await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE status = 'queued' AND tenant = 'flood'");
        var lastStart = await ScalarAsync<DateTime>("SELECT max(started_at) FROM fleet.tasks WHERE tenant = 'few'");
        output.WriteLine($"flood of {size} submitted in {(submitted - started).TotalSeconds:0.0} s; tenant 'few' (10 tasks) all started " +
                         $"{(new DateTimeOffset(lastStart, TimeSpan.Zero) - submitted).TotalMilliseconds:0} ms after their submit and ended with {floodLeft} of {size} 'flood' tasks still queued");
        Assert.True(floodLeft > size / 3, $"tenant 'few' waited behind the flood: only {floodLeft} of {size} were left");
        await WaitForFinalAsync(flood, TimeSpan.FromMinutes(size > 3000 ? 10 : 2));
        output.WriteLine($"the flood ended {(DateTimeOffset.UtcNow - fewDone).TotalSeconds:0.0} s later");
    }

    [Fact]
    public async Task BusyTenants_ShareTheFleetEvenly()
    {
        // Two tenants with 1,500 tasks each, all of the first tenant's ahead of the second's in one submission (so both
        // wait when the dispatcher first sees them; tasks submitted apart start apart by up to the dispatcher's second
        // of work): while both have work, their starts alternate, so of the first 1,500 starts each has about half.
        var ids = await Fleet.Client.SubmitManyAsync(
            Enumerable.Range(0, 1500).Select(_ => Sleep(20, "first")).Concat(Enumerable.Range(0, 1500).Select(_ => Sleep(20, "second"))));
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(2));

        var shares = await ListAsync("""
            SELECT tenant, count(*) FROM (SELECT tenant FROM fleet.tasks WHERE tenant IN ('first','second') ORDER BY started_at LIMIT 1500) s
            GROUP BY tenant ORDER BY tenant
            """, r => (r.GetString(0), r.GetInt64(1)));
        output.WriteLine("of the first 1,500 starts: " + string.Join(", ", shares.Select(s => $"{s.Item1} {s.Item2}")));
        Assert.All(shares, s => Assert.InRange(s.Item2, 600, 900));
    }

    [Fact]
    public async Task AnOldPriority0Task_AgesPastNewerPriority9Ones_SoNoneWaitsForEver()
    {
        // No worker: this test's dispatcher leads alone, and what it publishes stays in the dispatch queue.
        await Fleet.StopWorkerAsync();
        var old = await Fleet.Client.SubmitAsync(Sleep(1, "aging"));
        await ScalarAsync<int>("UPDATE fleet.tasks SET submitted_at = now() - interval '30 seconds' WHERE id = @id RETURNING 1", ("id", old));
        var urgent = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 20).Select(_ => Sleep(1, "aging", priority: 9)));

        // Ageing of one level per 3 s: the 30 s old priority-0 task counts as 9, and is older than all the others.
        // Room for 5 in the broker: only the first 5 of the dispatcher's order are published.
        await using var publisher = new RabbitMqTaskPublisher(RabbitMqAddress.Parse(Fleet.AmqpUri), "dispatch-ageing-test");
        var dispatcher = new Dispatcher(Fleet.DataSource, publisher,
            new DispatchOptions { AgingSeconds = 3, MinOutstanding = 5, MaxOutstanding = 5 }, new TaskSubmitterOptions());
        using var stop = new CancellationTokenSource();
        var leading = dispatcher.RunAsync(stop.Token);
        Assert.True(await EventuallyAsync(async () =>
            await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE tenant = 'aging' AND published_at IS NOT NULL") == 5,
            TimeSpan.FromSeconds(20)), "the dispatcher did not publish 5 tasks");
        await stop.CancelAsync();
        await leading;

        Assert.True(await ScalarAsync<bool>("SELECT published_at IS NOT NULL FROM fleet.tasks WHERE id = @id", ("id", old)),
            "the aged priority-0 task was not among the first published");
        Assert.Equal(4L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND published_at IS NOT NULL", ("ids", urgent.ToArray())));
    }

    [Fact]
    public async Task ATenantsConcurrencyLimit_HoldsAcrossTheFleet_AndTheWaitingOnesSayWhy()
    {
        await SetLimitAsync("tenant", "capped", perSecond: null, maxRunning: 3);
        await Task.Delay(TimeSpan.FromSeconds(1.5)); // the dispatcher reads fleet.limits every second
        var ids = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 30).Select(_ => Sleep(300, "capped")));

        Assert.True(await EventuallyAsync(async () =>
            await ScalarAsync<long>("SELECT count(*) FROM fleet.v_waiting_tasks WHERE tenant = 'capped' AND waiting_for = 'concurrency-limit'") > 0,
            TimeSpan.FromSeconds(10)), "no waiting task of tenant 'capped' was shown as held back by its concurrency limit");
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(1));

        // The most attempts of the tenant that overlapped in time, from their recorded starts and ends.
        var overlap = await ScalarAsync<long>("""
            SELECT max(c) FROM (
                SELECT (SELECT count(*) FROM fleet.task_attempts b JOIN fleet.tasks u ON u.id = b.task_id
                        WHERE u.tenant = 'capped' AND b.started_at <= a.started_at AND b.finished_at > a.started_at) AS c
                FROM fleet.task_attempts a JOIN fleet.tasks t ON t.id = a.task_id WHERE t.tenant = 'capped') s
            """);
        output.WriteLine($"most tasks of tenant 'capped' running at once: {overlap} (limit 3)");
        Assert.InRange(overlap, 1, 3);
        Assert.Equal(30L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE tenant = 'capped' AND status = 'succeeded'"));
    }

    [Fact]
    public async Task ATypesRateLimit_SpreadsItsStarts_ForTasksSubmittedWithoutATenant()
    {
        // 10 per second, a bucket of 1: 40 tasks cannot all start in less than about 3.9 s, whatever the fleet's speed.
        await SetLimitAsync("type", "sleep", perSecond: 10, maxRunning: null, burst: 1);
        // Both views of fleet.limits must hold the new limit: the submitter's (read every 5 s; a new FleetClient would
        // read it at once) and the leading dispatcher's (every Dispatch:LimitRefreshMs, 1 s), which neither side exposes.
        await Task.Delay(TimeSpan.FromSeconds(6));
        var ids = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 40).Select(_ => Sleep(1)));

        Assert.True(await ScalarAsync<bool>("SELECT bool_and(dispatched) FROM fleet.tasks WHERE id = ANY(@ids)", ("ids", ids.ToArray())));
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(1));
        var spread = await ScalarAsync<double>("SELECT extract(epoch FROM max(started_at) - min(started_at))::float8 FROM fleet.tasks WHERE id = ANY(@ids)", ("ids", ids.ToArray()));
        var busiestSecond = await ScalarAsync<long>("""
            SELECT max(c) FROM (SELECT (SELECT count(*) FROM fleet.tasks b WHERE b.id = ANY(@ids)
                                        AND b.started_at >= a.started_at AND b.started_at < a.started_at + interval '1 second') AS c
                                FROM fleet.tasks a WHERE a.id = ANY(@ids)) s
            """, ("ids", ids.ToArray()));
        output.WriteLine($"40 'sleep' tasks at 10/s: starts spread over {spread:0.00} s, at most {busiestSecond} in any one second");
        Assert.True(spread >= 3.0, $"40 starts at 10 per second took only {spread:0.00} s");
        Assert.InRange(busiestSecond, 1, 12);
    }

    [Fact]
    public async Task APlainJsonMessageWithATenant_InItsLane_IsHandedToTheDispatcher_AndRunsOnce()
    {
        var id = Guid.NewGuid();
        await PublishRawAsync("fleet-io", "", $$"""{"taskId":"{{id}}","type":"noop","payload":{},"tenant":"plain","priority":4}""");

        await WaitForFinalAsync([id]);
        Assert.Equal("succeeded", (await GetTaskAsync(id))!.Status);
        Assert.True(await ScalarAsync<bool>("SELECT dispatched FROM fleet.tasks WHERE id = @id", ("id", id)));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id", ("id", id)));
    }
}
