using System.Text.Json;
using Fleet.Api.Models;
using Fleet.Persistence;
using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Api.Queries;

/// <summary>What <c>GET /tasks</c> filters on; null means no filter.</summary>
public sealed record TaskFilter(IReadOnlyList<string>? Statuses, string? Type, Guid? BatchId)
{
    /// <summary>Tasks submitted at or after this time.</summary>
    public DateTimeOffset? SubmittedSince { get; init; }

    /// <summary>Tasks submitted before this time.</summary>
    public DateTimeOffset? SubmittedUntil { get; init; }
}

/// <summary>
/// Reads of <c>fleet.tasks</c> for the API, each shaped to walk one index, so that a listing costs the same on
/// page 1 and page 1,000 and on a table of any size:
/// <list type="bullet">
/// <item>by batch: <c>ix_tasks_batch (batch_id, submitted_at, id)</c>;</item>
/// <item>by type alone: <c>ix_tasks_type_submitted (type, submitted_at, id)</c>;</item>
/// <item>by status, or no filter: one range of <c>ix_tasks_status_submitted (status, submitted_at, id)</c> per
/// status, each cut at the page size, merged (UNION ALL) and cut again. There is no index on
/// <c>(submitted_at, id)</c> alone, and one would cost every claim and completion a write.</item>
/// </list>
/// The keyset condition is a row comparison, <c>(submitted_at, id) &lt; (@at, @id)</c>, which PostgreSQL uses as an
/// index bound (the equivalent OR form would be a filter, read from the newest row down every time).
/// </summary>
public sealed class TaskQueries(IDbContextFactory<FleetDbContext> contexts)
{
    public async Task<TaskPage> ListAsync(TaskFilter filter, int limit, TaskCursor? after, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(filter);
        await using var db = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var tasks = db.Tasks.AsNoTracking();
        IQueryable<FleetTask> query;
        if (filter.BatchId is { } batchId)
        {
            query = Page(Residual(tasks.Where(t => t.BatchId == batchId), filter.Statuses, filter.Type), filter, after, limit + 1);
        }
        else if (filter.Type is { } type && filter.Statuses is null)
        {
            query = Page(tasks.Where(t => t.Type == type), filter, after, limit + 1);
        }
        else
        {
            var statuses = filter.Statuses ?? TaskState.All;
            query = statuses
                .Select(status => Page(Residual(tasks.Where(t => t.Status == status), null, filter.Type), filter, after, limit + 1))
                .Aggregate(Queryable.Concat);
            query = query.OrderByDescending(t => t.SubmittedAt).ThenByDescending(t => t.Id).Take(limit + 1);
        }

        var rows = await query.Select(t => new TaskSummary(
                t.Id, t.Type, t.Queue, t.Status, t.ErrorType, t.ErrorMessage, t.Attempts,
                t.SubmittedAt, t.StartedAt, t.FinishedAt, t.WorkerId, t.BatchId))
            .ToListAsync(cancellationToken).ConfigureAwait(false);

        // One row more than asked tells whether another page exists, so the last page has no cursor.
        string? next = null;
        if (rows.Count > limit)
        {
            rows.RemoveAt(rows.Count - 1);
            next = new TaskCursor(rows[^1].SubmittedAt, rows[^1].Id).Encode();
        }

        return new TaskPage(rows, next);
    }

    public async Task<TaskDetail?> GetAsync(Guid id, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var task = await db.Tasks.AsNoTracking().FirstOrDefaultAsync(t => t.Id == id, cancellationToken).ConfigureAwait(false);
        if (task is null)
        {
            return null;
        }

        var executions = await db.TaskAttempts.AsNoTracking()
            .Where(a => a.TaskId == id)
            .OrderBy(a => a.Attempt)
            .Select(a => new TaskExecution(a.Attempt, a.WorkerId, a.Outcome, a.StartedAt, a.FinishedAt, a.ErrorType, a.ErrorMessage, a.WallMs, a.CpuMs, a.QueueWaitMs))
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        var waitingFor = task.Status == TaskState.Queued && task.PublishedAt is null
            ? await WaitingForAsync(db, id, cancellationToken).ConfigureAwait(false)
            : PublishedWaitingFor(task, DateTimeOffset.UtcNow);
        return new TaskDetail(
            task.Id, task.Type, task.Queue, task.Status, task.ErrorType, task.ErrorMessage, task.Attempts,
            task.SubmittedAt, task.StartedAt, task.FinishedAt, task.WorkerId, task.BatchId,
            Json(task.Payload), task.Result is null ? null : Json(task.Result),
            task.Priority, task.TimeoutSeconds, task.MaxAttempts, task.PublishedAt,
            // A later chain step waits with not_before at infinity (read as the largest time): not a time to show.
            task.NotBefore == DateTimeOffset.MaxValue ? null : task.NotBefore,
            task.Tenant, task.ScheduleName, task.ScheduledFor, task.Dispatched, waitingFor, executions)
        {
            AfterTaskId = task.AfterTaskId,
            NextTaskId = task.NextTaskId,
            AfterBatchId = task.AfterBatchId,
            RequeuedFrom = task.RequeuedFrom,
            UniqueKey = task.UniqueKey,
            Progress = task.Progress,
            ProgressNote = task.ProgressNote,
            ProgressAt = task.ProgressAt,
        };
    }

    /// <summary>
    /// The reason <c>fleet.v_waiting_tasks</c> gives for a queued task still in PostgreSQL (one row through
    /// <c>pk_tasks</c>): the view holds the one definition, so the API and SQL cannot disagree. Null when the task
    /// left the view in between (published, cancelled).
    /// </summary>
    private static async Task<string?> WaitingForAsync(FleetDbContext db, Guid id, CancellationToken cancellationToken) =>
        await db.Database.SqlQuery<string>($"SELECT waiting_for AS \"Value\" FROM fleet.v_waiting_tasks WHERE id = {id}")
            .FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Why a queued task that was published already is not running yet: a retry published to a delay queue waits
    /// out its backoff there ("retry"). Null for anything else, including a task whose time has come (it is on its
    /// way to a worker). A task still unpublished gets the view's reason instead.
    /// </summary>
    public static string? PublishedWaitingFor(FleetTask task, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(task);
        return task.Status == TaskState.Queued && task.PublishedAt is not null && task.NotBefore > now ? "retry" : null;
    }

    /// <summary>Counts of one batch by state, through <c>ix_tasks_batch</c>; null when no task has that batch id.</summary>
    public async Task<BatchStatus?> GetBatchAsync(Guid batchId, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var counts = await db.Tasks.AsNoTracking()
            .Where(t => t.BatchId == batchId)
            .GroupBy(t => t.BatchId)
            .Select(g => new
            {
                Total = g.LongCount(),
                Queued = g.LongCount(t => t.Status == TaskState.Queued),
                Running = g.LongCount(t => t.Status == TaskState.Running),
                Succeeded = g.LongCount(t => t.Status == TaskState.Succeeded),
                Failed = g.LongCount(t => t.Status == TaskState.Failed),
                TimedOut = g.LongCount(t => t.Status == TaskState.TimedOut),
                Cancelled = g.LongCount(t => t.Status == TaskState.Cancelled),
                SubmittedAt = g.Min(t => t.SubmittedAt),
                FinishedAt = g.Max(t => t.FinishedAt),
            })
            .FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
        if (counts is null)
        {
            return null;
        }

        var done = counts.Succeeded + counts.Failed + counts.TimedOut + counts.Cancelled == counts.Total;
        var callback = await db.BatchCallbacks.AsNoTracking().Where(c => c.BatchId == batchId)
            .Select(c => new { c.TaskId, c.FiredAt }).FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
        return new BatchStatus(
            batchId, counts.Total, counts.Queued, counts.Running, counts.Succeeded, counts.Failed, counts.TimedOut, counts.Cancelled,
            done, counts.SubmittedAt, done ? counts.FinishedAt : null)
        {
            HasOnComplete = callback is not null,
            OnCompleteTaskId = callback?.FiredAt is null ? null : callback.TaskId,
        };
    }

    private static IQueryable<FleetTask> Residual(IQueryable<FleetTask> query, IReadOnlyList<string>? statuses, string? type)
    {
        if (statuses is not null)
        {
            query = query.Where(t => statuses.Contains(t.Status));
        }

        if (type is not null)
        {
            query = query.Where(t => t.Type == type);
        }

        return query;
    }

    // The submitted range bounds the same index walk as the cursor: every index the listings use ends in (submitted_at, id).
    private static IQueryable<FleetTask> Page(IQueryable<FleetTask> query, TaskFilter filter, TaskCursor? after, int take)
    {
        if (filter.SubmittedSince is { } since)
        {
            query = query.Where(t => t.SubmittedAt >= since);
        }

        if (filter.SubmittedUntil is { } until)
        {
            query = query.Where(t => t.SubmittedAt < until);
        }

        if (after is { } cursor)
        {
            query = query.Where(t => EF.Functions.LessThan(
                ValueTuple.Create(t.SubmittedAt, t.Id), ValueTuple.Create(cursor.SubmittedAt, cursor.Id)));
        }

        return query.OrderByDescending(t => t.SubmittedAt).ThenByDescending(t => t.Id).Take(take);
    }

    private static JsonElement Json(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }
}
