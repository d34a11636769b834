using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using Fleet.Api;
using Fleet.Api.Queries;
using Fleet.Api.Submission;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.Tasks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>The API's pure parts: options validation, the list cursor, and reading submitted JSON. No server.</summary>
public sealed class ApiInputTests
{
    private const string Key = "unit-test-key-0123456789";

    [Fact]
    public void ApiOptions_WithOneLongKey_AreValid()
    {
        Assert.Empty(Validate(new ApiOptions { ApiKeys = [Key] }));
    }

    [Theory]
    [InlineData(null, "Api:ApiKeys")]
    [InlineData("short", "Api:ApiKeys:0")]
    public void ApiOptions_WithoutAUsableKey_FailNamingTheSetting_WithoutTheKey(string? key, string named)
    {
        var errors = Validate(new ApiOptions { ApiKeys = key is null ? [] : [key] });

        var error = Assert.Single(errors);
        Assert.Contains(named, error, StringComparison.Ordinal);
        Assert.DoesNotContain("short", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ApiOptions_ReadKeysAndAdminKeys_FollowTheSameRules_WithoutEchoingAKey()
    {
        const string shortKey = "tiny-key";
        Assert.Empty(Validate(new ApiOptions { ApiKeys = [Key], ReadKeys = ["unit-read-key-012345"], AdminKeys = ["unit-admin-key-01234"] }));
        Assert.Empty(Validate(new ApiOptions { AdminKeys = ["unit-admin-key-01234"] }));

        var errors = Validate(new ApiOptions { ApiKeys = [Key], ReadKeys = [shortKey], AdminKeys = ["", "unit-admin-key-01234"] });

        Assert.Equal(2, errors.Count);
        Assert.Contains(errors, e => e.Contains("Api:ReadKeys:0 must be at least 16", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Api:AdminKeys:0 must be at least 16", StringComparison.Ordinal));
        Assert.DoesNotContain(errors, e => e.Contains(shortKey, StringComparison.Ordinal));
    }

    [Fact]
    public void ApiOptions_AKeyInTwoLists_IsRefused_NamingBothPlaces_WithoutTheKey()
    {
        var errors = Validate(new ApiOptions { ApiKeys = [Key], ReadKeys = [" " + Key] });

        var error = Assert.Single(errors);
        Assert.Contains("Api:ApiKeys:0", error, StringComparison.Ordinal);
        Assert.Contains("Api:ReadKeys:0", error, StringComparison.Ordinal);
        Assert.DoesNotContain(Key, error, StringComparison.Ordinal);
    }

    [Fact]
    public void ApiOptions_ReadsNeedAKeyUnlessSaidOtherwise()
    {
        Assert.True(new ApiOptions().ReadsRequireKey);
    }

    [Fact]
    public void ApiOptions_RelayNotLongerThanThePublishTimeout_AreRefused()
    {
        var errors = Validate(new ApiOptions { ApiKeys = [Key], RelayAfterSeconds = 10, PublishTimeoutSeconds = 10 });

        Assert.Contains(errors, e => e.Contains("Api:RelayAfterSeconds", StringComparison.Ordinal));
    }

    [Fact]
    public void ApiOptions_DefaultPageOverTheCap_AreRefused()
    {
        var errors = Validate(new ApiOptions { ApiKeys = [Key], ListLimitDefault = 2000, ListLimitMax = 1000 });

        Assert.Contains(errors, e => e.Contains("Api:ListLimitDefault", StringComparison.Ordinal));
    }

    [Fact]
    public void TaskCursor_RoundTripsToTheMicrosecond()
    {
        var cursor = new TaskCursor(new DateTimeOffset(2026, 11, 30, 4, 10, 2, TimeSpan.Zero).AddTicks(798_680), Guid.NewGuid());

        Assert.True(TaskCursor.TryDecode(cursor.Encode(), out var decoded));
        Assert.Equal(cursor, decoded);
    }

    [Theory]
    [InlineData("")]
    [InlineData("not base64url!")]
    [InlineData("MTo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5Om5vdC1hLWd1aWQ")]
    [InlineData("Mjo1OjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw")]
    public void TaskCursor_RejectsAnythingItDidNotWrite(string value)
    {
        Assert.False(TaskCursor.TryDecode(value, out _));
    }

    [Fact]
    public void ReadTask_DefaultsThePayload_AndRoutesByLane()
    {
        var reader = Reader();

        var (cpu, cpuError) = reader.ReadTask(Json("""{"type": "sha256", "payload": {"size_kb": 1}}"""));
        var (io, ioError) = reader.ReadTask(Json("""{"type": "noop"}"""));
        var (own, ownError) = reader.ReadTask(Json("""{"type": "render", "queue": "fleet-io", "timeoutSeconds": 30, "maxAttempts": 2}"""));

        Assert.Null(cpuError);
        Assert.Null(ioError);
        Assert.Null(ownError);
        Assert.Equal("fleet-cpu", cpu!.Queue);
        Assert.Equal("fleet-io", io!.Queue);
        Assert.Equal(JsonValueKind.Object, io.Payload.ValueKind);
        Assert.Equal("fleet-io", own!.Queue);
        Assert.Equal(30, own.TimeoutSeconds);
        Assert.Equal(2, own.MaxAttempts);
    }

    [Fact]
    public void ReadTask_AcceptsADeclaredQueue_AndRefusesOthersNamingTheAcceptedOnes()
    {
        var reader = Reader();

        var (group, groupError) = reader.ReadTask(Json("""{"type": "noop", "queue": "reports"}"""));
        Assert.Null(groupError);
        Assert.Equal("reports", group!.Queue);

        foreach (var queue in new[] { "\"elsewhere\"", "\"reports.dispatch\"", "\"fleet-control\"", "\"Reports\"", "7" })
        {
            var (_, error) = reader.ReadTask(Json($$"""{"type": "noop", "queue": {{queue}}}"""));
            var errors = Assert.IsType<ValidationProblem>(error).ProblemDetails.Errors;
            Assert.Equal(["Must be one of fleet-cpu, fleet-io, reports (the built-in lanes and the queues declared in Api:Queues)."], errors["queue"]);
        }
    }

    [Theory]
    [InlineData("""{"type": "noop", "payload": "x"}""", StatusCodes.Status400BadRequest)]
    [InlineData("""{"type": "noop", "priority": 1.5}""", StatusCodes.Status400BadRequest)]
    [InlineData("""{"type": "noop", "maxAttempts": 0}""", StatusCodes.Status400BadRequest)]
    [InlineData("""{"type": "noop", "timeoutSeconds": 0}""", StatusCodes.Status400BadRequest)]
    [InlineData("""{"type": "noop", "timeoutSeconds": 1501}""", StatusCodes.Status400BadRequest)]
    [InlineData("""{"type": "noop", "timeoutSeconds": 86400}""", StatusCodes.Status400BadRequest)]
    [InlineData("""{"type": ""}""", StatusCodes.Status400BadRequest)]
    [InlineData("""{"type": "nope"}""", StatusCodes.Status400BadRequest)]
    public void ReadTask_RefusesBadFields(string body, int status)
    {
        var (request, error) = Reader().ReadTask(Json(body));

        Assert.Null(request);
        Assert.Equal(status, Assert.IsAssignableFrom<IStatusCodeHttpResult>(error).StatusCode);
    }

    [Theory]
    [InlineData("""{"type": "noop", "payload": {"text": "a\u0000b"}}""", "payload.text", "NUL")]
    [InlineData("""{"type": "noop", "payload": {"list": [1, {"deep": ["x", "\ud800"]}]}}""", "payload.list[1].deep[1]", "lone UTF-16 surrogate (\\ud800)")]
    [InlineData("""{"type": "noop", "payload": {"k\u0000": 1}}""", "payload.k\\u0000", "property name contains a NUL")]
    [InlineData("""{"type": "noop", "payload": {"end": "x\udc00"}}""", "payload.end", "lone UTF-16 surrogate (\\udc00)")]
    public void ReadTask_RefusesTextPostgreSqlCannotStore_NamingTheField(string body, string field, string says)
    {
        var (request, error) = Reader().ReadTask(Json(body));

        Assert.Null(request);
        var problem = Assert.IsType<ValidationProblem>(error).ProblemDetails;
        Assert.Equal(StatusCodes.Status400BadRequest, problem.Status);
        var message = Assert.Single(Assert.Contains(field, problem.Errors));
        Assert.Contains(says, message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"type": "noop", "payload": {"emoji": "\ud83d\ude00", "escaped": "\u00e9\u000a"}}""")]
    [InlineData("""{"type": "noop", "payload": {"plain": "no escapes at all"}}""")]
    [InlineData("""{"type": "noop", "payload": {"backslash then u0000": "\\u0000", "pair in a key \ud83d\ude00": 1}}""")]
    public void ReadTask_AcceptsEscapesPostgreSqlCanStore(string body)
    {
        var (request, error) = Reader().ReadTask(Json(body));

        Assert.Null(error);
        Assert.NotNull(request);
    }

    [Fact]
    public void ReadTask_AcceptsTheLargestTimeLimitAWorkerRuns_AndNamesItWhenRefusingMore()
    {
        var (longest, longestError) = Reader().ReadTask(Json($$"""{"type": "noop", "timeoutSeconds": {{TaskLimits.MaxTimeoutSeconds}}}"""));
        var (_, tooLong) = Reader().ReadTask(Json($$"""{"type": "noop", "timeoutSeconds": {{TaskLimits.MaxTimeoutSeconds + 1}}}"""));

        Assert.Null(longestError);
        Assert.Equal(1_500, longest!.TimeoutSeconds);
        var errors = Assert.IsType<ValidationProblem>(tooLong).ProblemDetails.Errors;
        Assert.Equal(["Must be an integer from 1 to 1500."], errors["timeoutSeconds"]);
    }

    [Fact]
    public void RequestHash_IgnoresWhitespace_ButNotTheBodyOrTheEndpoint()
    {
        var compact = TaskRequestReader.RequestHash("POST /tasks", Json("""{"type":"noop","payload":{"n":1}}"""));

        Assert.Equal(compact, TaskRequestReader.RequestHash("POST /tasks", Json("{ \"type\": \"noop\",\n \"payload\": { \"n\": 1 } }")));
        Assert.NotEqual(compact, TaskRequestReader.RequestHash("POST /tasks", Json("""{"type":"noop","payload":{"n":2}}""")));
        Assert.NotEqual(compact, TaskRequestReader.RequestHash("POST /tasks/batch", Json("""{"type":"noop","payload":{"n":1}}""")));
    }

    internal static TaskRequestReader Reader()
    {
        var services = new ServiceCollection().AddFleetTasks().BuildServiceProvider();
        var options = Options.Create(new ApiOptions { ApiKeys = [Key], CpuTypes = ["render"], Queues = { ["reports"] = "cpu" } });
        return new TaskRequestReader(new TaskTypeCatalog(services.GetRequiredService<TaskHandlerRegistry>(), options), QueueCatalog.Of(options.Value.Queues), options);
    }

    internal static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement.Clone();

    private static List<string> Validate(ApiOptions options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return [.. results.Select(r => r.ErrorMessage ?? "")];
    }
}
