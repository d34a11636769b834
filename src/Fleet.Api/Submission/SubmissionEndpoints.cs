using Fleet.Api.Models;
using Fleet.Client;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Submission;

/// <summary><c>POST /tasks</c> and <c>POST /tasks/batch</c>: validate everything, then one <see cref="TaskSubmitter"/> submission.</summary>
internal static partial class SubmissionEndpoints
{
    public const string IdempotencyKeyHeader = "Idempotency-Key";
    public const string ReplayedHeader = "Idempotent-Replayed";

    public static RouteGroupBuilder MapSubmissions(this RouteGroupBuilder writes)
    {
        writes.MapPost("/tasks", SubmitTaskAsync)
            .WithName("SubmitTask")
            .WithSummary("Submit one task")
            .WithDescription("Stores the task as queued, sends it to its lane's queue with publisher confirms, and answers 202 with its id. " +
                "With an Idempotency-Key header, a retry with the same body returns the same id and creates nothing; another body under the same key is 409. " +
                "With then, the steps are stored too and run one after another, each once the one before succeeded (their ids in then). " +
                "With a uniqueKey that a queued or running task holds, nothing is created: 200 with that task's id and existing true.")
            .Accepts<SubmitTaskBody>("application/json")
            .Produces<TaskAccepted>(StatusCodes.Status202Accepted)
            .Produces<TaskAccepted>(StatusCodes.Status200OK)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge);
        writes.MapPost("/tasks/batch", SubmitBatchAsync)
            .WithName("SubmitBatch")
            .WithSummary("Submit up to Api:MaxBatchTasks tasks as one batch")
            .WithDescription("All tasks are stored in one transaction with bulk INSERTs under a new batch id, then sent with publisher confirms. " +
                "Progress: GET /batches/{batchId}. Idempotency-Key works as for POST /tasks. " +
                "With onComplete, that task is created once every task of the batch is final, whatever the outcomes (GET /batches/{batchId} shows its id once created).")
            .Accepts<SubmitBatchBody>("application/json")
            .Produces<BatchAccepted>(StatusCodes.Status202Accepted)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge);
        return writes;
    }

    private static async Task<IResult> SubmitTaskAsync(
        HttpContext http, TaskRequestReader reader, TaskSubmitter submitter, IOptions<ApiOptions> options, ILoggerFactory loggers)
    {
        var (key, keyError) = ReadIdempotencyKey(http.Request);
        if (keyError is not null)
        {
            return keyError;
        }

        var (document, bodyError) = await JsonBody.ReadAsync(http.Request, options.Value.MaxTaskBytes, http.RequestAborted).ConfigureAwait(false);
        if (bodyError is not null)
        {
            return bodyError;
        }

        using (document)
        {
            var (request, error) = reader.ReadTask(document!.RootElement);
            if (error is not null)
            {
                return error;
            }

            var submitOptions = new SubmitOptions
            {
                IdempotencyKey = ScopedKey(http.User, key),
                RequestHash = key is null ? null : TaskRequestReader.RequestHash("POST /tasks", document.RootElement),
            };
            var (result, conflict) = await SubmitAsync(submitter, [request!], submitOptions, http, loggers).ConfigureAwait(false);
            if (conflict is not null)
            {
                return conflict;
            }

            var id = result!.TaskIds[0];
            var url = $"/tasks/{id}";
            var accepted = new TaskAccepted(id, url) { Then = result.Steps?[0] is { Count: > 0 } steps ? steps : null };

            // A uniqueKey an active task holds created nothing: 200 with that task, not 202 for a new one.
            return result.Existing is { Count: > 0 }
                ? TypedResults.Ok(accepted with { Existing = true })
                : TypedResults.Accepted(url, accepted);
        }
    }

    private static async Task<IResult> SubmitBatchAsync(
        HttpContext http, TaskRequestReader reader, TaskSubmitter submitter, IOptions<ApiOptions> options, ILoggerFactory loggers)
    {
        var (key, keyError) = ReadIdempotencyKey(http.Request);
        if (keyError is not null)
        {
            return keyError;
        }

        var (document, bodyError) = await JsonBody.ReadAsync(http.Request, options.Value.MaxBatchBytes, http.RequestAborted).ConfigureAwait(false);
        if (bodyError is not null)
        {
            return bodyError;
        }

        using (document)
        {
            var (requests, onComplete, error) = reader.ReadBatch(document!.RootElement);
            if (error is not null)
            {
                return error;
            }

            var submitOptions = new SubmitOptions
            {
                BatchId = Guid.CreateVersion7(),
                OnComplete = onComplete,
                IdempotencyKey = ScopedKey(http.User, key),
                RequestHash = key is null ? null : TaskRequestReader.RequestHash("POST /tasks/batch", document.RootElement),
            };
            var (result, conflict) = await SubmitAsync(submitter, requests!, submitOptions, http, loggers).ConfigureAwait(false);
            if (conflict is not null)
            {
                return conflict;
            }

            var batchId = result!.BatchId!.Value;
            var url = $"/batches/{batchId}";
            return TypedResults.Accepted(url, new BatchAccepted(batchId, result.TaskIds.Count, result.TaskIds, url)
            {
                Then = result.Steps,
                Existing = result.Existing is { Count: > 0 } existing ? [.. existing.Order()] : null,
            });
        }
    }

    /// <summary>
    /// Runs the submission to its end even if the client goes away: once the rows may have committed, stopping
    /// half-way would only leave work for the relay.
    /// </summary>
    private static async Task<(SubmitResult? Result, IResult? Conflict)> SubmitAsync(
        TaskSubmitter submitter, IReadOnlyList<TaskRequest> requests, SubmitOptions submitOptions, HttpContext http, ILoggerFactory loggers)
    {
        try
        {
            var result = await submitter.SubmitAsync(requests, submitOptions, CancellationToken.None).ConfigureAwait(false);
            if (result.Replayed)
            {
                http.Response.Headers[ReplayedHeader] = "true";
            }
            else if (result.PublishError is not null)
            {
                // Accepted all the same: the rows are committed and the relay publishes them.
                LogAcceptedUnpublished(loggers.CreateLogger(typeof(SubmissionEndpoints).FullName!), result.TaskIds.Count);
            }

            return (result, null);
        }
        catch (IdempotencyConflictException)
        {
            return (null, Problems.Conflict(
                "Idempotency key reused",
                $"The {IdempotencyKeyHeader} was already used for a different request; nothing was stored. Use a new key for a new request."));
        }
    }

    /// <summary>
    /// The idempotency key as stored: the caller's key id, then the header. Two callers who pick the same key (both
    /// "order-1", say) each get their own tasks; a caller never receives another's task ids, nor a 409 for them.
    /// </summary>
    internal static string? ScopedKey(System.Security.Claims.ClaimsPrincipal caller, string? key) =>
        key is null ? null : $"{caller.FindFirst(Security.ApiKeyAuthenticationHandler.KeyIdClaim)?.Value ?? "anonymous"}:{key}";

    internal static (string? Key, IResult? Error) ReadIdempotencyKey(HttpRequest request)
    {
        if (!request.Headers.TryGetValue(IdempotencyKeyHeader, out var values))
        {
            return (null, null);
        }

        var key = values.Count == 1 ? values[0] : null;
        if (string.IsNullOrEmpty(key) || key.Length > 255 || key.Any(c => c is < '!' or > '~'))
        {
            return (null, Problems.BadRequest(
                "Invalid Idempotency-Key",
                $"{IdempotencyKeyHeader} must be one value of 1 to 255 visible ASCII characters, for example a UUID."));
        }

        return (key, null);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Accepted {Count} tasks whose publish was not confirmed; the relay will publish them")]
    private static partial void LogAcceptedUnpublished(ILogger logger, int count);
}
