using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Fleet.IntegrationTests.Support;
using Fleet.Worker.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using RabbitMQ.Client;

namespace Fleet.IntegrationTests.Api;

/// <summary>POST /tasks/{id}/cancel: queued tasks never run, running tasks are cancelled by broadcast, final tasks stay.</summary>
public sealed class ApiCancelTests(FleetFixture fleet) : ApiTest(fleet)
{
    /// <summary>Cancel needs the admin scope.</summary>
    protected override string HttpKey => ApiHost.AdminKey;

    [Fact]
    public async Task CancelQueuedTask_MakesItCancelled_AndItNeverRuns()
    {
        await Fleet.StopWorkerAsync();
        var id = await SubmitAsync("sleep", """{"ms": 10}""");

        using var response = await Http.PostAsync($"tasks/{id}/cancel", null);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await ReadJsonAsync(response);
        Assert.Equal("cancelled", (string?)body["status"]);
        Assert.False((bool)body["cancelRequested"]!);

        // The message is still in the queue; the worker takes it and must skip it.
        await Fleet.StartWorkerAsync();
        var counters = Fleet.WorkerServices!.GetRequiredService<WorkerMetrics>();
        Assert.True(await EventuallyAsync(() => Task.FromResult(counters.Skipped >= 1)), "the worker never consumed the cancelled task's message");
        var task = await GetTaskAsync(id);
        Assert.Equal("cancelled", task!.Status);
        Assert.Equal(0, task.Attempts);
        Assert.NotNull(task.FinishedAt);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id", ("id", id)));
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE published_at IS NULL"));
    }

    [Fact]
    public async Task CancelRunningTask_WhoseWorkerDied_IsNotRunAgain_AndEndsCancelled()
    {
        await Fleet.StopWorkerAsync();
        var settings = Fleet.WorkerSettings("cancel-heir", cpuConcurrency: 1);
        settings["Worker:ReconcileIntervalSeconds"] = "1";
        settings["Worker:ReconcileAfterSeconds"] = "3";
        Guid id;
        await using (var doomed = WorkerProcess.Start(Fleet.WorkerSettings("cancel-doomed", cpuConcurrency: 1)))
        {
            id = await SubmitAsync("sleep", """{"ms": 60000}""");
            Assert.True(await EventuallyAsync(async () => (await GetTaskAsync(id))?.Status == "running"), "the task never started");
            await doomed.KillAsync();
        }

        // Nobody hears the broadcast; the request is kept on the row.
        using var response = await Http.PostAsync($"tasks/{id}/cancel", null);
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);

        // The message comes back to the next worker, which must not run the task again.
        await using var heir = WorkerProcess.Start(settings);
        var task = await WaitForFinalThroughApiAsync(id, TimeSpan.FromSeconds(60));

        Assert.Equal("cancelled", (string?)task["status"]);
        Assert.Equal(["abandoned"], await ListAsync(
            "SELECT outcome FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt", r => r.GetString(0), ("id", id)));
    }

    [Fact]
    public async Task CancelRunningTask_Answers202_BroadcastsCancelTask_AndTheTaskEndsCancelled()
    {
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync();

        // Declared as MassTransit declares it (fanout, durable), with a private queue standing in for a worker's.
        await channel.ExchangeDeclareAsync("fleet-control", ExchangeType.Fanout, durable: true, autoDelete: false);
        var listener = await channel.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true);
        await channel.QueueBindAsync(listener.QueueName, "fleet-control", "");
        var id = await SubmitAsync("sleep", """{"ms": 60000}""");
        Assert.True(await EventuallyAsync(async () => (await GetTaskAsync(id))?.Status == "running"), "the task never started");

        using var response = await Http.PostAsync($"tasks/{id}/cancel", null);

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var body = await ReadJsonAsync(response);
        Assert.Equal("running", (string?)body["status"]);
        Assert.True((bool)body["cancelRequested"]!);
        JsonNode? broadcast = null;
        Assert.True(await EventuallyAsync(async () =>
        {
            var message = await channel.BasicGetAsync(listener.QueueName, autoAck: true);
            if (message is not null)
            {
                broadcast = JsonNode.Parse(Encoding.UTF8.GetString(message.Body.Span));
            }

            return broadcast is not null;
        }, TimeSpan.FromSeconds(20)), "no CancelTask reached the fleet-control exchange");
        Assert.Equal(id, (Guid)broadcast!["message"]!["taskId"]!);
        Assert.Contains("urn:message:Fleet.Contracts:CancelTask", broadcast["messageType"]!.AsArray().Select(t => (string?)t));

        // The worker holding the task receives the same broadcast: its token fires and the task ends cancelled,
        // long before its 60 s sleep would have.
        await WaitForFinalAsync([id], TimeSpan.FromSeconds(20));
        var task = await GetTaskAsync(id);
        Assert.Equal(("cancelled", "Cancelled"), (task!.Status, task.ErrorType));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id AND outcome = 'cancelled'", ("id", id)));
    }

    [Fact]
    public async Task CancelFinalTask_Is409_AndChangesNothing()
    {
        var id = await SubmitAsync("noop", "{}");
        await WaitForFinalAsync([id]);
        var before = await GetTaskAsync(id);

        using var response = await Http.PostAsync($"tasks/{id}/cancel", null);

        var problem = await AssertProblemAsync(response, HttpStatusCode.Conflict);
        Assert.Equal("succeeded", (string?)problem["taskStatus"]);
        Assert.Equal(before, await GetTaskAsync(id));
    }

    [Fact]
    public async Task CancelUnknownTask_Is404()
    {
        using var response = await Http.PostAsync($"tasks/{Guid.NewGuid()}/cancel", null);

        await AssertProblemAsync(response, HttpStatusCode.NotFound);
    }
}
