using System.Net;
using System.Text.RegularExpressions;
using Fleet.IntegrationTests.Support;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// API keys and their scopes on the real API: read (Api:ReadKeys) &lt; write (Api:ApiKeys) &lt; admin (Api:AdminKeys).
/// The routes come from the host's own route table, so a route added later is covered without editing this class.
/// </summary>
public sealed partial class ApiScopeTests(FleetFixture fleet) : ApiTest(fleet)
{
    /// <summary>Open whatever the keys: readiness, liveness and the OpenAPI document.</summary>
    private static readonly string[] OpenRoutes = ["/health", "/alive", "/openapi/{documentName}.json"];

    [Fact]
    public async Task EveryReadRoute_IsRefusedWithoutAKey_AndServedWithAReadKey()
    {
        var reads = Routes(Api, HttpMethods.Get).Where(r => !OpenRoutes.Contains(r)).ToList();
        Assert.Superset(new HashSet<string> { "/tasks", "/tasks/{id:guid}", "/batches/{id:guid}", "/workers", "/stats", "/metrics", "/limits", "/limits/{scope}/{key}" }, reads.ToHashSet());
        using var anonymous = Api.CreateClient(apiKey: null);
        using var wrong = Api.CreateClient("not-a-key-of-this-api-0000");
        using var reader = Api.CreateClient(ApiHost.ReadKey);

        foreach (var route in reads)
        {
            var path = Concrete(route);
            using (var refused = await anonymous.GetAsync(path))
            {
                var problem = await AssertProblemAsync(refused, HttpStatusCode.Unauthorized);
                Assert.Contains("needs an API key", (string?)problem["detail"], StringComparison.Ordinal);
            }

            using (var refused = await wrong.GetAsync(path))
            {
                await AssertProblemAsync(refused, HttpStatusCode.Unauthorized);
            }

            using var served = await reader.GetAsync(path);
            Assert.True(served.StatusCode is HttpStatusCode.OK or HttpStatusCode.NotFound, $"GET {path} with a read key: {(int)served.StatusCode}");
        }

        foreach (var route in OpenRoutes)
        {
            using var open = await anonymous.GetAsync(Concrete(route));
            Assert.True(open.StatusCode is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, $"GET {route} without a key: {(int)open.StatusCode}");
        }

        using var dashboard = await anonymous.GetAsync("js/app.js");
        Assert.Equal(HttpStatusCode.OK, dashboard.StatusCode);
    }

    [Fact]
    public async Task AReadKey_Reads_ButIsRefusedEveryWrite_With403NamingTheScope()
    {
        await StopWorkerAndEmptyLanesAsync();
        var id = await SubmitAsync("noop", "{}");
        using var reader = Api.CreateClient(ApiHost.ReadKey);

        using (var read = await reader.GetAsync($"tasks/{id}"))
        {
            Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        }

        using (var submit = await reader.PostAsync("tasks", Json("""{"type": "noop"}""")))
        {
            await AssertForbiddenAsync(submit, "write");
        }

        using (var batch = await reader.PostAsync("tasks/batch", Json("""{"tasks": [{"type": "noop"}]}""")))
        {
            await AssertForbiddenAsync(batch, "write");
        }

        using (var cancel = await reader.PostAsync($"tasks/{id}/cancel", null))
        {
            await AssertForbiddenAsync(cancel, "admin");
        }

        // Every other route that is not a GET is a write of some kind: a read key gets none of them.
        var writes = Writes(Api);
        Assert.Superset(new HashSet<(string, string)> { ("PUT", "/limits/{scope}/{key}"), ("DELETE", "/limits/{scope}/{key}") }, writes.ToHashSet());
        foreach (var (method, route) in writes)
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), Concrete(route)) { Content = Json("{}") };
            using var refused = await reader.SendAsync(request);
            Assert.True(refused.StatusCode == HttpStatusCode.Forbidden, $"{method} {route} with a read key: {(int)refused.StatusCode}");
        }

        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.limits"));
        Assert.Equal("queued", (await GetTaskAsync(id))!.Status);
    }

    [Fact]
    public async Task AWriteKey_Submits_ButIsRefusedCancel_AndAnAdminKeyCancels()
    {
        await StopWorkerAndEmptyLanesAsync();
        using var writer = Api.CreateClient(ApiHost.ApiKey);
        using var admin = Api.CreateClient(ApiHost.AdminKey);

        var id = await SubmitAsync("noop", "{}");
        using (var refused = await writer.PostAsync($"tasks/{id}/cancel", null))
        {
            await AssertForbiddenAsync(refused, "admin");
        }

        Assert.Equal("queued", (await GetTaskAsync(id))!.Status);
        using (var cancelled = await admin.PostAsync($"tasks/{id}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.OK, cancelled.StatusCode);
        }

        Assert.Equal("cancelled", (await GetTaskAsync(id))!.Status);

        // The admin key holds the lower scopes too.
        using (var submitted = await admin.PostAsync("tasks", Json("""{"type": "noop"}""")))
        {
            Assert.Equal(HttpStatusCode.Accepted, submitted.StatusCode);
        }

        using var read = await admin.GetAsync("stats");
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
    }

    [Fact]
    public async Task ReadsRequireKeyFalse_OpensEveryRead_ButNoWrite()
    {
        await using var opened = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?> { ["Api:ReadsRequireKey"] = "false" });
        using var anonymous = opened.CreateClient(apiKey: null);

        foreach (var route in Routes(opened, HttpMethods.Get))
        {
            using var open = await anonymous.GetAsync(Concrete(route));
            Assert.True(
                open.StatusCode is HttpStatusCode.OK or HttpStatusCode.NotFound or HttpStatusCode.ServiceUnavailable,
                $"GET {route} without a key: {(int)open.StatusCode}");
        }

        using (var submit = await anonymous.PostAsync("tasks", Json("""{"type": "noop"}""")))
        {
            await AssertProblemAsync(submit, HttpStatusCode.Unauthorized);
        }

        using (var cancel = await anonymous.PostAsync($"tasks/{Guid.NewGuid()}/cancel", null))
        {
            await AssertProblemAsync(cancel, HttpStatusCode.Unauthorized);
        }

        using var reader = opened.CreateClient(ApiHost.ReadKey);
        using var forbidden = await reader.PostAsync("tasks", Json("""{"type": "noop"}"""));
        await AssertForbiddenAsync(forbidden, "write");
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }

    private static async Task AssertForbiddenAsync(HttpResponseMessage response, string scope)
    {
        var problem = await AssertProblemAsync(response, HttpStatusCode.Forbidden);
        Assert.Equal(scope, (string?)problem["scope"]);
        Assert.Contains($"scope '{scope}'", (string?)problem["detail"], StringComparison.Ordinal);
    }

    /// <summary>
    /// The route templates the host maps for any of <paramref name="methods"/>. An endpoint that lists no methods
    /// (health checks, <c>/metrics</c>) answers any method, and counts as a GET.
    /// </summary>
    private static List<string> Routes(ApiHost host, params string[] methods) =>
        [.. host.Endpoints
            .Where(e => e.Metadata.GetMetadata<IHttpMethodMetadata>() is { } m ? m.HttpMethods.Any(methods.Contains) : methods.Contains(HttpMethods.Get))
            .Select(e => "/" + (e.RoutePattern.RawText ?? "").TrimStart('/'))
            .Distinct()];

    /// <summary>Every route template with each of its methods that is not a read (POST, PUT, PATCH, DELETE).</summary>
    private static List<(string Method, string Template)> Writes(ApiHost host) =>
        [.. host.Endpoints
            .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? [])
                .Where(m => m is "POST" or "PUT" or "PATCH" or "DELETE")
                .Select(m => (m, "/" + (e.RoutePattern.RawText ?? "").TrimStart('/'))))
            .Distinct()];

    /// <summary>A request path for a template: a fresh UUID for each id, v1 for the OpenAPI document's name.</summary>
    private static string Concrete(string template) =>
        Parameter().Replace(template, m => m.Value.StartsWith("{documentName", StringComparison.Ordinal) ? "v1" : Guid.NewGuid().ToString()).TrimStart('/');

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex Parameter();
}
