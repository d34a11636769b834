using System.Net;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>The Idempotency-Key header: a retried submit returns the same task and creates nothing new.</summary>
public sealed class ApiIdempotencyTests(FleetFixture fleet) : ApiTest(fleet)
{
    /// <summary>A second caller's key, beside <see cref="ApiHost.ApiKey"/>.</summary>
    private const string OtherCallersKey = "it-key-second-caller-0a1b2c3d";

    protected override IDictionary<string, string?> ApiSettings => new Dictionary<string, string?> { ["Api:ApiKeys:1"] = OtherCallersKey };

    [Fact]
    public async Task TheSameIdempotencyKey_FromTwoCallers_GivesEachItsOwnTask_NeverTheOthers()
    {
        using var other = Api.CreateClient(OtherCallersKey);
        const string body = """{"type": "noop", "payload": {"n": 1}}""";

        var mine = await PostWithKeyAsync("tasks", body, "order-1");
        using var theirsRequest = Request(HttpMethod.Post, "tasks", body);
        theirsRequest.Headers.Add("Idempotency-Key", "order-1");
        using var theirs = await other.SendAsync(theirsRequest);
        using var theirsOtherBody = Request(HttpMethod.Post, "tasks", """{"type": "noop", "payload": {"n": 2}}""");
        theirsOtherBody.Headers.Add("Idempotency-Key", "order-1");
        using var conflict = await other.SendAsync(theirsOtherBody);

        Assert.Equal(HttpStatusCode.Accepted, theirs.StatusCode);
        Assert.False(theirs.Headers.Contains("Idempotent-Replayed"), "the second caller was given the first caller's task");
        Assert.NotEqual(mine.Id, (Guid?)(await ReadJsonAsync(theirs))["id"]);
        Assert.Equal(HttpStatusCode.Conflict, conflict.StatusCode); // the second caller's own key, reused for another body
        Assert.Equal(2L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.idempotency_keys WHERE key = 'order-1'"));
    }

    [Fact]
    public async Task SameKeyAndSameBody_ReturnTheSameTask_AndCreateNothingNew()
    {
        var key = Guid.NewGuid().ToString();

        var first = await PostWithKeyAsync("tasks", """{"type": "noop", "payload": {"n": 1}}""", key);
        var again = await PostWithKeyAsync("tasks", """{"type": "noop", "payload": {"n": 1}}""", key);
        var reformatted = await PostWithKeyAsync("tasks", "{ \"type\":\"noop\",\n  \"payload\": { \"n\": 1 } }", key);

        Assert.Equal(HttpStatusCode.Accepted, first.Status);
        Assert.Equal(HttpStatusCode.Accepted, again.Status);
        Assert.Equal(HttpStatusCode.Accepted, reformatted.Status);
        Assert.Equal(first.Id, again.Id);
        Assert.Equal(first.Id, reformatted.Id);
        Assert.False(first.Replayed);
        Assert.True(again.Replayed);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
        await WaitForFinalAsync([first.Id!.Value]);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts"));
    }

    [Fact]
    public async Task SameKeyWithADifferentBody_Is409_AndCreatesNothing()
    {
        var key = Guid.NewGuid().ToString();
        var first = await PostWithKeyAsync("tasks", """{"type": "noop", "payload": {"n": 1}}""", key);

        using var request = Request(HttpMethod.Post, "tasks", """{"type": "noop", "payload": {"n": 2}}""");
        request.Headers.Add("Idempotency-Key", key);
        using var conflict = await Http.SendAsync(request);

        Assert.Equal(HttpStatusCode.Accepted, first.Status);
        var problem = await AssertProblemAsync(conflict, HttpStatusCode.Conflict);
        Assert.Contains("Idempotency-Key", (string?)problem["detail"], StringComparison.Ordinal);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));

        // The key is bound to its endpoint too: the same key on the batch endpoint is a different request.
        var batch = await PostWithKeyAsync("tasks/batch", """{"tasks": [{"type": "noop", "payload": {"n": 1}}]}""", key);
        Assert.Equal(HttpStatusCode.Conflict, batch.Status);
        await WaitForFinalAsync([first.Id!.Value]);
    }

    [Fact]
    public async Task ConcurrentRetriesWithOneKey_AllGetTheSameTask()
    {
        var key = Guid.NewGuid().ToString();

        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ =>
            PostWithKeyAsync("tasks", """{"type": "sleep", "payload": {"ms": 10}}""", key)));

        Assert.All(results, r => Assert.Equal(HttpStatusCode.Accepted, r.Status));
        Assert.Single(results.Select(r => r.Id).Distinct());
        Assert.Single(results, r => !r.Replayed);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
        await WaitForFinalAsync([results[0].Id!.Value]);
    }

    [Fact]
    public async Task BatchRetriedWithItsKey_ReturnsTheSameBatchAndIds()
    {
        var key = Guid.NewGuid().ToString();
        const string body = """{"tasks": [{"type": "noop"}, {"type": "sleep", "payload": {"ms": 5}}, {"type": "noop"}]}""";

        using var first = await SendWithKeyAsync("tasks/batch", body, key);
        using var again = await SendWithKeyAsync("tasks/batch", body, key);

        var a = await ReadJsonAsync(first);
        var b = await ReadJsonAsync(again);
        Assert.Equal((Guid)a["batchId"]!, (Guid)b["batchId"]!);
        Assert.Equal(a["ids"]!.ToJsonString(), b["ids"]!.ToJsonString());
        Assert.Equal("true", again.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(3L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
        await WaitForFinalAsync([.. a["ids"]!.AsArray().Select(i => (Guid)i!)]);
    }

    [Fact]
    public async Task ABatchWithChainsAndAUniqueKey_RetriedWithItsKey_AnswersTheSameIdsStepsAndHolder()
    {
        // An active task holding the uniqueKey that the batch's second task names.
        using (var held = await Http.PostAsync("tasks", Json("""{"type": "sleep", "payload": {"ms": 3000}, "uniqueKey": "report-7"}""")))
        {
            Assert.Equal(HttpStatusCode.Accepted, held.StatusCode);
        }

        var holder = await ScalarAsync<Guid>("SELECT id FROM fleet.tasks WHERE unique_key = 'report-7'");
        var key = Guid.NewGuid().ToString();
        const string body = """
            {"tasks": [{"type": "noop", "then": [{"type": "noop"}, {"type": "noop"}]},
                       {"type": "sleep", "payload": {"ms": 3000}, "uniqueKey": "report-7"},
                       {"type": "noop"}]}
            """;

        using var first = await SendWithKeyAsync("tasks/batch", body, key);
        using var again = await SendWithKeyAsync("tasks/batch", body, key);

        var a = await ReadJsonAsync(first);
        var b = await ReadJsonAsync(again);
        Assert.Equal("true", again.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(3, a["ids"]!.AsArray().Count);
        Assert.Equal(holder, (Guid)a["ids"]![1]!);
        Assert.Equal(2, a["then"]![0]!.AsArray().Count);
        Assert.Equal(a["ids"]!.ToJsonString(), b["ids"]!.ToJsonString());
        Assert.Equal(a["then"]!.ToJsonString(), b["then"]!.ToJsonString());

        // Nothing new: the holder, the chain's head and two steps, the plain task.
        Assert.Equal(5L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
        await WaitForFinalAsync([.. a["ids"]!.AsArray().Select(i => (Guid)i!), .. a["then"]![0]!.AsArray().Select(i => (Guid)i!)]);
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    public async Task InvalidKey_Is400(string key)
    {
        using var request = Request(HttpMethod.Post, "tasks", """{"type": "noop"}""");
        request.Headers.TryAddWithoutValidation("Idempotency-Key", key);

        using var response = await Http.SendAsync(request);

        await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }

    private async Task<(HttpStatusCode Status, Guid? Id, bool Replayed)> PostWithKeyAsync(string path, string body, string key)
    {
        using var response = await SendWithKeyAsync(path, body, key);
        if (response.StatusCode != HttpStatusCode.Accepted)
        {
            return (response.StatusCode, null, false);
        }

        var json = await ReadJsonAsync(response);
        return (response.StatusCode, (Guid?)json["id"], response.Headers.Contains("Idempotent-Replayed"));
    }

    private async Task<HttpResponseMessage> SendWithKeyAsync(string path, string body, string key)
    {
        using var request = Request(HttpMethod.Post, path, body);
        request.Headers.Add("Idempotency-Key", key);
        return await Http.SendAsync(request);
    }
}
