using System.Diagnostics;
using System.Text.Json;
using Fleet.Contracts;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Fleet.Client;

/// <summary>
/// The one submission pipeline of Fleet, used by <see cref="FleetClient"/> and by the HTTP API:
/// <list type="number">
/// <item>the task rows (and the idempotency key, if any) commit together as <c>queued</c> with <c>published_at</c>
/// null: the "to publish" state of a transactional outbox, in the task row itself (<see cref="TaskStore"/>);</item>
/// <item>the messages are sent and the broker's publisher confirms awaited, and</item>
/// <item><c>published_at</c> is stamped (<see cref="OutboxPublisher"/>).</item>
/// </list>
/// A crash (or a broker outage) between 1 and 3 leaves rows with <c>published_at</c> null, which
/// <see cref="OutboxRelay"/> republishes. A delayed task (<see cref="TaskRequest.NotBefore"/> ahead of the submit,
/// or <see cref="TaskRequest.DelaySeconds"/> above 0) skips steps 2 and 3: its row waits, unpublished, until the
/// due relay (<see cref="OutboxRelay.PublishDueAsync"/>) publishes it at its time. The statements are in
/// <see cref="SubmissionSql"/>. Thread-safe.
/// </summary>
public sealed class TaskSubmitter
{
    private readonly TaskSubmitterOptions _options;
    private readonly TaskStore _store;
    private readonly OutboxPublisher _publisher;
    private readonly LimitCatalog _limits;

    public TaskSubmitter(NpgsqlDataSource dataSource, ITaskPublisher publisher, TaskSubmitterOptions options, ILogger<TaskSubmitter>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(publisher);
        ArgumentNullException.ThrowIfNull(options);
        System.ComponentModel.DataAnnotations.Validator.ValidateObject(options, new(options), validateAllProperties: true);
        _options = options;
        _store = new TaskStore(dataSource, options.ChunkSize);
        _publisher = new OutboxPublisher(dataSource, publisher, options, logger ?? (ILogger)NullLogger<TaskSubmitter>.Instance);
        _limits = new LimitCatalog(dataSource, LimitCatalog.DefaultRefresh, logger: logger);
    }

    public TaskSubmitterOptions Options => _options;

    /// <summary>
    /// Stores the tasks (one transaction, bulk INSERTs of <see cref="TaskSubmitterOptions.ChunkSize"/> rows), then
    /// sends them with publisher confirms, then stamps <c>published_at</c>. Returns the ids in request order.
    /// </summary>
    /// <exception cref="IdempotencyConflictException">The idempotency key was used before for a different request.</exception>
    public async Task<SubmitResult> SubmitAsync(IReadOnlyList<TaskRequest> requests, SubmitOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        if (requests.Count == 0)
        {
            throw new ArgumentException("A submission needs at least one task.", nameof(requests));
        }

        options ??= new SubmitOptions();
        if (options.IdempotencyKey is not null && string.IsNullOrEmpty(options.RequestHash))
        {
            throw new ArgumentException("An idempotency key needs the request's hash.", nameof(options));
        }

        var now = DateTimeOffset.UtcNow;
        var tasks = requests.Select(r => ToOutgoing(r, now, options.BatchId)).ToList();
        var steps = AddChainSteps(requests, tasks, now, options.BatchId);
        var callback = options.OnComplete is null ? null : CallbackOf(options, now);

        // Checked only once every request is valid, so that a bad one is refused before the database is asked anything.
        var limits = await _limits.GetAsync(cancellationToken).ConfigureAwait(false);
        for (var i = 0; i < tasks.Count; i++)
        {
            if (IsDispatched(tasks[i].Message, limits))
            {
                tasks[i] = tasks[i] with { Dispatched = true };
            }
        }

        using var activity = ClientTelemetry.Source.StartActivity("fleet.submit");
        activity?.SetTag("fleet.task.count", tasks.Count);
        if (tasks.Count == 1)
        {
            activity?.SetTag("fleet.task.id", tasks[0].Message.TaskId);
            activity?.SetTag("fleet.task.type", tasks[0].Message.Type);
        }

        if (options.BatchId is { } batchId)
        {
            activity?.SetTag("fleet.batch.id", batchId);
        }

        var stored = await _store.StoreAsync(tasks, options, callback, cancellationToken).ConfigureAwait(false);
        if (stored.Replay is { } replay)
        {
            activity?.SetTag("fleet.submit.replayed", true);
            return Replayed(replay, requests.Count, steps);
        }

        // A delayed task stays in PostgreSQL, queued and unpublished, until the due relay publishes it at its time (a
        // later chain step waits at infinity); a dispatched one until the dispatcher publishes it; a schedule firing
        // that already had its task (another replica fired it), or a task whose uniqueKey an active task holds, is not
        // sent under the new id. Plain tasks pass through as they are, without a copy of the list.
        var (firings, unique) = (stored.ExistingFirings, stored.ExistingUnique);
        var toPublish = firings is null && unique is null && !tasks.Exists(t => t.Dispatched || t.Message.NotBefore > now)
            ? tasks
            : [.. tasks.Where(t => !t.Dispatched && !(t.Message.NotBefore > now) && firings?.Contains(t.Message.TaskId) != true && unique?.ContainsKey(t.Message.TaskId) != true)];
        var publishError = await _publisher.PublishAndStampAsync(toPublish, cancellationToken).ConfigureAwait(false);
        if (publishError is not null)
        {
            // Accepted all the same (the relay publishes later), but the trace should show that the send failed.
            activity?.SetStatus(ActivityStatusCode.Error, publishError.Message);
        }

        var ids = new Guid[requests.Count];
        HashSet<int>? existing = null;
        for (var i = 0; i < ids.Length; i++)
        {
            ids[i] = tasks[i].Message.TaskId;
            if (unique?.TryGetValue(ids[i], out var holder) == true)
            {
                ids[i] = holder;
                (existing ??= []).Add(i);
            }
        }

        return new SubmitResult(ids, options.BatchId, Replayed: false, publishError) { Steps = steps, Existing = existing };
    }

    /// <summary>
    /// The earlier answer under the same idempotency key, shaped like the first one. The key holds the ids in the order
    /// of the stored tasks: the requests' own first, then each request's steps in order; the same request (the hash
    /// matched) has the same number of steps, so <paramref name="steps"/> (this try's, with fresh ids) says how many
    /// ids each request's steps take.
    /// </summary>
    private static SubmitResult Replayed(SubmitResult replay, int count, List<IReadOnlyList<Guid>>? steps)
    {
        var ids = replay.TaskIds;
        if (ids.Count < count || steps is null || ids.Count != count + steps.Sum(s => s.Count))
        {
            return ids.Count > count ? replay with { TaskIds = [.. ids.Take(count)] } : replay;
        }

        var stored = new List<IReadOnlyList<Guid>>(steps.Count);
        var next = count;
        foreach (var own in steps)
        {
            stored.Add([.. ids.Skip(next).Take(own.Count)]);
            next += own.Count;
        }

        return replay with { TaskIds = [.. ids.Take(count)], Steps = stored };
    }

    /// <summary>
    /// Appends the <see cref="TaskRequest.Then"/> steps of each request to <paramref name="tasks"/> (whose first
    /// entries are the requests, in order), linked both ways: a step runs after the task before it
    /// (<c>after_task_id</c>) and waits for it at infinity, and the task before it names it (<c>next_task_id</c>), which
    /// is what the trigger <c>tr_tasks_chain_step_ended</c> follows. Steps join the batch of their chain. Returns the
    /// step ids per request, or null when no request has steps.
    /// </summary>
    private List<IReadOnlyList<Guid>>? AddChainSteps(IReadOnlyList<TaskRequest> requests, List<OutgoingTask> tasks, DateTimeOffset now, Guid? batchId)
    {
        if (!requests.Any(r => r.Then is { Count: > 0 }))
        {
            return null;
        }

        var steps = new List<IReadOnlyList<Guid>>(requests.Count);
        for (var i = 0; i < requests.Count; i++)
        {
            var head = requests[i];
            if (head.Then is not { Count: > 0 } then)
            {
                steps.Add([]);
                continue;
            }

            if (then.Count > TaskLimits.MaxChainSteps)
            {
                throw new ArgumentException($"A task of type '{head.Type}' has {then.Count} steps in then; at most {TaskLimits.MaxChainSteps}.", nameof(requests));
            }

            if (head.UniqueKey is not null)
            {
                throw new ArgumentException($"A task of type '{head.Type}' has both then and uniqueKey; a chain cannot be unique.", nameof(requests));
            }

            var ids = new List<Guid>(then.Count);
            var previous = i;
            foreach (var step in then)
            {
                ArgumentNullException.ThrowIfNull(step, nameof(requests));
                if (step.Then is { Count: > 0 } || step.NotBefore is not null || step.DelaySeconds is not null || step.UniqueKey is not null)
                {
                    throw new ArgumentException(
                        $"A step of type '{step.Type}' in then has then, notBefore, delaySeconds or uniqueKey; a step starts when the step before it succeeds, and lists no steps of its own.",
                        nameof(requests));
                }

                var outgoing = ToOutgoing(step, now, tasks[i].Message.BatchId ?? batchId);
                outgoing = outgoing with
                {
                    Message = outgoing.Message with { AfterTaskId = tasks[previous].Message.TaskId, NotBefore = DateTimeOffset.MaxValue },
                };
                tasks[previous] = tasks[previous] with { NextTaskId = outgoing.Message.TaskId };
                tasks.Add(outgoing);
                previous = tasks.Count - 1;
                ids.Add(outgoing.Message.TaskId);
            }

            steps.Add(ids);
        }

        return steps;
    }

    /// <summary>The batch's onComplete request, checked and with its lane and id fixed now, as <c>fleet.batch_callbacks</c> keeps it.</summary>
    private BatchCallbackRow CallbackOf(SubmitOptions options, DateTimeOffset now)
    {
        var request = options.OnComplete!;
        if (options.BatchId is not { } batchId)
        {
            throw new ArgumentException("onComplete needs a batch.", nameof(options));
        }

        if (request.Then is { Count: > 0 } || request.NotBefore is not null || request.DelaySeconds is not null || request.UniqueKey is not null)
        {
            throw new ArgumentException(
                $"The onComplete task of type '{request.Type}' has then, notBefore, delaySeconds or uniqueKey; it starts when the batch ends.", nameof(options));
        }

        var outgoing = ToOutgoing(request, now, batchId: null);
        return new BatchCallbackRow(batchId, outgoing.Message.TaskId, BatchCallbackTask.ToJson(outgoing));
    }

    /// <summary>
    /// Whether the dispatcher publishes <paramref name="message"/>, rather than the submission at once: when it names a
    /// tenant (fair shares), a priority above 0 (it must pass the lane's backlog), or a type under a limit.
    /// </summary>
    public static bool IsDispatched(ProcessTask message, LimitSnapshot limits)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(limits);
        return message.Tenant is not null || message.Priority > 0 || limits.IsLimitedType(message.Type);
    }

    private OutgoingTask ToOutgoing(TaskRequest request, DateTimeOffset now, Guid? batchId)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentException.ThrowIfNullOrWhiteSpace(request.Type, nameof(request));
        if (request.Payload.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"The payload of task type '{request.Type}' must be a JSON object.", nameof(request));
        }

        if (request.NotBefore is not null && request.DelaySeconds is not null)
        {
            throw new ArgumentException($"A task of type '{request.Type}' names both notBefore and delaySeconds; give one.", nameof(request));
        }

        // Only a name a queue can have (a lane, or a worker group's queue as Api:Queues declares them): a dispatch or
        // error queue, or a typo with a dot, would be published to an exchange that is not a task queue's. Whether a
        // well-formed name is declared is the broker's to say (its definitions hold the group's exchange).
        if (request.Queue is { } queue && !QueueCatalog.IsBuiltIn(queue) && QueueCatalog.Problem(queue, QueueCatalog.CpuLane) is { } problem)
        {
            throw new ArgumentException($"The queue of a task of type '{request.Type}': {problem}", nameof(request));
        }

        if (request.DelaySeconds is { } delay && !(delay >= 0 && delay <= TaskLimits.MaxDelaySeconds))
        {
            throw new ArgumentException(
                $"The delaySeconds of a task of type '{request.Type}' must be from 0 to {TaskLimits.MaxDelaySeconds} (366 days), not {delay}.", nameof(request));
        }

        // The delay counts from the submit time that is stored as submitted_at, so the two always differ by it.
        var notBefore = request.DelaySeconds is { } seconds ? now.AddSeconds(seconds) : request.NotBefore?.ToUniversalTime();
        if (notBefore > now.AddSeconds(TaskLimits.MaxDelaySeconds))
        {
            throw new ArgumentException($"The notBefore of a task of type '{request.Type}' is more than 366 days ahead.", nameof(request));
        }

        if (request.Priority is < TaskLimits.MinPriority or > TaskLimits.MaxPriority)
        {
            throw new ArgumentException(
                $"The priority of a task of type '{request.Type}' must be from {TaskLimits.MinPriority} to {TaskLimits.MaxPriority}, not {request.Priority}.", nameof(request));
        }

        var message = new ProcessTask
        {
            TaskId = request.TaskId ?? Guid.CreateVersion7(now),
            Type = request.Type,
            Payload = request.Payload,
            Priority = request.Priority,
            TimeoutSeconds = request.TimeoutSeconds,
            MaxAttempts = request.MaxAttempts ?? _options.DefaultMaxAttempts,
            BatchId = request.BatchId ?? batchId,
            SubmittedAt = now,
            NotBefore = notBefore,
            Tenant = request.Tenant,
            AfterBatchId = request.AfterBatchId,
        };
        if (request.UniqueKey is { } key && (key.Length is 0 or > TaskLimits.MaxUniqueKeyLength || key.Any(char.IsControl)))
        {
            throw new ArgumentException(
                $"The uniqueKey of a task of type '{request.Type}' must be 1 to {TaskLimits.MaxUniqueKeyLength} characters without control characters.", nameof(request));
        }

        return new OutgoingTask(_options.QueueFor(request), message)
        {
            UniqueKey = request.UniqueKey,
            ScheduleName = request.ScheduleName,
            ScheduledFor = request.ScheduledFor?.ToUniversalTime(),
            RequeuedFrom = request.RequeuedFrom,
        };
    }
}
