using Fleet.Api.Models;
using Fleet.Api.Monitoring;
using Fleet.Api.Queries;
using Fleet.Api.Submission;
using Fleet.Persistence.Entities;
using Microsoft.Extensions.Options;

namespace Fleet.Api;

/// <summary>The read endpoints (scope read, or open with <c>Api:ReadsRequireKey</c> false) and the cancel endpoint (scope admin).</summary>
internal static class ReadEndpoints
{
    public static RouteGroupBuilder MapReads(this RouteGroupBuilder reads)
    {
        reads.MapGet("/tasks/{id:guid}", GetTaskAsync)
            .WithName("GetTask")
            .WithSummary("One task: state, payload, result or error, timings, worker and every execution")
            .Produces<TaskDetail>()
            .ProducesProblem(StatusCodes.Status404NotFound);
        reads.MapGet("/tasks", ListTasksAsync)
            .WithName("ListTasks")
            .WithSummary("Tasks, newest first, with keyset pagination")
            .WithDescription("Filters: status (one or a comma-separated list of queued, running, succeeded, failed, timed_out, cancelled), " +
                "type, batchId, submittedSince (inclusive) and submittedUntil (exclusive), ISO 8601 times with an offset. limit defaults to Api:ListLimitDefault (100) and is capped at Api:ListLimitMax (1000). " +
                "Pass the answer's 'next' as 'after' to get the following page; 'next' is null on the last page.")
            .Produces<TaskPage>()
            .ProducesProblem(StatusCodes.Status400BadRequest);
        reads.MapGet("/batches/{id:guid}", GetBatchAsync)
            .WithName("GetBatch")
            .WithSummary("A batch's tasks counted by state; finishedAt once all are final")
            .Produces<BatchStatus>()
            .ProducesProblem(StatusCodes.Status404NotFound);
        reads.MapGet("/workers", (WorkerQueries workers, CancellationToken ct) => workers.ListAsync(ct))
            .WithName("ListWorkers")
            .WithSummary("Worker processes seen within Api:WorkerRecentMinutes, live ones first")
            .Produces<IReadOnlyList<WorkerInfo>>();
        reads.MapGet("/stats", (StatsService stats, CancellationToken ct) => stats.GetAsync(ct))
            .WithName("GetStats")
            .WithSummary("Queue depths, open and recently finished tasks, throughput; built for polling every few seconds")
            .Produces<StatsSnapshot>();
        return reads;
    }

    public static RouteGroupBuilder MapCancel(this RouteGroupBuilder admin)
    {
        admin.MapPost("/tasks/{id:guid}/cancel", CancelAsync)
            .WithName("CancelTask")
            .WithSummary("Cancel a task")
            .WithDescription("A queued task becomes cancelled at once and never runs (200). A running task is cancelled through a broadcast " +
                "to the workers; its handler's token fires and it ends cancelled (202). A final task is 409.")
            .Produces<CancelAccepted>()
            .Produces<CancelAccepted>(StatusCodes.Status202Accepted)
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
        return admin;
    }

    private static async Task<IResult> GetTaskAsync(Guid id, TaskQueries queries, CancellationToken cancellationToken)
    {
        var task = await queries.GetAsync(id, cancellationToken).ConfigureAwait(false);
        return task is null ? Problems.NotFound($"No task has the id {id}.") : TypedResults.Ok(task);
    }

    private static async Task<IResult> ListTasksAsync(
        string? status, string? type, string? batchId, string? submittedSince, string? submittedUntil, string? limit, string? after,
        TaskQueries queries, IOptions<ApiOptions> options, CancellationToken cancellationToken)
    {
        var api = options.Value;
        var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
        IReadOnlyList<string>? statuses = null;
        if (!string.IsNullOrWhiteSpace(status))
        {
            var parts = status.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct(StringComparer.Ordinal).ToList();
            var unknown = parts.Where(p => !TaskState.All.Contains(p)).ToList();
            if (unknown.Count > 0 || parts.Count == 0)
            {
                errors["status"] = [$"Unknown status {string.Join(", ", unknown)}; use {string.Join(", ", TaskState.All)} (comma-separated for several)."];
            }

            statuses = parts;
        }

        Guid? batch = null;
        if (!string.IsNullOrWhiteSpace(batchId))
        {
            if (Guid.TryParse(batchId, out var parsed))
            {
                batch = parsed;
            }
            else
            {
                errors["batchId"] = ["Must be a UUID."];
            }
        }

        var since = Instant(submittedSince, nameof(submittedSince), errors);
        var until = Instant(submittedUntil, nameof(submittedUntil), errors);
        if (since is not null && until is not null && until <= since)
        {
            errors[nameof(submittedUntil)] = ["Must be after submittedSince."];
        }

        var take = api.ListLimitDefault;
        if (!string.IsNullOrWhiteSpace(limit))
        {
            if (!int.TryParse(limit, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out take) || take < 1)
            {
                errors["limit"] = [$"Must be a whole number from 1 (at most {api.ListLimitMax} are returned)."];
            }

            take = Math.Min(take, api.ListLimitMax);
        }

        TaskCursor? cursor = null;
        if (!string.IsNullOrEmpty(after))
        {
            if (TaskCursor.TryDecode(after, out var decoded))
            {
                cursor = decoded;
            }
            else
            {
                errors["after"] = ["Not a cursor of this API: pass the 'next' value of the previous page as it is."];
            }
        }

        if (errors.Count > 0)
        {
            return Problems.Invalid("Invalid query", errors);
        }

        var filter = new TaskFilter(statuses, string.IsNullOrWhiteSpace(type) ? null : type, batch) { SubmittedSince = since, SubmittedUntil = until };
        var page = await queries.ListAsync(filter, take, cursor, cancellationToken).ConfigureAwait(false);
        return TypedResults.Ok(page);
    }

    /// <summary>An ISO 8601 time with its offset (<c>2026-12-05T10:00:00Z</c>), or an error for <paramref name="name"/>.</summary>
    private static DateTimeOffset? Instant(string? value, string name, Dictionary<string, string[]> errors)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }

        // A time without an offset would be read in the server's zone: refused rather than guessed.
        var time = value.IndexOf('T', StringComparison.Ordinal);
        if (time > 0 && (value.EndsWith('Z') || value.LastIndexOfAny(['+', '-']) > time)
            && DateTimeOffset.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out var parsed))
        {
            return parsed.ToUniversalTime();
        }

        errors[name] = ["Must be an ISO 8601 time with its offset, such as 2026-12-05T10:00:00Z."];
        return null;
    }

    private static async Task<IResult> GetBatchAsync(Guid id, TaskQueries queries, CancellationToken cancellationToken)
    {
        var batch = await queries.GetBatchAsync(id, cancellationToken).ConfigureAwait(false);
        return batch is null ? Problems.NotFound($"No task has the batch id {id}.") : TypedResults.Ok(batch);
    }

    private static async Task<IResult> CancelAsync(Guid id, TaskCanceller canceller, CancellationToken cancellationToken)
    {
        var (outcome, status) = await canceller.CancelAsync(id, cancellationToken).ConfigureAwait(false);
        return outcome switch
        {
            CancelOutcome.Cancelled => TypedResults.Ok(new CancelAccepted(id, TaskState.Cancelled, CancelRequested: false)),
            CancelOutcome.CancelRequested => TypedResults.Accepted($"/tasks/{id}", new CancelAccepted(id, TaskState.Running, CancelRequested: true)),
            CancelOutcome.NotFound => Problems.NotFound($"No task has the id {id}."),
            _ => Problems.Conflict(
                "Task already final",
                $"The task is already {status}; a final state never changes.",
                new Dictionary<string, object?> { ["taskStatus"] = status }),
        };
    }
}
