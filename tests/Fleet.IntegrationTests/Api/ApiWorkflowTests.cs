using System.Net;
using System.Text.Json.Nodes;
using Fleet.Client;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// Chains (<c>then</c>), fan-in callbacks (<c>onComplete</c>) and <c>uniqueKey</c> through the real API, the real
/// broker and real workers: the in-process worker for the contract, real worker processes killed mid-batch for the
/// callback's exactly-once promise.
/// </summary>
public sealed class ApiWorkflowTests(FleetFixture fleet) : ApiTest(fleet)
{
    protected override IDictionary<string, string?>? ApiSettings => new Dictionary<string, string?>
    {
        ["Api:KnownTypes:0"] = "fault-flaky",
        ["Api:KnownTypes:1"] = "fault-context",
        ["Workflows:BatchWatchIntervalMs"] = "100",
    };

    [Fact]
    public async Task AChain_RunsItsStepsInOrder_EachAfterThePreviousSucceeded_AndEachStepKnowsThePreviousId()
    {
        using var response = await Http.PostAsync("tasks", Json("""
            {"type": "sleep", "payload": {"ms": 300},
             "then": [{"type": "fault-context"}, {"type": "fault-context", "priority": 3}]}
            """));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var body = await ReadJsonAsync(response);
        var head = (Guid)body["id"]!;
        var steps = body["then"]!.AsArray().Select(n => (Guid)n!).ToArray();
        Assert.Equal(2, steps.Length);

        // While the first runs, the later steps wait in PostgreSQL for the step before them.
        using (var waiting = await Http.GetAsync($"tasks/{steps[1]}"))
        {
            var step = await ReadJsonAsync(waiting);
            Assert.Equal(("queued", "previous-step"), ((string?)step["status"], (string?)step["waitingFor"]));
            Assert.Null(step["notBefore"]);
            Assert.Equal(steps[0], (Guid)step["afterTaskId"]!);
        }

        var last = await WaitForFinalThroughApiAsync(steps[1]);
        Assert.Equal("succeeded", (string?)last["status"]);
        var rows = await ListAsync(
            "SELECT id, status, started_at, finished_at, after_task_id, next_task_id, result::text FROM fleet.tasks WHERE id = ANY(@ids)",
            r => (Id: r.GetGuid(0), Status: r.GetString(1), Started: r.GetFieldValue<DateTimeOffset>(2), Finished: r.GetFieldValue<DateTimeOffset>(3),
                  After: r.IsDBNull(4) ? (Guid?)null : r.GetGuid(4), Next: r.IsDBNull(5) ? (Guid?)null : r.GetGuid(5), Result: r.IsDBNull(6) ? null : r.GetString(6)),
            ("ids", new[] { head, steps[0], steps[1] }));
        var byId = rows.ToDictionary(r => r.Id);
        Assert.All(rows, r => Assert.Equal("succeeded", r.Status));
        Assert.Equal((null, steps[0]), (byId[head].After, byId[head].Next));
        Assert.Equal((head, steps[1]), (byId[steps[0]].After, byId[steps[0]].Next));
        Assert.Equal((steps[0], (Guid?)null), (byId[steps[1]].After, byId[steps[1]].Next));
        Assert.True(byId[steps[0]].Started >= byId[head].Finished, "step 1 started before the first task finished");
        Assert.True(byId[steps[1]].Started >= byId[steps[0]].Finished, "step 2 started before step 1 finished");

        // Each step's handler was told the previous task's id (and could read its result with SQL).
        var context = JsonNode.Parse(byId[steps[1]].Result!)!;
        Assert.Equal((steps[1], steps[0]), ((Guid)context["taskId"]!, (Guid)context["afterTaskId"]!));
        Assert.Equal(head, (Guid)JsonNode.Parse(byId[steps[0]].Result!)!["afterTaskId"]!);
    }

    [Fact]
    public async Task AFailedStep_StopsTheChain_TheRestEndCancelledWithTheReason()
    {
        using var response = await Http.PostAsync("tasks", Json("""
            {"type": "noop", "then": [{"type": "fault-flaky", "payload": {"key": "chain-stop", "failTimes": 9}, "maxAttempts": 1},
                                      {"type": "noop"}, {"type": "noop"}]}
            """));
        var steps = (await ReadJsonAsync(response))["then"]!.AsArray().Select(n => (Guid)n!).ToArray();

        await WaitForFinalAsync(steps);
        var rows = await ListAsync(
            "SELECT id, status, error_type, error_message, attempts FROM fleet.tasks WHERE id = ANY(@ids)",
            r => (Id: r.GetGuid(0), Status: r.GetString(1), ErrorType: r.IsDBNull(2) ? null : r.GetString(2), Message: r.IsDBNull(3) ? null : r.GetString(3), Attempts: r.GetInt32(4)),
            ("ids", steps));
        var byId = rows.ToDictionary(r => r.Id);
        Assert.Equal("failed", byId[steps[0]].Status);
        Assert.All([byId[steps[1]], byId[steps[2]]], r =>
        {
            Assert.Equal(("cancelled", "ChainStopped", 0), (r.Status, r.ErrorType, r.Attempts));
            Assert.Contains("previous step", r.Message, StringComparison.Ordinal);
        });
        Assert.Contains(steps[0].ToString(), byId[steps[1]].Message, StringComparison.Ordinal);
        Assert.Contains("ended failed", byId[steps[1]].Message, StringComparison.Ordinal);
        Assert.Contains(steps[1].ToString(), byId[steps[2]].Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CancellingAQueuedChain_CancelsItsSteps()
    {
        await Fleet.StopWorkerAsync();
        using var response = await Http.PostAsync("tasks", Json("""{"type": "noop", "then": [{"type": "noop"}, {"type": "noop"}]}"""));
        var body = await ReadJsonAsync(response);
        var head = (Guid)body["id"]!;
        var steps = body["then"]!.AsArray().Select(n => (Guid)n!).ToArray();

        using var admin = Api.CreateClient(ApiHost.AdminKey);
        using (var cancel = await admin.PostAsync($"tasks/{head}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
        }

        Assert.Equal(["cancelled", "cancelled", "cancelled"], await ListAsync(
            "SELECT status FROM fleet.tasks WHERE id = ANY(@ids) ORDER BY submitted_at, id", r => r.GetString(0), ("ids", new[] { head, steps[0], steps[1] })));
        Assert.Equal(2L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND error_type = 'ChainStopped'", ("ids", steps)));
    }

    [Fact]
    public async Task ChainInput_IsCheckedWithJsonPaths()
    {
        using var response = await Http.PostAsync("tasks", Json("""
            {"type": "noop", "uniqueKey": "k", "then": [{"type": "noop", "delaySeconds": 5, "then": [{"type": "noop"}]}, 7]}
            """));
        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        var errors = problem["errors"]!.AsObject().Select(e => e.Key).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(["then[0].delaySeconds", "then[0].then", "then[1]", "uniqueKey"], errors);

        using var empty = await Http.PostAsync("tasks/batch", Json("""{"tasks": [{"type": "noop"}], "onComplete": {"type": "noop", "notBefore": "2030-01-01T00:00:00Z"}}"""));
        var callbackProblem = await AssertProblemAsync(empty, HttpStatusCode.BadRequest);
        Assert.NotNull(callbackProblem["errors"]!["onComplete.notBefore"]);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }

    [Fact]
    public async Task AUniqueKey_ReturnsTheActiveTask_AndIsFreeAgainOnceItIsFinal()
    {
        var body = """{"type": "sleep", "payload": {"ms": 1500}, "uniqueKey": "report:2026-12"}""";
        using var first = await Http.PostAsync("tasks", Json(body));
        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        var id = (Guid)(await ReadJsonAsync(first))["id"]!;

        using (var again = await Http.PostAsync("tasks", Json(body)))
        {
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
            var answer = await ReadJsonAsync(again);
            Assert.Equal((id, true), ((Guid)answer["id"]!, (bool)answer["existing"]!));
        }

        // A batch naming the key twice and another one: both of the first resolve to the active task.
        using (var batch = await Http.PostAsync("tasks/batch", Json("""
            {"tasks": [{"type": "noop", "uniqueKey": "report:2026-12"}, {"type": "noop", "uniqueKey": "other"}, {"type": "noop", "uniqueKey": "report:2026-12"}]}
            """)))
        {
            var answer = await ReadJsonAsync(batch);
            var ids = answer["ids"]!.AsArray().Select(n => (Guid)n!).ToArray();
            Assert.Equal((id, id), (ids[0], ids[2]));
            Assert.NotEqual(id, ids[1]);
            Assert.Equal([0, 2], answer["existing"]!.AsArray().Select(n => (int)n!));
        }

        // The client says the same.
        var viaClient = await Fleet.Client.SubmitAsync(TaskRequest.Create("noop", new { }) with { UniqueKey = "report:2026-12" });
        Assert.Equal(id, viaClient);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE unique_key = 'report:2026-12'"));

        await WaitForFinalAsync([id]);
        using var later = await Http.PostAsync("tasks", Json(body));
        Assert.Equal(HttpStatusCode.Accepted, later.StatusCode);
        Assert.NotEqual(id, (Guid)(await ReadJsonAsync(later))["id"]!);
    }

    [Fact]
    public async Task ABatchsOnComplete_IsCreatedOnce_WhenEveryTaskIsFinal_WhateverTheOutcomes()
    {
        var tasks = string.Join(", ", Enumerable.Range(0, 20).Select(i => i % 5 == 0
            ? $$"""{"type": "fault-flaky", "payload": {"key": "batch-fail-{{i}}", "failTimes": 9}, "maxAttempts": 1}"""
            : """{"type": "sleep", "payload": {"ms": 100}}"""));
        using var response = await Http.PostAsync("tasks/batch", Json($$$"""{"tasks": [{{{tasks}}}], "onComplete": {"type": "fault-context"}}"""));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var batchId = (Guid)(await ReadJsonAsync(response))["batchId"]!;

        using (var status = await Http.GetAsync($"batches/{batchId}"))
        {
            var batch = await ReadJsonAsync(status);
            Assert.True((bool)batch["hasOnComplete"]!);
        }

        var callbackId = await OnCompleteTaskIdAsync(batchId);
        var callback = await WaitForFinalThroughApiAsync(callbackId);
        Assert.Equal("succeeded", (string?)callback["status"]);
        Assert.Equal(batchId, (Guid)callback["afterBatchId"]!);
        Assert.Null(callback["batchId"]);
        Assert.Equal(batchId, (Guid)callback["result"]!["afterBatchId"]!);

        // Created after the last task of the batch ended, and only once.
        Assert.True(await ScalarAsync<bool>(
            "SELECT (SELECT submitted_at FROM fleet.tasks WHERE id = @cb) >= (SELECT max(finished_at) FROM fleet.tasks WHERE batch_id = @b)",
            ("cb", callbackId), ("b", batchId)));
        Assert.Equal((4L, 16L), (
            await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE batch_id = @b AND status = 'failed'", ("b", batchId)),
            await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE batch_id = @b AND status = 'succeeded'", ("b", batchId))));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE after_batch_id = @b", ("b", batchId)));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @cb", ("cb", callbackId)));
    }

    [Fact]
    public async Task ABatchsOnComplete_HoldsWhenWorkersAreKilledMidBatch()
    {
        // Only worker processes run tasks here; one is SIGKILLed while it holds tasks of the batch.
        await Fleet.StopWorkerAsync();
        var settings = new Func<string, Dictionary<string, string?>>(host =>
        {
            var s = Fleet.WorkerSettings(host, cpuConcurrency: 1);
            s["Workflows:BatchWatchIntervalMs"] = "100";

            // Four at a time each, so that neither worker takes the whole batch before the other one consumes.
            s["Worker:IoConcurrency"] = "4";
            return s;
        });
        await using var doomed = WorkerProcess.Start(settings("chord-doomed"));
        await using var survivor = WorkerProcess.Start(settings("chord-survivor"));
        Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync("fleet-io") >= 2), "the two workers never both consumed fleet-io");

        var requests = Enumerable.Range(0, 120).Select(_ => TaskRequest.Create("sleep", new { ms = 200 })).ToList();
        var submitted = await Fleet.Client.SubmitBatchAsync(requests, TaskRequest.Create("noop", new { }));
        var batchId = submitted.BatchId!.Value;

        // Kill one worker once it has started some of the batch and the batch is not done.
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE batch_id = @b AND status = 'running' AND worker_id LIKE 'chord-doomed:%'", ("b", batchId)) > 0),
            "the doomed worker never ran a task of the batch");
        await doomed.KillAsync();
        Assert.True(await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE batch_id = @b AND status IN ('queued','running')", ("b", batchId)) > 0);

        // The survivor takes over the dead worker's messages; the API's watcher and the survivor's both look.
        var callbackId = await OnCompleteTaskIdAsync(batchId, TimeSpan.FromSeconds(90));
        await WaitForFinalAsync([callbackId], TimeSpan.FromSeconds(30));
        Assert.Equal(120L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE batch_id = @b AND status = 'succeeded'", ("b", batchId)));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE after_batch_id = @b", ("b", batchId)));
        Assert.True(await ScalarAsync<bool>(
            "SELECT (SELECT submitted_at FROM fleet.tasks WHERE id = @cb) >= (SELECT max(finished_at) FROM fleet.tasks WHERE batch_id = @b)",
            ("cb", callbackId), ("b", batchId)));
        Assert.Equal("succeeded", (await GetTaskAsync(callbackId))!.Status);
        Assert.False(survivor.HasExited, survivor.Output);
    }

    /// <summary>Polls <c>GET /batches/{id}</c> until it names its onComplete task.</summary>
    private async Task<Guid> OnCompleteTaskIdAsync(Guid batchId, TimeSpan? timeout = null)
    {
        Guid? id = null;
        Assert.True(await EventuallyAsync(async () =>
        {
            using var response = await Http.GetAsync($"batches/{batchId}");
            var batch = await ReadJsonAsync(response);
            id = batch["onCompleteTaskId"] is { } node ? (Guid)node : null;
            return id is not null;
        }, timeout), "the batch's onComplete task was never created");
        return id!.Value;
    }
}
