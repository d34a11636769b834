using System.Globalization;
using System.Text.Json;
using Fleet.Api.Queries;
using Fleet.Cli;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.Persistence.Entities;
using Fleet.Worker.MessagePath;
using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;

namespace Fleet.UnitTests;

/// <summary>
/// Delayed tasks' pure parts, no server: how the API reads <c>notBefore</c>, <c>delaySeconds</c> and <c>tenant</c>
/// (and which JSON path a refusal names), what the submitter refuses before it touches the database, the CLI's
/// <c>--delay</c> and <c>--at</c>, a worker's due time for a plain JSON message, and <c>waitingFor</c>.
/// </summary>
public sealed class DelayedTaskInputTests
{
    [Fact]
    public void ReadTask_NotBeforeWithAnOffset_IsStoredInUtc_WithTheTenant()
    {
        var local = DateTimeOffset.UtcNow.AddDays(1).ToOffset(TimeSpan.FromHours(-5));
        var text = local.ToString("yyyy-MM-dd'T'HH:mm:ss.fffzzz", CultureInfo.InvariantCulture);

        var (request, error) = ApiInputTests.Reader().ReadTask(ApiInputTests.Json($$"""{"type": "noop", "notBefore": "{{text}}", "tenant": "acme"}"""));

        Assert.Null(error);
        Assert.Equal(TimeSpan.Zero, request!.NotBefore!.Value.Offset);
        Assert.Equal(DateTimeOffset.Parse(text, CultureInfo.InvariantCulture), request.NotBefore.Value);
        Assert.Equal("acme", request.Tenant);
        Assert.Null(request.DelaySeconds);
    }

    [Fact]
    public void ReadTask_DelaySeconds_MayHaveAFraction_AndTheLongestIs366Days()
    {
        var (request, error) = ApiInputTests.Reader().ReadTask(ApiInputTests.Json("""{"type": "noop", "delaySeconds": 1.5}"""));
        var (longest, longestError) = ApiInputTests.Reader().ReadTask(ApiInputTests.Json($$"""{"type": "noop", "delaySeconds": {{TaskLimits.MaxDelaySeconds}}}"""));

        Assert.Null(error);
        Assert.Equal(1.5, request!.DelaySeconds);
        Assert.Null(longestError);
        Assert.Equal(31_622_400, longest!.DelaySeconds);
    }

    [Theory]
    [InlineData("""{"type": "noop", "notBefore": "2026-12-24T18:00:00Z", "delaySeconds": 5}""", "delaySeconds", "Give notBefore or delaySeconds, not both.")]
    [InlineData("""{"type": "noop", "notBefore": "2026-12-24"}""", "notBefore", "RFC 3339")]
    [InlineData("""{"type": "noop", "notBefore": "2026-12-24T18:00:00"}""", "notBefore", "RFC 3339")]
    [InlineData("""{"type": "noop", "notBefore": "2026-12-24 18:00:00Z"}""", "notBefore", "RFC 3339")]
    [InlineData("""{"type": "noop", "notBefore": "2026-02-30T18:00:00Z"}""", "notBefore", "RFC 3339")]
    [InlineData("""{"type": "noop", "notBefore": true}""", "notBefore", "RFC 3339")]
    [InlineData("""{"type": "noop", "notBefore": "9999-12-31T23:59:59Z"}""", "notBefore", "at most 366 days ahead")]
    [InlineData("""{"type": "noop", "delaySeconds": -0.001}""", "delaySeconds", "from 0 to 31622400")]
    [InlineData("""{"type": "noop", "delaySeconds": 31622401}""", "delaySeconds", "from 0 to 31622400")]
    [InlineData("""{"type": "noop", "delaySeconds": "5"}""", "delaySeconds", "from 0 to 31622400")]
    [InlineData("""{"type": "noop", "tenant": " "}""", "tenant", "non-empty string of at most 200")]
    [InlineData("""{"type": "noop", "tenant": ""}""", "tenant", "non-empty string of at most 200")]
    [InlineData("""{"type": "noop", "tenant": 7}""", "tenant", "non-empty string of at most 200")]
    [InlineData("""{"type": "noop", "tenant": "a\u0000b"}""", "tenant", "without control characters")]
    [InlineData("""{"type": "noop", "tenant": "acme\n"}""", "tenant", "without control characters")]
    [InlineData("""{"type": "noop", "tenant": "a\u007fb"}""", "tenant", "without control characters")]
    [InlineData("""{"type": "noop", "priority": 10}""", "priority", "from 0 to 9")]
    [InlineData("""{"type": "noop", "priority": -1}""", "priority", "from 0 to 9")]
    [InlineData("""{"type": "noop", "priority": 2147483648}""", "priority", "from 0 to 9")]
    [InlineData("""{"type": "noop", "priority": "5"}""", "priority", "from 0 to 9")]
    public void ReadTask_BadDelayTenantOrPriority_Is400_NamingTheField(string body, string field, string says)
    {
        var (request, error) = ApiInputTests.Reader().ReadTask(ApiInputTests.Json(body));

        Assert.Null(request);
        var errors = Assert.IsType<ValidationProblem>(error).ProblemDetails.Errors;
        Assert.Contains(says, Assert.Single(errors[field]), StringComparison.Ordinal);
    }

    [Fact]
    public void ReadTask_ATenantOf201Characters_IsRefused_200AreAccepted()
    {
        var (ok, okError) = ApiInputTests.Reader().ReadTask(ApiInputTests.Json($$"""{"type": "noop", "tenant": "{{new string('t', 200)}}"}"""));
        var (_, tooLong) = ApiInputTests.Reader().ReadTask(ApiInputTests.Json($$"""{"type": "noop", "tenant": "{{new string('t', 201)}}"}"""));

        Assert.Null(okError);
        Assert.Equal(200, ok!.Tenant!.Length);
        Assert.Contains("tenant", Assert.IsType<ValidationProblem>(tooLong).ProblemDetails.Errors.Keys);
    }

    [Fact]
    public void ReadTask_PrioritiesZeroToNine_AreAccepted_AndAbsentIsZero()
    {
        foreach (var priority in Enumerable.Range(0, 10))
        {
            var (request, error) = ApiInputTests.Reader().ReadTask(ApiInputTests.Json($$"""{"type": "noop", "priority": {{priority}}, "tenant": "Tenant A / ü"}"""));
            Assert.Null(error);
            Assert.Equal((priority, "Tenant A / ü"), (request!.Priority, request.Tenant));
        }

        Assert.Equal(0, ApiInputTests.Reader().ReadTask(ApiInputTests.Json("""{"type": "noop", "priority": null}""")).Request!.Priority);
    }

    [Fact]
    public void ReadBatch_NamesTheItemOfABadPriorityOrTenant()
    {
        var (requests, _, error) = ApiInputTests.Reader().ReadBatch(ApiInputTests.Json(
            """{"tasks": [{"type": "noop", "priority": 9, "tenant": "a"}, {"type": "noop", "priority": 12}, {"type": "noop", "tenant": "\t"}]}"""));

        Assert.Null(requests);
        var errors = Assert.IsType<ValidationProblem>(error).ProblemDetails.Errors;
        Assert.Equal(["tasks[1].priority", "tasks[2].tenant"], errors.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void ReadBatch_NamesTheItemOfABadDelay()
    {
        var (requests, _, error) = ApiInputTests.Reader().ReadBatch(ApiInputTests.Json(
            """{"tasks": [{"type": "noop", "delaySeconds": 2}, {"type": "noop", "notBefore": "soon"}, {"type": "noop", "delaySeconds": -1}]}"""));

        Assert.Null(requests);
        var errors = Assert.IsType<ValidationProblem>(error).ProblemDetails.Errors;
        Assert.Equal(["tasks[1].notBefore", "tasks[2].delaySeconds"], errors.Keys.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    [InlineData(TaskLimits.MaxDelaySeconds + 1.0)]
    public async Task Submitter_RefusesABadDelay_BeforeItTouchesTheDatabase(double delay)
    {
        await using var nowhere = NpgsqlDataSource.Create("Host=127.0.0.1;Port=1;Database=unused");
        var submitter = new TaskSubmitter(nowhere, new NoPublisher(), new TaskSubmitterOptions());
        var request = new TaskRequest("noop", JsonSerializer.SerializeToElement(new { })) { DelaySeconds = delay };

        var error = await Assert.ThrowsAsync<ArgumentException>(() => submitter.SubmitAsync([request]));

        Assert.Contains("delaySeconds", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Submitter_RefusesNotBeforeWithDelaySeconds()
    {
        await using var nowhere = NpgsqlDataSource.Create("Host=127.0.0.1;Port=1;Database=unused");
        var submitter = new TaskSubmitter(nowhere, new NoPublisher(), new TaskSubmitterOptions());
        var request = new TaskRequest("noop", JsonSerializer.SerializeToElement(new { })) { NotBefore = DateTimeOffset.UtcNow, DelaySeconds = 1 };

        var error = await Assert.ThrowsAsync<ArgumentException>(() => submitter.SubmitAsync([request]));

        Assert.Contains("both notBefore and delaySeconds", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("30s", 30.0)]
    [InlineData("5m", 300.0)]
    [InlineData("2h", 7200.0)]
    [InlineData("1d", 86_400.0)]
    [InlineData("1.5m", 90.0)]
    [InlineData("45", 45.0)]
    public void CliDelay_ReadsSecondsMinutesHoursAndDays(string text, double seconds)
    {
        var (delaySeconds, notBefore) = SubmitCommand.StartTime(text, null);

        Assert.Equal(seconds, delaySeconds);
        Assert.Null(notBefore);
    }

    [Theory]
    [InlineData("30x", null)]
    [InlineData("soon", null)]
    [InlineData("-5s", null)]
    [InlineData(null, "christmas")]
    [InlineData("5m", "2026-12-24T18:00:00Z")]
    public void CliDelayOrAt_Malformed_OrBoth_AreRefused(string? delay, string? at)
    {
        Assert.Throws<CliException>(() => SubmitCommand.StartTime(delay, at));
    }

    [Fact]
    public void CliAt_IsUtcUnlessItNamesAnOffset()
    {
        Assert.Equal(new DateTimeOffset(2026, 12, 24, 18, 0, 0, TimeSpan.Zero), SubmitCommand.StartTime(null, "2026-12-24T18:00:00").NotBefore);
        Assert.Equal(new DateTimeOffset(2026, 12, 24, 17, 0, 0, TimeSpan.Zero), SubmitCommand.StartTime(null, "2026-12-24T18:00:00+01:00").NotBefore);
    }

    [Fact]
    public void WorkerDueTime_FollowsNotBefore_ElseDelayFromTheSubmit_ElseNone()
    {
        var received = new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero);
        var submitted = received.AddMinutes(-1);
        var at = new DateTimeOffset(2026, 12, 4, 13, 0, 0, TimeSpan.FromHours(1));

        Assert.Null(EarlyTasks.DueTime(new ProcessTask(), received));
        Assert.Equal(at, EarlyTasks.DueTime(new ProcessTask { NotBefore = at }, received));
        Assert.Equal(submitted.AddSeconds(30), EarlyTasks.DueTime(new ProcessTask { DelaySeconds = 30, SubmittedAt = submitted }, received));
        Assert.Equal(received.AddSeconds(30), EarlyTasks.DueTime(new ProcessTask { DelaySeconds = 30 }, received));
        Assert.Null(EarlyTasks.DueTime(new ProcessTask { DelaySeconds = -30 }, received));
        Assert.Null(EarlyTasks.DueTime(new ProcessTask { DelaySeconds = double.PositiveInfinity }, received));
        Assert.Equal(received.AddSeconds(TaskLimits.MaxDelaySeconds), EarlyTasks.DueTime(new ProcessTask { DelaySeconds = 1e300 }, received));
    }

    [Fact]
    public void PublishedWaitingFor_SaysRetry_OnlyWhileAPublishedRetryWaitsOutItsBackoff()
    {
        var now = DateTimeOffset.UtcNow;
        FleetTask Row(string status, DateTimeOffset? notBefore, int attempts, DateTimeOffset? publishedAt = null) =>
            new() { Type = "noop", Queue = "fleet-io", Status = status, Payload = "{}", NotBefore = notBefore, Attempts = attempts, PublishedAt = publishedAt };

        // A task still unpublished gets fleet.v_waiting_tasks's reason (ApiWaitingTests), not this one.
        Assert.Equal("retry", TaskQueries.PublishedWaitingFor(Row("queued", now.AddMinutes(1), 1, now.AddMinutes(-1)), now));
        Assert.Null(TaskQueries.PublishedWaitingFor(Row("queued", now.AddMinutes(1), 0), now));
        Assert.Null(TaskQueries.PublishedWaitingFor(Row("queued", now.AddMinutes(-1), 1, now.AddMinutes(-2)), now));
        Assert.Null(TaskQueries.PublishedWaitingFor(Row("queued", null, 0, now), now));
        Assert.Null(TaskQueries.PublishedWaitingFor(Row("cancelled", now.AddMinutes(1), 1, now), now));
    }

    [Theory]
    [InlineData(-1, false)]
    [InlineData(0, true)]
    [InlineData(9, true)]
    [InlineData(10, false)]
    [InlineData(int.MaxValue, false)]
    public void AMessagesPriority_OutsideZeroToNine_IsRefusedByTheWorkersDeserializer_WithTheField(int priority, bool accepted)
    {
        var refusal = TaskMessageDeserializer.Refusal(new ProcessTask { Type = "noop", Priority = priority });
        if (accepted)
        {
            Assert.Null(refusal);
        }
        else
        {
            Assert.Equal($"'priority' must be an integer from 0 to 9 (higher first), not {priority}.", refusal);
        }
    }

    internal sealed class NoPublisher : ITaskPublisher
    {
        public Task PublishAsync(IReadOnlyList<OutgoingTask> tasks, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("nothing may be published");
    }
}
