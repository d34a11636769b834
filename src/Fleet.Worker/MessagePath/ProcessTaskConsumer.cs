using System.Diagnostics;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.Persistence;
using Fleet.Persistence.Entities;
using Fleet.Tasks;
using Fleet.Worker.ProcessLane;
using Fleet.Worker.Telemetry;
using MassTransit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// Consumes <see cref="ProcessTask"/> from both lanes' queues (MassTransit envelope or plain JSON). Claim, run,
/// commit the final state, and only then return, which is when MassTransit acknowledges the message: a crash at
/// any point before the commit leaves the message unacknowledged, and the broker redelivers it.
/// </summary>
public sealed partial class ProcessTaskConsumer(
    TaskLedger ledger,
    TaskExecutor executor,
    CpuLane cpuLane,
    RabbitMqTaskPublisher publisher,
    TaskHandlerRegistry registry,
    HeldTasks held,
    CrashGuard crashGuard,
    EarlyTasks earlyTasks,
    LimitCatalog limits,
    ServedQueues served,
    IOptions<WorkerOptions> options,
    WorkerMetrics metrics,
    ILogger<ProcessTaskConsumer> logger) : IConsumer<ProcessTask>
{
    private const int DefaultMaxAttempts = 3;

    /// <summary>The executions a message allows: its <c>maxAttempts</c> within 1 to 100, else the default 3.</summary>
    internal static int MaxAttemptsOf(ProcessTask message) => Math.Clamp(message.MaxAttempts ?? DefaultMaxAttempts, 1, 100);

    /// <summary>The type label of a task whose type this worker has no handler for.</summary>
    public const string UnknownTypeLabel = "(unknown)";

    /// <summary>The most characters of one task text (a type, an error) a log line carries.</summary>
    private const int MaxLoggedText = 1_000;

    // A typed scope instead of a dictionary: one small object per message, and JSON logs show TaskId and TaskType
    // as properties of the scope on every line written while the task is handled (the executor's, the handler's).
    private static readonly Func<ILogger, Guid, string, IDisposable?> TaskScope =
        LoggerMessage.DefineScope<Guid, string>("Task {TaskId} ({TaskType})");

    public async Task Consume(ConsumeContext<ProcessTask> context)
    {
        var taskId = ResolveTaskId(context);

        // The queue it came from (a lane, or the lane's dispatch queue) and the lane the task belongs to.
        var source = QueueName(context);
        var queue = TaskQueues.LaneOf(source);

        // Held from delivery to acknowledgement, so the reconciler never takes this task for one whose message is gone.
        using var hold = held.Hold(taskId);

        // A message straight in a lane that the dispatcher should publish (a plain JSON body with a tenant, a priority or
        // a limited type) is handed to it and acknowledged; so is one that names a start time ahead of this worker's
        // clock, which waits for the due relay (or the dispatcher) instead. The usual message pays only these tests.
        var message = context.Message;
        var dispatch = source == queue && (message.Tenant is not null || message.Priority > 0
            || (await limits.GetAsync(context.CancellationToken).ConfigureAwait(false)).IsLimitedType(message.Type));
        var dueTime = message.NotBefore is not null || message.DelaySeconds is not null ? EarlyTasks.DueTime(message, DateTimeOffset.UtcNow) : null;
        var early = dueTime > DateTimeOffset.UtcNow;
        if ((dispatch || early)
            && await earlyTasks.DeferAsync(taskId, queue, message, dueTime, dispatch, context.CancellationToken).ConfigureAwait(false))
        {
            return;
        }

        // A redelivered task that died with a worker before waits, unclaimed, until no other such task runs here.
        using var isolation = context.ReceiveContext.Redelivered
            ? await crashGuard.IsolateIfSuspectAsync(taskId, context.CancellationToken).ConfigureAwait(false)
            : default;

        // An I/O queue's tasks (fleet-io, a declared io queue) run straight on the endpoint's concurrency.
        if (!served.IsCpu(queue))
        {
            await RunAsync(context, taskId, queue, NoLane, startBy: 0).ConfigureAwait(false);
            return;
        }

        // A CPU-queue message first waits for a lane place, unclaimed (see CpuLane.RunAsync); with its place it is
        // claimed and waits, claimed ahead, for a thread. The lane frees the place as soon as the handler is done, so
        // the next task runs while this one commits and is acknowledged. Both waits together are bounded, so that this
        // delivery is acknowledged before the broker's consumer_timeout closes the channel.
        var wait = options.Value.LookaheadWaitLimit;
        var startBy = Stopwatch.GetTimestamp() + (long)(wait.TotalSeconds * Stopwatch.Frequency);
        if (!await cpuLane.RunAsync(wait, leaveLane => RunAsync(context, taskId, queue, leaveLane, startBy), context.CancellationToken).ConfigureAwait(false))
        {
            // Waited too long for a place (long tasks ahead of it): sent to the back of the queue.
            await SendToBackAsync(context, taskId, queue).ConfigureAwait(false);
        }
    }

    /// <summary>Publishes the task again at the back of its queue; the delivery is then acknowledged.</summary>
    private async Task SendToBackAsync(ConsumeContext<ProcessTask> context, Guid taskId, string queue)
    {
        // Back to the queue it came from: a dispatched task to its lane's dispatch queue, where it already had its turn.
        await publisher.PublishAsync([new OutgoingTask(QueueName(context), Resent(context.Message, taskId))], context.CancellationToken).ConfigureAwait(false);
        LogHandedBack(taskId, options.Value.LookaheadWaitLimit.TotalSeconds);
    }

    /// <summary>The I/O queue's messages take no lane place: its endpoint's concurrency bounds them.</summary>
    private static readonly Action NoLane = static () => { };

    /// <summary>
    /// Claims, runs and commits one delivered task. <paramref name="leaveLane"/> is called once the handler is done
    /// and its result is queued for the commit (or the task is handed back), so the lane admits the next task.
    /// <paramref name="startBy"/> (a <see cref="Stopwatch"/> timestamp; 0 for none) is when a CPU task that no lane thread
    /// has taken yet goes back to its queue instead.
    /// </summary>
    private async Task RunAsync(ConsumeContext<ProcessTask> context, Guid taskId, string queue, Action leaveLane, long startBy)
    {
        var message = context.Message;
        var maxAttempts = MaxAttemptsOf(message);
        var lane = served.IsCpu(queue) ? QueueCatalog.CpuLane : QueueCatalog.IoLane;
        var startedAt = DateTimeOffset.UtcNow;

        // What logs, spans and metrics say of the task: its type only when this worker knows it (a payload chooses
        // the type, and a label per hostile type would grow the metrics without bound), texts bounded and printable.
        var typeName = message.Type ?? "";
        var typeLabel = registry.TryGet(typeName, out _) ? typeName : UnknownTypeLabel;

        // The task's spans (all null, and free, when no tracer listens): fleet.task under MassTransit's consume span,
        // and under it the claim write, the handler, and the result write. The two writes are batched with other
        // tasks' (TaskLedger); their spans time this task's wait for its batch, which links back to them.
        using var activity = WorkerMetrics.Source.StartActivity("fleet.task");
        activity?.SetTag("fleet.task.id", taskId);
        activity?.SetTag("fleet.task.type", typeLabel);
        activity?.SetTag("fleet.task.lane", lane);
        using var scope = TaskScope(logger, taskId, ForLog(typeName)!);
        var payloadJson = message.Payload.ValueKind == System.Text.Json.JsonValueKind.Undefined ? "null" : message.Payload.GetRawText();

        ClaimResult claim;
        using (var claimSpan = WorkerMetrics.StartDatabaseWrite("fleet.task.claim"))
        {
            claim = await ledger.ClaimAsync(new TaskClaim(
                taskId, message.Type ?? "", queue, payloadJson, message.Priority, message.BatchId, message.SubmittedAt,
                maxAttempts, message.TimeoutSeconds, startedAt,
                Redelivered: context.ReceiveContext.Redelivered || context.GetRetryAttempt() > 0, Tenant: message.Tenant), context.CancellationToken).ConfigureAwait(false);
            claimSpan?.SetTag("fleet.task.claimed", claim.Claimed);
        }

        activity?.SetTag("fleet.task.attempt", claim.Attempt);
        if (!claim.Claimed)
        {
            metrics.AddSkipped();
            LogSkipped(taskId);
            return;
        }

        if (message.SubmittedAt is { } submittedAt)
        {
            metrics.RecordQueueWait(typeLabel, lane, startedAt - submittedAt);
        }

        // Failures end or retry through the ledger below and never reach a claim again past maxAttempts; only
        // executions that died with their process do (redelivered, never completed). Stop the crash loop.
        ExecutionOutcome outcome;
        if (Refusal(context, claim) is { } refused)
        {
            outcome = refused;
        }
        else if (claim.Deaths >= crashGuard.DeathLimit || claim.Charged > maxAttempts)
        {
            outcome = new ExecutionOutcome(TaskState.Failed, null, TaskExecutor.ErrorTypes.CrashLoop,
                $"The task was running in {claim.Deaths} worker processes that died before it finished (limit {crashGuard.DeathLimit}; " +
                $"{claim.Charged - 1} of {maxAttempts} attempts used); it is not run again.",
                0, null);
        }
        else
        {
            using var handlerSpan = WorkerMetrics.Source.StartActivity("fleet.task.execute");
            try
            {
                var startWithin = startBy == 0 ? (TimeSpan?)null : TimeSpan.FromSeconds((double)(startBy - Stopwatch.GetTimestamp()) / Stopwatch.Frequency);
                outcome = await executor.ExecuteAsync(taskId, message, context.CancellationToken, startWithin, claim.Attempt).ConfigureAwait(false);
            }
            catch (LaneWaitExpiredException)
            {
                // Claimed ahead behind long tasks, it never started: given back uncharged, and sent to the back of its queue.
                leaveLane();
                await HandBackAsync(taskId, claim.Attempt).ConfigureAwait(false);
                await SendToBackAsync(context, taskId, queue).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
            {
                // The worker drains (or lost its broker connection): the message goes back to the broker, and the
                // task with it, uncharged.
                leaveLane();
                await HandBackAsync(taskId, claim.Attempt).ConfigureAwait(false);
                throw;
            }

            if (outcome is { Retryable: true, ErrorType: ProcessLaneErrorTypes.ChildDied })
            {
                // A child died under it: the worker lived on, but a task that kills every child it runs in is a crash
                // loop all the same, counted per task like worker deaths.
                var deaths = await crashGuard.ChildDeathsAsync(taskId, context.CancellationToken).ConfigureAwait(false) + 1;
                if (deaths >= crashGuard.DeathLimit)
                {
                    outcome = outcome with
                    {
                        Status = TaskState.Failed,
                        ErrorType = TaskExecutor.ErrorTypes.CrashLoop,
                        ErrorMessage = $"{deaths} process-lane children died running the task (limit {crashGuard.DeathLimit}); it is not run again. The last: {outcome.ErrorMessage}",
                        Retryable = false,
                    };
                }
            }

            handlerSpan?.SetTag("fleet.task.status", outcome.Status);
            if (outcome.Status != TaskState.Succeeded)
            {
                handlerSpan?.SetStatus(ActivityStatusCode.Error, outcome.ErrorType);
            }
        }

        var retry = outcome.Retryable && claim.Charged < maxAttempts;
        var delay = retry ? RetryBackoff.Before(claim.Charged + 1, options.Value.RetryBaseSeconds, options.Value.RetryMaxSeconds) : TimeSpan.Zero;
        var finishedAt = DateTimeOffset.UtcNow;

        bool finalized;
        using (var commitSpan = WorkerMetrics.StartDatabaseWrite("fleet.task.commit"))
        {
            var commit = ledger.CompleteAsync(new TaskCompletion(
                taskId, claim.Attempt, retry ? TaskState.Queued : outcome.Status, outcome.Status, outcome.ResultJson,
                outcome.ErrorType, outcome.ErrorMessage, outcome.StartedAt ?? startedAt, finishedAt, outcome.WallMs, outcome.CpuMs,
                NotBefore: retry ? finishedAt + delay : null), context.CancellationToken);

            // The handler is done: free the lane now, not after the commit (the lane frees it on early exits). The
            // result is queued first, so that the next task's claim, which was waiting for this place, joins its batch: one
            // commit for both instead of one each.
            leaveLane();
            finalized = await commit.ConfigureAwait(false);
            commitSpan?.SetTag("fleet.task.finalized", finalized);
        }

        if (retry && finalized)
        {
            // The retry waits in PostgreSQL, not in the broker: the commit left the task queued and unpublished with
            // not_before = finish + backoff, and the due relay (every worker's and the API's) publishes it when
            // PostgreSQL's clock reaches that time. Nothing is left to send, so the message is acknowledged now. A crash
            // before the acknowledgement redelivers it, and the claim leaves a retry that waits for its time alone.
            metrics.AddRetried(typeLabel, lane);
            LogRetry(taskId, claim.Charged, maxAttempts, ForLog(outcome.ErrorType), ForLog(outcome.ErrorMessage), delay.TotalSeconds);
            activity?.SetTag("fleet.task.status", "retrying");
            return;
        }

        if (finalized)
        {
            // Filters around the consumer (fault injection's) see that this delivery ended the task, before the ack.
            // One shared marker: nothing is allocated per message for a filter that production never registers.
            context.ReceiveContext.GetOrAddPayload(static () => FinalStateCommitted.Instance);
        }

        activity?.SetTag("fleet.task.status", outcome.Status);
        metrics.AddFinished(typeLabel, lane, outcome.Status, outcome.WallMs / 1000);
        if (outcome.Status != TaskState.Succeeded)
        {
            LogFailed(taskId, ForLog(typeName)!, outcome.Status, ForLog(outcome.ErrorType), ForLog(outcome.ErrorMessage));
        }

        if (!finalized)
        {
            LogDuplicate(taskId, claim.Attempt);
        }
    }

    private static string? ForLog(string? text) => StorableForm.Text(text, MaxLoggedText);

    /// <summary>
    /// The message this worker sends again for a task it took (a return to the back of the queue): with its
    /// id, and without its start time, which has come. A <c>delaySeconds</c> without <c>submittedAt</c> would
    /// otherwise count again from the next delivery and delay the copy once more.
    /// </summary>
    private static ProcessTask Resent(ProcessTask message, Guid taskId) =>
        message with { TaskId = taskId, NotBefore = null, DelaySeconds = null };

    /// <summary>Records the hand-back; a failure to record it only means the next claim charges the execution.</summary>
    private async Task HandBackAsync(Guid taskId, int attempt)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await ledger.HandBackAsync(taskId, attempt, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or TimeoutException)
        {
            LogHandBackFailed(taskId, ex.Message);
        }
    }

    /// <summary>
    /// A task recorded as failed without running: its message could not be read as a task (a stand-in of
    /// <see cref="TaskMessageDeserializer"/>), or PostgreSQL could not store its payload, which the ledger kept in
    /// storable form instead.
    /// </summary>
    private static ExecutionOutcome? Refusal(ConsumeContext context, ClaimResult claim) =>
        context.TryGetPayload<UnreadableTaskMessage>(out var unreadable)
            ? new ExecutionOutcome(TaskState.Failed, null, UnreadableTaskMessage.ErrorType, unreadable.Reason, 0, null)
            : claim.PayloadRefusal is { } reason
                ? new ExecutionOutcome(TaskState.Failed, null, TaskLedger.ErrorTypes.UnstorablePayload, reason, 0, null)
                : null;

    /// <summary>
    /// The body's <c>taskId</c>, else the AMQP <c>message_id</c>. A message id that is not a UUID maps to a stable
    /// name-based UUID, so the same message id always names the same task. A message with neither cannot be
    /// recorded anywhere and is faulted to the queue's <c>_error</c> queue with the reason.
    /// </summary>
    private static Guid ResolveTaskId(ConsumeContext<ProcessTask> context)
    {
        if (context.Message.TaskId != Guid.Empty)
        {
            return context.Message.TaskId;
        }

        var messageId = context.TryGetPayload<RabbitMqBasicConsumeContext>(out var rabbit) ? rabbit.Properties?.MessageId : null;
        messageId ??= context.MessageId?.ToString();
        if (string.IsNullOrWhiteSpace(messageId))
        {
            throw new InvalidTaskMessageException("The message has no 'taskId' and no AMQP message_id; it cannot be tracked.");
        }

        return Guid.TryParse(messageId, out var id) ? id : NameBasedId.From("fleet:message_id:" + messageId);
    }

    private static string QueueName(ConsumeContext context)
    {
        var path = context.ReceiveContext.InputAddress?.AbsolutePath ?? "";
        var slash = path.LastIndexOf('/');
        return slash >= 0 ? path[(slash + 1)..] : path;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Task {TaskId} was handed back, but recording it failed ({Reason}); its next run counts this one")]
    private partial void LogHandBackFailed(Guid taskId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Task {TaskId} waited {Seconds:0} s for a CPU-lane thread; sent to the back of its queue")]
    private partial void LogHandedBack(Guid taskId, double seconds);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Task {TaskId} is already final, or a retry waiting for its time; delivery acknowledged without running it")]
    private partial void LogSkipped(Guid taskId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Task {TaskId} attempt {Attempt}/{MaxAttempts} failed ({ErrorType}: {ErrorMessage}); retrying in {DelaySeconds:0.0} s")]
    private partial void LogRetry(Guid taskId, int attempt, int maxAttempts, string? errorType, string? errorMessage, double delaySeconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Task {TaskId} ({Type}) ended {Status}: {ErrorType}: {ErrorMessage}")]
    private partial void LogFailed(Guid taskId, string type, string status, string? errorType, string? errorMessage);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Task {TaskId} attempt {Attempt} ran as a duplicate: the task was already final, its result was kept")]
    private partial void LogDuplicate(Guid taskId, int attempt);
}

/// <summary>
/// On the receive context once <see cref="ProcessTaskConsumer"/> committed the task's final state from this delivery
/// (not a retry, not a duplicate of a task already final), for filters that act between the commit and the ack.
/// </summary>
public sealed class FinalStateCommitted
{
    public static readonly FinalStateCommitted Instance = new();

    private FinalStateCommitted()
    {
    }
}

/// <summary>A message that cannot be read as a task at all (no id); it goes to the <c>_error</c> queue.</summary>
public sealed class InvalidTaskMessageException : Exception
{
    public InvalidTaskMessageException(string message)
        : base(message)
    {
    }

    public InvalidTaskMessageException()
    {
    }

    public InvalidTaskMessageException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
