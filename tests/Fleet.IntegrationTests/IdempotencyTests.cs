using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Fleet.Worker.Telemetry;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.IntegrationTests;

/// <summary>At-least-once delivery, exactly one result: the same task id never runs again once final.</summary>
public sealed class IdempotencyTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task SameTaskIdDeliveredAgainAfterItIsFinal_IsAcknowledgedWithoutRunning()
    {
        var counters = Fleet.WorkerServices!.GetRequiredService<WorkerMetrics>();
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("sha256", new { size_kb = 64, rounds = 2, seed = 1 }));
        var first = await Fleet.Client.WaitAsync(id, DefaultWait);
        Assert.Equal("succeeded", first!.Status);
        var skippedBefore = counters.Skipped;

        // The same id again, twice, as a second producer (or a relay republish) would send it.
        var again = await Fleet.Client.SubmitManyAsync([
            new TaskRequest("sha256", JsonSerializer.SerializeToElement(new { size_kb = 64, rounds = 2, seed = 1 })) { TaskId = id },
            new TaskRequest("sha256", JsonSerializer.SerializeToElement(new { size_kb = 64, rounds = 2, seed = 1 })) { TaskId = id },
        ]);

        Assert.All(again, a => Assert.Equal(id, a));
        Assert.True(await EventuallyAsync(() => Task.FromResult(counters.Skipped >= skippedBefore + 2)), "the duplicate deliveries were not consumed");
        var after = await GetTaskAsync(id);
        Assert.Equal(first.Result, after!.Result);
        Assert.Equal(first.FinishedAt, after.FinishedAt);
        Assert.Equal(1, after.Attempts);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id", ("id", id)));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = @id", ("id", id)));
    }

    [Fact]
    public async Task SameTaskIdPublishedTwiceAtOnce_YieldsOneFinalRowAndOneExecution()
    {
        var id = Guid.NewGuid();
        var message = new ProcessTask { TaskId = id, Type = "sleep", Payload = JsonSerializer.SerializeToElement(new { ms = 300 }) };
        var bus = Fleet.WorkerServices!.GetRequiredService<IBus>();
        // The lane's exchange, as producers publish: a queue: address would have MassTransit declare the lane as a
        // classic queue, which a deployment with quorum lanes refuses (406).
        var endpoint = await bus.GetSendEndpoint(new Uri("exchange:fleet-io"));

        await Task.WhenAll(endpoint.Send(message), endpoint.Send(message));
        await WaitForFinalAsync([id]);

        // The second copy is either refused while the first runs (fresh duplicate of a running task) or skipped once
        // the first is final; either way exactly one execution and one result.
        var counters = Fleet.WorkerServices!.GetRequiredService<WorkerMetrics>();
        Assert.True(await EventuallyAsync(() => Task.FromResult(counters.Skipped >= 1)), "the second copy was never consumed");
        Assert.Equal("succeeded", (await GetTaskAsync(id))!.Status);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id", ("id", id)));
    }
}
