using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.Api;

/// <summary>POST /tasks and POST /tasks/batch against the real API, database, broker and worker.</summary>
public sealed class ApiSubmissionTests(FleetFixture fleet, ITestOutputHelper output) : ApiTest(fleet)
{
    [Fact]
    public async Task PostTask_Answers202WithIdAndStatusUrl_AndTheTaskRunsToItsResult()
    {
        using var response = await Http.PostAsync("tasks", Json("""{"type": "sha256", "payload": {"size_kb": 64, "rounds": 2, "seed": 7}}"""));

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var body = await ReadJsonAsync(response);
        var id = (Guid)body["id"]!;
        Assert.Equal($"/tasks/{id}", (string?)body["statusUrl"]);
        Assert.Equal($"/tasks/{id}", response.Headers.Location?.OriginalString);

        var task = await WaitForFinalThroughApiAsync(id);
        Assert.Equal("succeeded", (string?)task["status"]);
        Assert.Equal("fleet-cpu", (string?)task["queue"]);
        Assert.Equal(1, (int)task["attempts"]!);

        // payload and result are JSON values, not strings holding JSON.
        Assert.Equal(64, (int)task["payload"]!["size_kb"]!);
        Assert.Equal(64, ((string?)task["result"]!["digest"])!.Length);
        var execution = Assert.Single(task["executions"]!.AsArray());
        Assert.Equal("succeeded", (string?)execution!["outcome"]);
        Assert.Equal((string?)task["workerId"], (string?)execution["workerId"]);
        Assert.NotNull((string?)task["publishedAt"]);
    }

    [Fact]
    public async Task PostBatch_StoresEveryTaskUnderOneBatchId_AndTheBatchReportsCountsAndFinishedTime()
    {
        var tasks = string.Join(",", Enumerable.Range(0, 60).Select(i => i % 20 == 19
            ? """{"type": "sha256", "payload": {"size_kb": -1}}"""
            : $$$"""{"type": "noop", "payload": {"i": {{{i}}}}}"""));

        using var response = await Http.PostAsync("tasks/batch", Json($$"""{"tasks": [{{tasks}}]}"""));

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var body = await ReadJsonAsync(response);
        var batchId = (Guid)body["batchId"]!;
        var ids = body["ids"]!.AsArray().Select(i => (Guid)i!).ToList();
        Assert.Equal(60, (int)body["count"]!);
        Assert.Equal(60, ids.Distinct().Count());
        Assert.Equal($"/batches/{batchId}", (string?)body["statusUrl"]);
        Assert.Equal(60L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE batch_id = @b", ("b", batchId)));

        // Ids come back in request order: the 20th task is the first bad one.
        await WaitForFinalAsync(ids);
        Assert.Equal("failed", (await GetTaskAsync(ids[19]))!.Status);
        Assert.Equal("succeeded", (await GetTaskAsync(ids[18]))!.Status);

        using var progress = await Http.GetAsync($"batches/{batchId}");
        var batch = await ReadJsonAsync(progress);
        Assert.Equal(60, (int)batch["total"]!);
        Assert.Equal(57, (int)batch["succeeded"]!);
        Assert.Equal(3, (int)batch["failed"]!);
        Assert.Equal(0, (int)batch["queued"]! + (int)batch["running"]! + (int)batch["timedOut"]! + (int)batch["cancelled"]!);
        Assert.True((bool)batch["done"]!);
        var finishedAt = await ScalarAsync<DateTime>("SELECT max(finished_at) FROM fleet.tasks WHERE batch_id = @b", ("b", batchId));
        Assert.Equal(new DateTimeOffset(finishedAt, TimeSpan.Zero), DateTimeOffset.Parse((string)batch["finishedAt"]!, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task GetBatch_ReportsOpenTasksWithoutFinishedTime_WhileTheyWait()
    {
        await Fleet.StopWorkerAsync();
        using var response = await Http.PostAsync("tasks/batch", Json("""{"tasks": [{"type": "noop"}, {"type": "sleep", "payload": {"ms": 1}}]}"""));
        var batchId = (Guid)(await ReadJsonAsync(response))["batchId"]!;

        using var progress = await Http.GetAsync($"batches/{batchId}");
        var batch = await ReadJsonAsync(progress);

        Assert.Equal(2, (int)batch["total"]!);
        Assert.Equal(2, (int)batch["queued"]!);
        Assert.False((bool)batch["done"]!);
        Assert.Null(batch["finishedAt"]);
        using var missing = await Http.GetAsync($"batches/{Guid.NewGuid()}");
        await AssertProblemAsync(missing, HttpStatusCode.NotFound);
    }

    /// <summary>
    /// 10,000 tasks in one request are stored with a few bulk INSERTs (counted from Npgsql's own trace of the
    /// statements the API ran), published, and all run. Prints the acceptance rate; asserts no timing.
    /// </summary>
    [Fact]
    public async Task PostBatchOf10000_IsStoredWithBulkInserts_AndEveryTaskRuns()
    {
        var body = new StringBuilder("""{"tasks": [""");
        for (var i = 0; i < 10_000; i++)
        {
            body.Append(i == 0 ? "" : ",").Append("""{"type": "noop", "payload": {"seed": """).Append(i).Append("}}");
        }

        body.Append("]}");
        var statements = new List<string>();
        using var listener = NpgsqlStatementListener.Start(statements);

        // Measured with the worker stopped: on a 2-core machine an in-process worker draining the batch at the same
        // time would measure the worker as much as the API.
        await Fleet.StopWorkerAsync();
        var stopwatch = Stopwatch.StartNew();
        using var response = await Http.PostAsync("tasks/batch", Json(body.ToString()));
        stopwatch.Stop();

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var accepted = await ReadJsonAsync(response);
        var ids = accepted["ids"]!.AsArray().Select(i => (Guid)i!).ToList();
        Assert.Equal(10_000, ids.Count);
        int inserts;
        lock (statements)
        {
            inserts = statements.Count(s => s.TrimStart().StartsWith("INSERT INTO fleet.tasks", StringComparison.Ordinal));
        }

        Assert.InRange(inserts, 1, 5);
        output.WriteLine($"POST /tasks/batch, 10,000 noop tasks ({body.Length / 1024} KiB): {stopwatch.Elapsed.TotalMilliseconds:0} ms, " +
            $"{10_000 / stopwatch.Elapsed.TotalSeconds:0} tasks/s accepted; {inserts} INSERT statement(s)");

        await Fleet.StartWorkerAsync();
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(5));
        Assert.Equal(10_000L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND attempts = 1 AND published_at IS NOT NULL",
            ("ids", ids.ToArray())));
    }
}
