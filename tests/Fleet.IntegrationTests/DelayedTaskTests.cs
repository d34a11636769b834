using System.Globalization;
using System.Text.Json;
using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// Delayed tasks with no API running: the fleet here is the fixture's worker host only, so the due relay that
/// publishes them is the worker's. A delayed task waits in PostgreSQL, queued and unpublished; it starts at its time,
/// never before, and once. Lateness (start minus not_before, both on this machine's clock) is printed.
/// </summary>
public sealed class DelayedTaskTests(FleetFixture fleet, ITestOutputHelper output) : FleetTest(fleet)
{
    /// <summary>Generous for a loaded 2-core machine; the fleet polls every 250-500 ms, so an idle one does far better.</summary>
    private static readonly TimeSpan MaxLateness = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task ClientTask_WithNotBefore_WaitsUnpublished_ThenTheWorkersDueRelayStartsIt_AfterItsTime()
    {
        var notBefore = DateTimeOffset.UtcNow.AddSeconds(3);
        var id = await Fleet.Client.SubmitAsync(new TaskRequest("noop", JsonSerializer.SerializeToElement(new { })) { NotBefore = notBefore, Tenant = "acme" });

        // Stored at once, as delayed: queued, no publish, its time and tenant on the row; nothing in the lane.
        var (status, published, storedNotBefore, tenant) = Assert.Single(await ListAsync(
            "SELECT status, published_at IS NOT NULL, not_before, tenant FROM fleet.tasks WHERE id = @id",
            r => (r.GetString(0), r.GetBoolean(1), r.GetFieldValue<DateTimeOffset>(2), r.GetString(3)), ("id", id)));
        Assert.Equal(("queued", false, "acme"), (status, published, tenant));
        Assert.Equal(notBefore.UtcTicks / 10, storedNotBefore.UtcTicks / 10);
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-io"));

        await WaitForFinalAsync([id], TimeSpan.FromSeconds(30));
        await AssertRanOnceAfterItsTimeAsync(id, "Fleet.Client notBefore +3 s, workers only");
    }

    [Fact]
    public async Task PlainJson_WithNotBeforeAhead_IsNotRunEarly_ButAfterItsTime_ExactlyOnce()
    {
        var id = Guid.NewGuid();
        var notBefore = DateTimeOffset.UtcNow.AddSeconds(3);
        var body = $$"""{"taskId":"{{id}}","type":"noop","payload":{},"tenant":"plain","notBefore":"{{notBefore.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture)}}"}""";

        await PublishRawAsync("fleet-io", "", body);
        await WaitForFinalAsync([id], TimeSpan.FromSeconds(30));

        // The worker handed the early message to the due relay (the row keeps the message's time and tenant) instead of
        // running it; the relay published it again at its time.
        Assert.Equal(notBefore.UtcTicks / 10, (await ScalarAsync<DateTime>("SELECT not_before FROM fleet.tasks WHERE id = @id", ("id", id))).Ticks / 10);
        Assert.Equal("plain", await ScalarAsync<string>("SELECT tenant FROM fleet.tasks WHERE id = @id", ("id", id)));
        await AssertRanOnceAfterItsTimeAsync(id, "plain JSON notBefore +3 s");
    }

    [Fact]
    public async Task PlainJson_WithNotBeforePassed_RunsAtOnce_AndStoresItsTenant()
    {
        var id = Guid.NewGuid();
        await PublishRawAsync("fleet-io", "", $$"""{"taskId":"{{id}}","type":"noop","payload":{},"tenant":"late","notBefore":"2020-01-01T00:00:00Z"}""");

        await WaitForFinalAsync([id]);

        Assert.Equal("succeeded", (await GetTaskAsync(id))!.Status);
        Assert.Equal("late", await ScalarAsync<string>("SELECT tenant FROM fleet.tasks WHERE id = @id", ("id", id)));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id", ("id", id)));
    }

    [Fact]
    public async Task ClientTask_WithNotBeforeInThePast_IsPublishedAtOnce_AndKeepsItsNotBefore()
    {
        var notBefore = DateTimeOffset.UtcNow.AddMinutes(-5);
        var id = await Fleet.Client.SubmitAsync(new TaskRequest("noop", JsonSerializer.SerializeToElement(new { })) { NotBefore = notBefore });

        Assert.True(await ScalarAsync<bool>("SELECT published_at IS NOT NULL FROM fleet.tasks WHERE id = @id", ("id", id)), "a task already due was not published by its submit");
        await WaitForFinalAsync([id]);
        Assert.Equal("succeeded", (await GetTaskAsync(id))!.Status);
        Assert.Equal(notBefore.UtcTicks / 10, (await ScalarAsync<DateTime>("SELECT not_before FROM fleet.tasks WHERE id = @id", ("id", id))).Ticks / 10);
    }

    [Fact]
    public async Task ClientRequest_WithBothNotBeforeAndDelaySeconds_IsRefused_AndNothingIsStored()
    {
        var request = new TaskRequest("noop", JsonSerializer.SerializeToElement(new { })) { NotBefore = DateTimeOffset.UtcNow, DelaySeconds = 5 };

        var error = await Assert.ThrowsAsync<ArgumentException>(() => Fleet.Client.SubmitAsync(request));

        Assert.Contains("both notBefore and delaySeconds", error.Message, StringComparison.Ordinal);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }

    /// <summary>One execution, started no earlier than not_before and at most <see cref="MaxLateness"/> after it.</summary>
    private async Task AssertRanOnceAfterItsTimeAsync(Guid id, string what)
    {
        var (status, notBefore, started) = Assert.Single(await ListAsync(
            """
            SELECT t.status, t.not_before, a.started_at
            FROM fleet.tasks t JOIN fleet.task_attempts a ON a.task_id = t.id
            WHERE t.id = @id
            """,
            r => (r.GetString(0), r.GetFieldValue<DateTimeOffset>(1), r.GetFieldValue<DateTimeOffset>(2)), ("id", id)));
        var lateness = started - notBefore;
        output.WriteLine($"{what}: started {lateness.TotalMilliseconds:0} ms after its not_before");
        Assert.Equal("succeeded", status);
        Assert.True(started >= notBefore, $"started {-lateness.TotalMilliseconds:0} ms before its not_before");
        Assert.True(lateness <= MaxLateness, $"started {lateness.TotalSeconds:0.0} s after its not_before");
    }
}
