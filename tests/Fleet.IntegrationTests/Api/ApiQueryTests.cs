using System.Net;
using System.Text.Json.Nodes;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>GET /tasks (filters, keyset pagination, the limit cap) and GET /tasks/{id}, on rows written directly.</summary>
public sealed class ApiQueryTests(FleetFixture fleet) : ApiTest(fleet)
{
    private static readonly string[] Statuses = ["queued", "running", "succeeded", "failed", "timed_out", "cancelled"];

    /// <summary>
    /// 300 tasks over every status, three types and two batches (spread independently of each other), with four
    /// rows per submitted_at value so that the id tie-breaker matters. No worker: the rows stay as written.
    /// </summary>
    private async Task<Guid[]> SeedAsync(Guid batchA, Guid batchB)
    {
        await Fleet.StopWorkerAsync();
        await using var command = Fleet.DataSource.CreateCommand("""
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority, batch_id, submitted_at, finished_at, error_type, error_message)
            SELECT gen_random_uuid(), (ARRAY['noop','sleep','sha256'])[1 + (i / 7) % 3], 'fleet-io', (@statuses)[1 + i % 6], '{}', 0, 0,
                   CASE WHEN i % 5 = 0 THEN @a WHEN i % 5 = 1 THEN @b END,
                   timestamptz '2026-11-01 00:00:00+00' + (i / 4) * interval '1 second',
                   CASE WHEN i % 6 >= 2 THEN now() END,
                   CASE WHEN i % 6 = 3 THEN 'Boom' END, CASE WHEN i % 6 = 3 THEN 'it failed' END
            FROM generate_series(0, 299) AS i
            RETURNING id
            """);
        command.Parameters.AddWithValue("statuses", Statuses);
        command.Parameters.AddWithValue("a", batchA);
        command.Parameters.AddWithValue("b", batchB);
        var ids = new List<Guid>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetGuid(0));
        }

        return [.. ids];
    }

    public static TheoryData<string, string> Filters() => new()
    {
        { "", "true" },
        { "status=failed", "status = 'failed'" },
        { "status=failed,timed_out", "status IN ('failed', 'timed_out')" },
        { "type=sleep", "type = 'sleep'" },
        { "type=sleep&status=queued,succeeded", "type = 'sleep' AND status IN ('queued', 'succeeded')" },
        { "batchId=BATCH_A", "batch_id = @a" },
        { "batchId=BATCH_A&status=running&type=noop", "batch_id = @a AND status = 'running' AND type = 'noop'" },
        { "submittedSince=2026-11-01T00:00:30Z", "submitted_at >= '2026-11-01 00:00:30+00'" },
        { "status=failed,succeeded&submittedSince=2026-11-01T01:00:10%2B01:00&submittedUntil=2026-11-01T00:00:50Z",
          "status IN ('failed', 'succeeded') AND submitted_at >= '2026-11-01 00:00:10+00' AND submitted_at < '2026-11-01 00:00:50+00'" },
        { "type=sleep&submittedUntil=2026-11-01T00:00:40Z", "type = 'sleep' AND submitted_at < '2026-11-01 00:00:40+00'" },
        { "batchId=BATCH_A&submittedSince=2026-11-01T00:00:20Z", "batch_id = @a AND submitted_at >= '2026-11-01 00:00:20+00'" },
    };

    [Theory]
    [MemberData(nameof(Filters))]
    public async Task ListTasks_WalksEveryMatchingRowOnceNewestFirst_PageByPage(string query, string where)
    {
        var batchA = Guid.NewGuid();
        await SeedAsync(batchA, Guid.NewGuid());
        var expected = await ListAsync(
            $"SELECT id FROM fleet.tasks WHERE {where} ORDER BY submitted_at DESC, id DESC", r => r.GetGuid(0), ("a", batchA));
        Assert.NotEmpty(expected);

        var seen = new List<Guid>();
        string? after = null;
        var pages = 0;
        do
        {
            var url = $"tasks?{query.Replace("BATCH_A", batchA.ToString(), StringComparison.Ordinal)}&limit=7" + (after is null ? "" : $"&after={after}");
            using var response = await Http.GetAsync(url);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var page = await ReadJsonAsync(response);
            var items = page["items"]!.AsArray();
            Assert.InRange(items.Count, 1, 7);
            seen.AddRange(items.Select(i => (Guid)i!["id"]!));
            after = (string?)page["next"];
            pages++;
        }
        while (after is not null && pages < 100);

        Assert.Equal(expected, seen);
    }

    [Fact]
    public async Task ListTasks_ItemsHaveTheDocumentedFields()
    {
        var batchA = Guid.NewGuid();
        await SeedAsync(batchA, Guid.NewGuid());

        using var response = await Http.GetAsync("tasks?status=failed&limit=10");

        var page = await ReadJsonAsync(response);
        Assert.Equal(10, page["items"]!.AsArray().Count);
        var item = page["items"]![0]!.AsObject();
        Assert.Equal(
            ["id", "type", "queue", "status", "errorType", "errorMessage", "attempts", "submittedAt", "startedAt", "finishedAt", "workerId", "batchId"],
            item.Select(p => p.Key));
        Assert.Equal("failed", (string?)item["status"]);
        Assert.Equal("Boom", (string?)item["errorType"]);
        Assert.NotNull((string?)page["next"]);
    }

    [Fact]
    public async Task ListTasks_CapsTheLimit_AndDefaultsTo100()
    {
        await Fleet.StopWorkerAsync();
        await using (var insert = Fleet.DataSource.CreateCommand("""
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority, submitted_at)
            SELECT gen_random_uuid(), 'noop', 'fleet-io', 'queued', '{}', 0, 0, now() - i * interval '1 ms' FROM generate_series(1, 1100) AS i
            """))
        {
            await insert.ExecuteNonQueryAsync();
        }

        using var capped = await Http.GetAsync("tasks?limit=5000");
        using var defaulted = await Http.GetAsync("tasks");

        Assert.Equal(1000, (await ReadJsonAsync(capped))["items"]!.AsArray().Count);
        Assert.Equal(100, (await ReadJsonAsync(defaulted))["items"]!.AsArray().Count);
    }

    [Theory]
    [InlineData("status=done")]
    [InlineData("limit=0")]
    [InlineData("limit=ten")]
    [InlineData("batchId=not-a-uuid")]
    [InlineData("after=bm90LWEtY3Vyc29y")]
    [InlineData("after=%%%")]
    [InlineData("submittedSince=2026-11-01")]
    [InlineData("submittedSince=2026-11-01T00:00:00")]
    [InlineData("submittedUntil=yesterday")]
    [InlineData("submittedSince=2026-11-01T00:00:10Z&submittedUntil=2026-11-01T00:00:10Z")]
    public async Task ListTasks_WithABadParameter_Is400(string query)
    {
        using var response = await Http.GetAsync($"tasks?{query}");

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.NotNull(problem["errors"]);
    }

    [Fact]
    public async Task GetTask_UnknownId_Is404Problem()
    {
        using var response = await Http.GetAsync($"tasks/{Guid.NewGuid()}");

        await AssertProblemAsync(response, HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task GetTask_ShowsAFailuresErrorAndItsExecution()
    {
        var id = await SubmitAsync("sha256", """{"size_kb": 0, "rounds": 1, "seed": 1}""");

        var task = await WaitForFinalThroughApiAsync(id);

        Assert.Equal("failed", (string?)task["status"]);
        Assert.Equal("ValidationError", (string?)task["errorType"]);
        Assert.False(string.IsNullOrEmpty((string?)task["errorMessage"]));
        Assert.Null(task["result"]);
        var execution = Assert.Single(task["executions"]!.AsArray())!;
        Assert.Equal("failed", (string?)execution["outcome"]);
        Assert.Equal("ValidationError", (string?)execution["errorType"]);
        Assert.IsType<JsonObject>(task["payload"]);
    }
}
