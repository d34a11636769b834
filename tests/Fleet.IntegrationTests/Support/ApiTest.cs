using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using RabbitMQ.Client;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// Base of the API tests: the fixture's reset (tables, queues, a running worker), then a fresh <see cref="ApiHost"/>
/// per test, stopped after it, so that no test sees another's options or background work.
/// </summary>
public abstract class ApiTest(FleetFixture fleet) : FleetTest(fleet)
{
    protected ApiHost Api { get; private set; } = null!;

    /// <summary>A client that sends <see cref="HttpKey"/>.</summary>
    protected HttpClient Http { get; private set; } = null!;

    /// <summary>The key <see cref="Http"/> sends: <see cref="ApiHost.ApiKey"/> (read and write) unless a class needs another scope.</summary>
    protected virtual string HttpKey => ApiHost.ApiKey;

    /// <summary>Settings over <see cref="ApiHost.DefaultSettings"/> for this class's hosts.</summary>
    protected virtual IDictionary<string, string?>? ApiSettings => null;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        Api = await ApiHost.StartAsync(Fleet, ApiSettings);
        Http = Api.CreateClient(HttpKey);
    }

    public override async Task DisposeAsync()
    {
        Http.Dispose();
        await Api.DisposeAsync();

        // A test that stopped the worker may leave messages in the lanes. The next test's reset starts the worker
        // before it purges, and the worker would take such a message into the next test's fresh tables.
        // With the worker running, the test's published tasks finish first, for the same reason.
        if (Fleet.WorkerServices is null)
        {
            await PurgeLanesAsync();
        }
        else
        {
            await EventuallyAsync(async () => await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE status IN ('queued', 'running') AND published_at IS NOT NULL") == 0);
        }

        await base.DisposeAsync();
    }

    /// <summary>
    /// Stops the worker, then empties the lanes: a message the worker held when it stopped goes back to its queue,
    /// so only after this is "the queue is empty" evidence that nothing was published.
    /// </summary>
    protected async Task StopWorkerAndEmptyLanesAsync()
    {
        await Fleet.StopWorkerAsync();
        await PurgeLanesAsync();
    }

    private async Task PurgeLanesAsync()
    {
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync();
        foreach (var queue in new[] { "fleet-cpu", "fleet-io" })
        {
            await channel.QueuePurgeAsync(queue);
        }
    }

    protected static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    protected static async Task<JsonNode> ReadJsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return JsonNode.Parse(text) ?? throw new InvalidOperationException("The response body is JSON null.");
    }

    /// <summary>Asserts the status and that the body is a problem details document; returns it.</summary>
    protected static async Task<JsonNode> AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonNode.Parse(text)!;
        Assert.Equal((int)status, (int)problem["status"]!);
        Assert.False(string.IsNullOrEmpty((string?)problem["title"]));
        return problem;
    }

    protected async Task<Guid> SubmitAsync(string type, string payloadJson)
    {
        using var response = await Http.PostAsync("tasks", Json($$"""{"type": "{{type}}", "payload": {{payloadJson}}}"""));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        return (Guid)(await ReadJsonAsync(response))["id"]!;
    }

    /// <summary>Polls <c>GET /tasks/{id}</c> until the task is final; returns the last body.</summary>
    protected async Task<JsonNode> WaitForFinalThroughApiAsync(Guid id, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultWait);
        JsonNode? task = null;
        while (DateTime.UtcNow < deadline)
        {
            using var response = await Http.GetAsync($"tasks/{id}");
            if (response.StatusCode == HttpStatusCode.OK)
            {
                task = await ReadJsonAsync(response);
                if ((string?)task["status"] is "succeeded" or "failed" or "timed_out" or "cancelled")
                {
                    return task;
                }
            }

            await Task.Delay(50);
        }

        Assert.Fail($"Task {id} did not become final through the API; last seen: {task?.ToJsonString()}");
        return null!;
    }

    protected static HttpRequestMessage Request(HttpMethod method, string path, string? json = null, string? bearer = null, string? apiKeyHeader = null)
    {
        var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = Json(json);
        }

        if (bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }

        if (apiKeyHeader is not null)
        {
            request.Headers.Add("X-Api-Key", apiKeyHeader);
        }

        return request;
    }
}
