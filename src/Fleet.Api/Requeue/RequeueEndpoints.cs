using System.Text.Json;
using Fleet.Api.Submission;
using Fleet.Client;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Api.Requeue;

/// <summary>
/// <c>POST /tasks/{id}/requeue</c> and <c>POST /tasks/requeue</c> (scope write): run final tasks again as new
/// tasks, through the same <see cref="TaskRequeuer"/> as <c>fleet requeue</c>.
/// </summary>
internal static partial class RequeueEndpoints
{
    private static readonly JsonElement NoBody = JsonDocument.Parse("{}").RootElement.Clone();

    /// <summary>The <see cref="TaskRequeuer"/> over the API's database and its one <see cref="TaskSubmitter"/>.</summary>
    public static IServiceCollection AddFleetRequeue(this IServiceCollection services) =>
        services.AddSingleton(sp => new TaskRequeuer(sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<TaskSubmitter>()));

    public static RouteGroupBuilder MapRequeue(this RouteGroupBuilder writes)
    {
        writes.MapPost("/tasks/{id:guid}/requeue", RequeueOneAsync)
            .WithName("RequeueTask")
            .WithSummary("Run a final task again as a new task")
            .WithDescription("Submits a new task with the old one's type, payload, queue, priority, time limit, max attempts and tenant " +
                "(not its batch, chain links, unique key or schedule) and answers 202 with its id; the new row's requeuedFrom is the old id, " +
                "and the old row never changes. A queued or running task is 409. Idempotency-Key works as for POST /tasks.")
            .Produces<RequeueAccepted>(StatusCodes.Status202Accepted)
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
        writes.MapPost("/tasks/requeue", RequeueManyAsync)
            .WithName("RequeueTasks")
            .WithSummary("Run the final tasks a filter selects again, each as a new task")
            .WithDescription("status (required) is one or more final states; type, batchId, finishedSince and finishedUntil narrow it; " +
                "at most limit tasks (default 1000, at most 10000), the earliest finished first, in one submission. A task that was requeued " +
                "before is skipped unless again is true, so the same request run twice requeues once. 202 with count 0 when nothing matches.")
            .Accepts<RequeueBody>("application/json")
            .Produces<RequeueBulkAccepted>(StatusCodes.Status202Accepted)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge);
        return writes;
    }

    private static async Task<IResult> RequeueOneAsync(Guid id, HttpContext http, TaskRequeuer requeuer, ILoggerFactory loggers)
    {
        var (key, keyError) = SubmissionEndpoints.ReadIdempotencyKey(http.Request);
        if (keyError is not null)
        {
            return keyError;
        }

        var options = Keyed(http, key, $"POST /tasks/{id}/requeue", NoBody);
        RequeueOneResult found;
        try
        {
            // To its end even if the client goes away, as a submission: once rows may have committed, stopping helps nobody.
            found = await requeuer.RequeueAsync(id, options, CancellationToken.None).ConfigureAwait(false);
        }
        catch (IdempotencyConflictException)
        {
            return KeyReused();
        }
        catch (ArgumentException ex)
        {
            return Unsubmittable(ex);
        }

        switch (found.Outcome)
        {
            case RequeueOutcome.NotFound:
                return Problems.NotFound($"No task has the id {id}.");
            case RequeueOutcome.NotFinal:
                return Problems.Conflict(
                    "Task not final",
                    $"Task {id} is {found.Status}; only a final task (succeeded, failed, timed_out, cancelled) can be requeued. Wait for it to end, or cancel it first.",
                    new Dictionary<string, object?> { ["taskStatus"] = found.Status });
        }

        var result = Answered(http, found.Result!, loggers);
        if (result.Tasks.Count == 0)
        {
            return Problems.NotFound($"The task this {SubmissionEndpoints.IdempotencyKeyHeader} created was deleted (retention).");
        }

        var task = result.Tasks[0];
        var url = $"/tasks/{task.Id}";
        return TypedResults.Accepted(url, new RequeueAccepted(task.Id, url, task.RequeuedFrom));
    }

    private static async Task<IResult> RequeueManyAsync(HttpContext http, TaskRequeuer requeuer, IOptions<ApiOptions> api, ILoggerFactory loggers)
    {
        var (key, keyError) = SubmissionEndpoints.ReadIdempotencyKey(http.Request);
        if (keyError is not null)
        {
            return keyError;
        }

        var (document, bodyError) = await JsonBody.ReadAsync(http.Request, api.Value.MaxTaskBytes, http.RequestAborted).ConfigureAwait(false);
        if (bodyError is not null)
        {
            return bodyError;
        }

        using (document)
        {
            var (filter, error) = RequeueFilterReader.Read(document!.RootElement);
            if (error is not null)
            {
                return error;
            }

            RequeueResult result;
            try
            {
                result = await requeuer.RequeueAsync(filter!, Keyed(http, key, "POST /tasks/requeue", document.RootElement), CancellationToken.None).ConfigureAwait(false);
            }
            catch (IdempotencyConflictException)
            {
                return KeyReused();
            }
            catch (ArgumentException ex)
            {
                return Unsubmittable(ex);
            }

            Answered(http, result, loggers);
            return TypedResults.Accepted((string?)null, new RequeueBulkAccepted(
                result.Tasks.Count, [.. result.Tasks.Select(t => t.Id)], [.. result.Tasks.Select(t => t.RequeuedFrom)]));
        }
    }

    private static SubmitOptions? Keyed(HttpContext http, string? key, string endpoint, JsonElement body) =>
        key is null ? null : new SubmitOptions
        {
            IdempotencyKey = SubmissionEndpoints.ScopedKey(http.User, key),
            RequestHash = TaskRequestReader.RequestHash(endpoint, body),
        };

    private static RequeueResult Answered(HttpContext http, RequeueResult result, ILoggerFactory loggers)
    {
        if (result.Replayed)
        {
            http.Response.Headers[SubmissionEndpoints.ReplayedHeader] = "true";
        }
        else if (result.PublishError is not null)
        {
            // Accepted all the same: the rows are committed and the relay publishes them.
            LogAcceptedUnpublished(loggers.CreateLogger(typeof(RequeueEndpoints).FullName!), result.Tasks.Count);
        }

        return result;
    }

    /// <summary>
    /// A stored row that the submission refuses (a payload that is not a JSON object, a priority out of range: rows of
    /// messages that plain AMQP clients published). Nothing was stored.
    /// </summary>
    private static IResult Unsubmittable(ArgumentException ex) =>
        Problems.Conflict("Task cannot be submitted again", $"{ex.Message} Nothing was requeued.");

    private static IResult KeyReused() => Problems.Conflict(
        "Idempotency key reused",
        $"The {SubmissionEndpoints.IdempotencyKeyHeader} was already used for a different request; nothing was requeued. Use a new key for a new request.");

    [LoggerMessage(Level = LogLevel.Warning, Message = "Requeued {Count} tasks whose publish was not confirmed; the relay will publish them")]
    private static partial void LogAcceptedUnpublished(ILogger logger, int count);
}
