using Fleet.Contracts;
using Fleet.Persistence;
using Fleet.Persistence.Entities;
using MassTransit;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Api.Submission;

/// <summary>What a cancel request found and did.</summary>
public enum CancelOutcome
{
    NotFound,

    /// <summary>The task was queued and is now <c>cancelled</c>; it will never run.</summary>
    Cancelled,

    /// <summary>The task runs; the workers were asked to cancel it.</summary>
    CancelRequested,

    /// <summary>The task was already final; nothing changed.</summary>
    AlreadyFinal,
}

/// <summary>
/// Cancels a task. A queued task is cancelled in the database with a conditional update: the worker's claim
/// (<c>TaskLedger</c>) only takes tasks that are still <c>queued</c>, and both statements lock the row, so either
/// the cancel or the claim wins, never both; a message that arrives later for a cancelled task is acknowledged
/// without running. A running task is in some worker's hands, and which one is not known here, so a
/// <see cref="CancelTask"/> is broadcast on the <c>fleet-control</c> fanout; the worker running it fires the
/// task's token and records it <c>cancelled</c>. The request is also recorded on the row
/// (<c>cancel_requested_at</c>), for the cases the broadcast cannot reach: the worker died, or the message came back.
/// </summary>
public sealed class TaskCanceller(IDbContextFactory<FleetDbContext> contexts, ISendEndpointProvider sendEndpoints)
{
    public const string Reason = "Cancelled by request through the API.";

    private static readonly Uri ControlExchange = new($"exchange:{TaskQueues.Control}?type=fanout");

    public async Task<(CancelOutcome Outcome, string? Status)> CancelAsync(Guid id, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);

        // A queued task can be claimed between the update and the read (the next round sees it running), and a
        // task waiting for a retry goes back to queued; a few rounds settle both.
        string? status = null;
        for (var round = 0; round < 3; round++)
        {
            var cancelled = await db.Tasks
                .Where(t => t.Id == id && t.Status == TaskState.Queued)
                .ExecuteUpdateAsync(
                    s => s.SetProperty(t => t.Status, TaskState.Cancelled)
                        .SetProperty(t => t.FinishedAt, _ => DateTimeOffset.UtcNow)
                        .SetProperty(t => t.ErrorType, "Cancelled")
                        .SetProperty(t => t.ErrorMessage, Reason)

                        // Leaves ix_tasks_unpublished (or ix_tasks_due, for a delayed task): a cancelled task is not
                        // waiting for a publish any more, and the relays never send it.
                        .SetProperty(t => t.PublishedAt, t => t.PublishedAt ?? DateTimeOffset.UtcNow),
                    cancellationToken)
                .ConfigureAwait(false);
            if (cancelled == 1)
            {
                return (CancelOutcome.Cancelled, TaskState.Cancelled);
            }

            status = await db.Tasks.AsNoTracking().Where(t => t.Id == id).Select(t => t.Status)
                .FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
            switch (status)
            {
                case null:
                    return (CancelOutcome.NotFound, null);
                case TaskState.Running:
                    // Recorded first, so the request outlives the broadcast: if the worker holding the task is gone or
                    // its message comes back, the task is not run again and the reconciler ends it cancelled.
                    await db.Tasks
                        .Where(t => t.Id == id && t.Status == TaskState.Running)
                        .ExecuteUpdateAsync(s => s.SetProperty(t => t.CancelRequestedAt, t => t.CancelRequestedAt ?? DateTimeOffset.UtcNow), cancellationToken)
                        .ConfigureAwait(false);
                    var endpoint = await sendEndpoints.GetSendEndpoint(ControlExchange).ConfigureAwait(false);
                    await endpoint.Send(new CancelTask { TaskId = id, Reason = Reason }, cancellationToken).ConfigureAwait(false);
                    return (CancelOutcome.CancelRequested, status);
                case TaskState.Queued:
                    continue;
                default:
                    return (CancelOutcome.AlreadyFinal, status);
            }
        }

        return (CancelOutcome.AlreadyFinal, status);
    }
}
