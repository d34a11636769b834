using System.Net;
using System.Text;
using Fleet.IntegrationTests.Support;
using RabbitMQ.Client;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// Bad input is answered with the right status as application/problem+json, nothing is stored or published, and
/// the API serves the next request. The worker is stopped during each case, so a published message would stay in
/// its queue and be seen.
/// </summary>
public sealed class ApiValidationTests(FleetFixture fleet) : ApiTest(fleet)
{
    private static readonly string OneMiBPayload = $$$"""{"type": "noop", "payload": {"blob": "{{{new string('x', 1024 * 1024)}}}"}}""";

    private static readonly Dictionary<string, (string Path, string Body, HttpStatusCode Status)> Cases = new()
    {
        ["malformed JSON"] = ("tasks", """{"type": "noop", """, HttpStatusCode.BadRequest),
        ["not JSON at all"] = ("tasks", "type=noop", HttpStatusCode.BadRequest),
        ["empty body"] = ("tasks", "", HttpStatusCode.BadRequest),
        ["body is an array"] = ("tasks", """[{"type": "noop"}]""", HttpStatusCode.BadRequest),
        ["body is a string"] = ("tasks", "\"noop\"", HttpStatusCode.BadRequest),
        ["missing type"] = ("tasks", """{"payload": {}}""", HttpStatusCode.BadRequest),
        ["type is a number"] = ("tasks", """{"type": 7}""", HttpStatusCode.BadRequest),
        ["payload is not an object"] = ("tasks", """{"type": "noop", "payload": [1, 2]}""", HttpStatusCode.BadRequest),
        ["timeout out of range"] = ("tasks", """{"type": "noop", "timeoutSeconds": 0}""", HttpStatusCode.BadRequest),
        ["unknown queue"] = ("tasks", """{"type": "noop", "queue": "fleet-gpu"}""", HttpStatusCode.BadRequest),
        ["unknown field"] = ("tasks", """{"type": "noop", "timeout": 5}""", HttpStatusCode.BadRequest),
        ["body over 1 MiB"] = ("tasks", OneMiBPayload, HttpStatusCode.RequestEntityTooLarge),
        ["batch body not an object"] = ("tasks/batch", """[{"type": "noop"}]""", HttpStatusCode.BadRequest),
        ["batch without tasks"] = ("tasks/batch", """{"items": []}""", HttpStatusCode.BadRequest),
        ["empty batch"] = ("tasks/batch", """{"tasks": []}""", HttpStatusCode.BadRequest),
        ["batch with one bad task among good ones"] = ("tasks/batch", """{"tasks": [{"type": "noop"}, {"payload": {}}, {"type": "noop"}]}""", HttpStatusCode.BadRequest),
        ["batch over 10,000 tasks"] = ("tasks/batch", $$"""{"tasks": [{{string.Join(",", Enumerable.Repeat("""{"type":"noop"}""", 10_001))}}]}""", HttpStatusCode.RequestEntityTooLarge),
        ["NUL in the payload"] = ("tasks", """{"type": "noop", "payload": {"text": "a\u0000b"}}""", HttpStatusCode.BadRequest),
        ["lone surrogate in the payload"] = ("tasks", """{"type": "noop", "payload": {"text": "\ud800"}}""", HttpStatusCode.BadRequest),
        ["NUL in a batch task's payload"] = ("tasks/batch", """{"tasks": [{"type": "noop"}, {"type": "noop", "payload": {"k": ["\u0000"]}}]}""", HttpStatusCode.BadRequest),
        ["batch with one task over 1 MiB"] = ("tasks/batch", $$"""{"tasks": [{"type": "noop"}, {{OneMiBPayload}}]}""", HttpStatusCode.RequestEntityTooLarge),
    };

    public static TheoryData<string> BadRequests() => [.. Cases.Keys];

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadSubmission_IsAProblemWithTheRightStatus_StoresAndPublishesNothing_AndTheApiServesOn(string badInput)
    {
        var (path, body, expected) = Cases[badInput];
        await StopWorkerAndEmptyLanesAsync();

        using var response = await Http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));

        var problem = await AssertProblemAsync(response, expected);
        Assert.False(string.IsNullOrEmpty((string?)problem["detail"]), badInput);
        await AssertNothingStoredOrPublishedAsync();
        await SubmitAsync("noop", "{}");
    }

    [Fact]
    public async Task TextPostgreSqlCannotStore_Is400_NamingTheField_AlsoUnderAnIdempotencyKey()
    {
        await StopWorkerAndEmptyLanesAsync();
        using var request = new HttpRequestMessage(HttpMethod.Post, "tasks/batch")
        {
            Content = Json("""{"tasks": [{"type": "noop"}, {"type": "noop", "payload": {"k": ["ok", "x\udc00"]}}]}"""),
        };
        request.Headers.Add("Idempotency-Key", "unstorable-text-1");

        using var response = await Http.SendAsync(request);

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        var message = (string?)Assert.Single(problem["errors"]!["tasks[1].payload.k[1]"]!.AsArray());
        Assert.Contains("lone UTF-16 surrogate (\\udc00)", message, StringComparison.Ordinal);
        await AssertNothingStoredOrPublishedAsync();
    }

    [Fact]
    public async Task UnknownType_Is400_ListingTheKnownTypes()
    {
        await StopWorkerAndEmptyLanesAsync();

        using var response = await Http.PostAsync("tasks", Json("""{"type": "sha-256", "payload": {}}"""));

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Equal("Unknown task type", (string?)problem["title"]);
        var known = problem["knownTypes"]!.AsArray().Select(t => (string)t!).ToList();
        Assert.Equal(["heat", "http-get", "noop", "sha256", "sieve", "sleep"], known);
        Assert.Contains("sha256", (string?)problem["detail"], StringComparison.Ordinal);
        Assert.Equal(["Unknown task type 'sha-256'."], problem["errors"]!["type"]!.AsArray().Select(e => (string)e!));
        await AssertNothingStoredOrPublishedAsync();
    }

    [Fact]
    public async Task UnknownTypeInABatch_NamesTheTaskThatHasIt()
    {
        using var response = await Http.PostAsync("tasks/batch", Json("""{"tasks": [{"type": "noop"}, {"type": "nope"}]}"""));

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.NotNull(problem["errors"]!["tasks[1].type"]);
        Assert.Equal(["nope"], problem["unknownTypes"]!.AsArray().Select(t => (string)t!));
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }

    [Fact]
    public async Task BatchBodyOverMaxBatchBytes_Is413_EvenWithoutContentLength()
    {
        await using var small = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?> { ["Api:MaxBatchBytes"] = "2048", ["Api:MaxTaskBytes"] = "1024" });
        using var http = small.CreateClient();
        var body = $$"""{"tasks": [{{string.Join(",", Enumerable.Repeat("""{"type":"noop"}""", 200))}}]}""";

        // Chunked transfer: no Content-Length, so the limit must hold while the body is read.
        using var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(body)));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "tasks/batch") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using var response = await http.SendAsync(request);

        await AssertProblemAsync(response, HttpStatusCode.RequestEntityTooLarge);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }

    [Fact]
    public async Task KnownTypesFromConfiguration_AreAccepted_AndCpuTypesGoToTheCpuQueue()
    {
        await StopWorkerAndEmptyLanesAsync();
        await using var api = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?>
        {
            ["Api:KnownTypes:0"] = "word-count",
            ["Api:CpuTypes:0"] = "render",
        });
        using var http = api.CreateClient();

        using var wordCount = await http.PostAsync("tasks", Json("""{"type": "word-count", "payload": {"text": "a b"}}"""));
        using var render = await http.PostAsync("tasks", Json("""{"type": "render", "payload": {}}"""));

        Assert.Equal(HttpStatusCode.Accepted, wordCount.StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, render.StatusCode);
        Assert.Equal("fleet-io", (await GetTaskAsync((Guid)(await ReadJsonAsync(wordCount))["id"]!))!.Queue);
        Assert.Equal("fleet-cpu", (await GetTaskAsync((Guid)(await ReadJsonAsync(render))["id"]!))!.Queue);
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("wrong-key-0000000000000000", null)]
    [InlineData(null, "wrong-key-0000000000000000")]
    public async Task WriteWithoutAValidKey_Is401_AndStoresNothing(string? bearer, string? apiKeyHeader)
    {
        using var anonymous = Api.CreateClient(apiKey: null);
        using var request = Request(HttpMethod.Post, "tasks", """{"type": "noop"}""", bearer, apiKeyHeader);

        using var response = await anonymous.SendAsync(request);

        await AssertProblemAsync(response, HttpStatusCode.Unauthorized);
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.ToString());
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
        using var cancel = await anonymous.SendAsync(Request(HttpMethod.Post, $"tasks/{Guid.NewGuid()}/cancel", bearer: bearer, apiKeyHeader: apiKeyHeader));
        await AssertProblemAsync(cancel, HttpStatusCode.Unauthorized);
        using var batch = await anonymous.SendAsync(Request(HttpMethod.Post, "tasks/batch", """{"tasks": [{"type": "noop"}]}""", bearer, apiKeyHeader));
        await AssertProblemAsync(batch, HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task KeyInXApiKeyHeader_IsAcceptedLikeABearerToken()
    {
        using var anonymous = Api.CreateClient(apiKey: null);

        using var response = await anonymous.SendAsync(Request(HttpMethod.Post, "tasks", """{"type": "noop"}""", apiKeyHeader: ApiHost.ApiKey));

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        await WaitForFinalAsync([(Guid)(await ReadJsonAsync(response))["id"]!]);
    }

    private async Task AssertNothingStoredOrPublishedAsync()
    {
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync();
        foreach (var queue in new[] { "fleet-cpu", "fleet-io" })
        {
            var declared = await channel.QueueDeclarePassiveAsync(queue);
            Assert.Equal(0u, declared.MessageCount);
        }
    }
}
