using System.Net;
using System.Text.Json.Nodes;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// POST /tasks/{id}/requeue and POST /tasks/requeue: a final task runs again as a new task through the submission
/// pipeline, the old row never changes, and the bulk form skips tasks that were requeued before.
/// </summary>
public sealed class ApiRequeueTests(FleetFixture fleet) : ApiTest(fleet)
{
    private const string OldRow = """
        SELECT t.status || '|' || t.attempts || '|' || coalesce(t.error_type, '') || '|' || coalesce(t.error_message, '') || '|'
               || t.finished_at::text || '|' || (SELECT count(*) FROM fleet.task_attempts a WHERE a.task_id = t.id)
        FROM fleet.tasks t WHERE t.id = @id
        """;

    [Fact]
    public async Task AFailedTask_Requeued_RunsAgainAsANewTaskOnItsOwn_TheOldRowNeverChanges_AndARetryRequeuesOnce()
    {
        // Fails at once (validation errors are not retried), each time it runs.
        using (var submit = await Http.PostAsync("tasks", Json("""{"type": "sleep", "payload": {"ms": -1}, "priority": 3, "timeoutSeconds": 7, "maxAttempts": 2, "tenant": "acme"}""")))
        {
            Assert.Equal(HttpStatusCode.Accepted, submit.StatusCode);
        }

        var old = await ScalarAsync<Guid>("SELECT id FROM fleet.tasks");
        Assert.Equal("failed", (string?)(await WaitForFinalThroughApiAsync(old))["status"]);
        var before = await ScalarAsync<string>(OldRow, ("id", old));

        using var first = Request(HttpMethod.Post, $"tasks/{old}/requeue");
        first.Headers.Add("Idempotency-Key", "requeue-1");
        using var accepted = await Http.SendAsync(first);
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var body = await ReadJsonAsync(accepted);
        var id = (Guid)body["id"]!;
        Assert.NotEqual(old, id);
        Assert.Equal(old, (Guid)body["requeuedFrom"]!);
        Assert.Equal($"/tasks/{id}", accepted.Headers.Location?.ToString());

        // A retry of the same request gets the same new task, and creates nothing.
        using var retry = Request(HttpMethod.Post, $"tasks/{old}/requeue");
        retry.Headers.Add("Idempotency-Key", "requeue-1");
        using var replayed = await Http.SendAsync(retry);
        Assert.Equal(HttpStatusCode.Accepted, replayed.StatusCode);
        Assert.Equal(id, (Guid)(await ReadJsonAsync(replayed))["id"]!);
        Assert.True(replayed.Headers.Contains("Idempotent-Replayed"));

        var task = await WaitForFinalThroughApiAsync(id);
        Assert.Equal("failed", (string?)task["status"]);
        Assert.Equal("ValidationError", (string?)task["errorType"]);
        Assert.Equal(old, (Guid)task["requeuedFrom"]!);
        Assert.Equal(("sleep", "fleet-io", 3, 7, 2, "acme", -1), ((string)task["type"]!, (string)task["queue"]!, (int)task["priority"]!,
            (int)task["timeoutSeconds"]!, (int)task["maxAttempts"]!, (string)task["tenant"]!, (int)task["payload"]!["ms"]!));
        Assert.Single(task["executions"]!.AsArray());
        Assert.Equal(2L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
        Assert.Equal(before, await ScalarAsync<string>(OldRow, ("id", old)));

        // A task of a batch that succeeded runs again on its own, outside the batch, whose counts stay what they were.
        using var batch = await Http.PostAsync("tasks/batch", Json("""{"tasks": [{"type": "noop"}, {"type": "noop"}]}"""));
        var batchBody = await ReadJsonAsync(batch);
        var member = (Guid)batchBody["ids"]![0]!;
        await WaitForFinalAsync([member, (Guid)batchBody["ids"]![1]!]);
        using var again = await Http.PostAsync($"tasks/{member}/requeue", null);
        Assert.Equal(HttpStatusCode.Accepted, again.StatusCode);
        var rerun = await WaitForFinalThroughApiAsync((Guid)(await ReadJsonAsync(again))["id"]!);
        Assert.Equal("succeeded", (string?)rerun["status"]);
        Assert.Null(rerun["batchId"]);
        using var counts = await Http.GetAsync($"batches/{batchBody["batchId"]}");
        Assert.Equal(2L, (long)(await ReadJsonAsync(counts))["total"]!);
    }

    [Fact]
    public async Task OnlyAFinalTask_CanBeRequeued_AndOnlyWithTheWriteKey()
    {
        // Delayed an hour: queued, and published by nobody while the test runs.
        using var submit = await Http.PostAsync("tasks", Json("""{"type": "noop", "delaySeconds": 3600}"""));
        var queued = (Guid)(await ReadJsonAsync(submit))["id"]!;

        using (var refused = await Http.PostAsync($"tasks/{queued}/requeue", null))
        {
            var problem = await AssertProblemAsync(refused, HttpStatusCode.Conflict);
            Assert.Equal("queued", (string?)problem["taskStatus"]);
        }

        using (var missing = await Http.PostAsync($"tasks/{Guid.NewGuid()}/requeue", null))
        {
            await AssertProblemAsync(missing, HttpStatusCode.NotFound);
        }

        using var anonymous = Api.CreateClient(apiKey: null);
        using var reader = Api.CreateClient(ApiHost.ReadKey);
        foreach (var (path, json) in new[] { ($"tasks/{queued}/requeue", "{}"), ("tasks/requeue", """{"status": "failed"}""") })
        {
            using (var unauthorized = await anonymous.PostAsync(path, Json(json)))
            {
                await AssertProblemAsync(unauthorized, HttpStatusCode.Unauthorized);
            }

            using var forbidden = await reader.PostAsync(path, Json(json));
            Assert.Equal("write", (string?)(await AssertProblemAsync(forbidden, HttpStatusCode.Forbidden))["scope"]);
        }

        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }

    [Fact]
    public async Task BulkRequeue_TakesWhatTheFilterSelects_EarliestFirst_SkipsWhatWasRequeued_AndRefusesABadFilter()
    {
        // Final rows written directly (with the worker running: nothing touches a final row).
        var batch = Guid.NewGuid();
        var t0 = new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
        var seeded = await ListAsync("""
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, priority, batch_id, submitted_at, finished_at, error_type)
            SELECT gen_random_uuid(), s.type, 'fleet-io', s.status, '{}', 1, 3, 0, CASE WHEN s.n <= 3 THEN @batch END,
                   @t0, @t0 + s.n * interval '1 minute', 'Boom'
            FROM (VALUES (1, 'noop', 'failed'), (2, 'noop', 'timed_out'), (3, 'noop', 'failed'), (4, 'noop', 'failed'),
                         (5, 'sha256', 'failed'), (6, 'noop', 'succeeded'), (90, 'noop', 'failed')) AS s(n, type, status)
            ORDER BY s.n
            RETURNING id
            """, r => r.GetGuid(0), ("batch", batch), ("t0", t0));

        // Task 4 was requeued before.
        await ScalarAsync<int>(
            "INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority, requeued_from, finished_at) VALUES (gen_random_uuid(), 'noop', 'fleet-io', 'succeeded', '{}', 1, 0, @from, now()) RETURNING 1",
            ("from", seeded[3]));

        var filter = """
            {"status": ["failed", "timed_out"], "type": "noop", "finishedSince": "2026-11-01T00:00:00Z", "finishedUntil": "2026-11-01T01:00:00+00:00"}
            """;
        var (ids, from) = await RequeueAsync(filter);
        Assert.Equal([seeded[0], seeded[1], seeded[2]], from);
        await WaitForFinalAsync(ids);
        Assert.Equal(3L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND batch_id IS NULL AND requeued_from = ANY(@from)",
            ("ids", ids.ToArray()), ("from", from.ToArray())));

        // The same request again finds nothing left; "again" takes them (and task 4) once more, up to the limit.
        Assert.Empty((await RequeueAsync(filter)).From);
        Assert.Equal([seeded[0], seeded[1]], (await RequeueAsync(filter.Replace("}", """, "again": true, "limit": 2}""", StringComparison.Ordinal))).From);
        Assert.Equal([seeded[2]], (await RequeueAsync($$"""{"status": "failed", "batchId": "{{batch}}", "again": true, "limit": 1, "finishedSince": "2026-11-01T00:02:30Z"}""")).From);

        using var bad = await Http.PostAsync("tasks/requeue", Json("""{"status": ["failed", "queued"], "limit": 0, "finishedSince": "yesterday", "batch": "x"}"""));
        var errors = (await AssertProblemAsync(bad, HttpStatusCode.BadRequest))["errors"]!.AsObject();
        Assert.Equal(["batch", "finishedSince", "limit", "status[1]"], errors.Select(e => e.Key).Order(StringComparer.Ordinal));
        using var none = await Http.PostAsync("tasks/requeue", Json("{}"));
        Assert.Contains("status", (await AssertProblemAsync(none, HttpStatusCode.BadRequest))["errors"]!.AsObject().Select(e => e.Key));
    }

    private async Task<(List<Guid> Ids, List<Guid> From)> RequeueAsync(string filter)
    {
        using var response = await Http.PostAsync("tasks/requeue", Json(filter));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var body = await ReadJsonAsync(response);
        var ids = body["ids"]!.AsArray().Select(n => (Guid)n!).ToList();
        Assert.Equal(ids.Count, (int)body["count"]!);
        return (ids, body["requeuedFrom"]!.AsArray().Select(n => (Guid)n!).ToList());
    }
}
