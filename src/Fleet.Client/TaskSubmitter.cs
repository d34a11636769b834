using System.Diagnostics;
using System.Text.Json;
using Fleet.Contracts;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.Client;

/// <summary>What a producer asks of one submission besides the tasks themselves.</summary>
public sealed record SubmitOptions
{
    /// <summary>
    /// The producer's <c>Idempotency-Key</c>. Stored in <c>fleet.idempotency_keys</c> in the same transaction as the
    /// tasks: a second submission under the same key creates nothing and returns the first one's ids.
    /// </summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>A hash of what was asked (endpoint and body); the same key with another hash is a conflict.</summary>
    public string? RequestHash { get; init; }

    /// <summary>The batch every task of this submission belongs to (set on tasks that name none).</summary>
    public Guid? BatchId { get; init; }
}

/// <summary>
/// The ids of a submission's tasks in request order; <see cref="Replayed"/> when an earlier request under the same
/// idempotency key created them. <see cref="PublishError"/> is set when the tasks are stored but the broker did not
/// confirm them all: they are accepted all the same, and the relay publishes them.
/// </summary>
public sealed record SubmitResult(IReadOnlyList<Guid> TaskIds, Guid? BatchId, bool Replayed, Exception? PublishError = null);

/// <summary>What one relay round did.</summary>
public readonly record struct RelayResult(bool HeldLock, int Republished);

/// <summary>
/// The one submission pipeline of Fleet, used by <see cref="FleetClient"/> and by the HTTP API:
/// <list type="number">
/// <item>the task rows (and the idempotency key, if any) commit together as <c>queued</c> with <c>published_at</c>
/// null: the "to publish" state of a transactional outbox, in the task row itself;</item>
/// <item>the messages are sent and the broker's publisher confirms awaited;</item>
/// <item><c>published_at</c> is stamped.</item>
/// </list>
/// A crash (or a broker outage) between 1 and 3 leaves rows with <c>published_at</c> null; <see cref="RelayUnpublishedAsync"/>
/// republishes those (found through the partial index <c>ix_tasks_unpublished</c>). Workers are idempotent by task
/// id, so a message sent twice (confirm received, crash before the stamp) still runs once.
/// Thread-safe.
/// </summary>
public sealed partial class TaskSubmitter
{
    /// <summary>
    /// The PostgreSQL advisory lock (session level) that a relay round holds, so that only one process (one API
    /// replica) relays at a time. The value spells "fleetRly" in ASCII.
    /// </summary>
    public const long RelayLockKey = 0x666C_6565_7452_6C79;

    private const string InsertSql = """
        INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, timeout_seconds, priority, batch_id, submitted_at)
        SELECT i.id, i.type, i.queue, 'queued', i.payload, 0, i.max_attempts, i.timeout_seconds, i.priority, i.batch_id, i.submitted_at
        FROM unnest(@id, @type, @queue, @payload, @max_attempts, @timeout_seconds, @priority, @batch_id, @submitted_at)
            AS i(id, type, queue, payload, max_attempts, timeout_seconds, priority, batch_id, submitted_at)
        ON CONFLICT (id) DO NOTHING
        """;

    // SKIP LOCKED: a worker may already be claiming or completing some of these rows (the message arrived before
    // the stamp). Waiting for those locks while holding others deadlocked with the workers' batched statements;
    // and a skipped row needs no stamp, because the claim sets published_at itself (a cancel does too).
    // The null test is a CASE so that the rows are found by primary key only: as "published_at IS NULL" it let the
    // planner read every unstamped task through ix_tasks_unpublished (the whole backlog while workers lag) and
    // join the chunk's ids to them.
    internal const string MarkPublishedSql = """
        UPDATE fleet.tasks SET published_at = now()
        WHERE id IN (SELECT id FROM fleet.tasks
                     WHERE id = ANY(@id) AND CASE WHEN published_at IS NULL THEN true ELSE false END
                     FOR UPDATE SKIP LOCKED)
        """;

    private const string InsertKeySql = """
        INSERT INTO fleet.idempotency_keys (key, request_hash, task_ids, batch_id, created_at)
        VALUES (@key, @hash, @task_ids, @batch_id, now())
        ON CONFLICT (key) DO NOTHING
        RETURNING key
        """;

    private const string SelectKeySql =
        "SELECT request_hash, task_ids, batch_id FROM fleet.idempotency_keys WHERE key = @key";

    private const string DeleteExpiredKeysSql = """
        DELETE FROM fleet.idempotency_keys
        WHERE key IN (SELECT key FROM fleet.idempotency_keys
                      WHERE created_at < now() - make_interval(secs => @age_seconds)
                      ORDER BY created_at LIMIT @limit)
        """;

    // Served by the partial index ix_tasks_unpublished (submitted_at WHERE published_at IS NULL), which holds only
    // submissions still waiting for their confirm. A cancelled task gets published_at when it is cancelled, so it
    // leaves the index; the status test is there for tasks that a worker took through another copy meanwhile.
    private const string SelectUnpublishedSql = $"""
        SELECT {TaskRows.Columns}
        FROM fleet.tasks t
        WHERE published_at IS NULL AND submitted_at < now() - make_interval(secs => @age_seconds) AND status = 'queued'
        ORDER BY submitted_at
        LIMIT @limit
        """;

    private readonly NpgsqlDataSource _dataSource;
    private readonly ITaskPublisher _publisher;
    private readonly TaskSubmitterOptions _options;
    private readonly ILogger _logger;

    public TaskSubmitter(NpgsqlDataSource dataSource, ITaskPublisher publisher, TaskSubmitterOptions options, ILogger<TaskSubmitter>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(publisher);
        ArgumentNullException.ThrowIfNull(options);
        System.ComponentModel.DataAnnotations.Validator.ValidateObject(options, new(options), validateAllProperties: true);
        _dataSource = dataSource;
        _publisher = publisher;
        _options = options;
        _logger = logger ?? NullLogger<TaskSubmitter>.Instance;
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

        var replay = await StoreAsync(tasks, options, cancellationToken).ConfigureAwait(false);
        if (replay is not null)
        {
            activity?.SetTag("fleet.submit.replayed", true);
            return replay;
        }

        var publishError = await PublishAndStampAsync(tasks, cancellationToken).ConfigureAwait(false);
        if (publishError is not null)
        {
            // Accepted all the same (the relay publishes later), but the trace should show that the send failed.
            activity?.SetStatus(ActivityStatusCode.Error, publishError.Message);
        }

        return new SubmitResult([.. tasks.Select(t => t.Message.TaskId)], options.BatchId, Replayed: false, publishError);
    }

    /// <summary>
    /// One relay round: if no other process holds <see cref="RelayLockKey"/>, republishes up to
    /// <paramref name="maxTasks"/> tasks that are still <c>queued</c> with <c>published_at</c> null and older than
    /// <paramref name="olderThan"/> (long enough that their own submission has given up), oldest first.
    /// </summary>
    /// <exception cref="TaskPublishException">The broker did not confirm the republished messages; the next round tries again.</exception>
    public async Task<RelayResult> RelayUnpublishedAsync(TimeSpan olderThan, int maxTasks, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTasks, 1);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (var tryLock = new NpgsqlCommand("SELECT pg_try_advisory_lock(@key)", connection))
        {
            tryLock.Parameters.AddWithValue("key", RelayLockKey);
            if (!(bool)(await tryLock.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
            {
                return new RelayResult(HeldLock: false, Republished: 0);
            }
        }

        try
        {
            var tasks = await ReadUnpublishedAsync(connection, olderThan, maxTasks, cancellationToken).ConfigureAwait(false);
            if (tasks.Count > 0)
            {
                // The original submit's trace is not stored with the row: a relayed task starts a trace of its own here.
                using var activity = ClientTelemetry.Source.StartActivity("fleet.relay");
                activity?.SetTag("fleet.task.count", tasks.Count);
                LogRelaying(tasks.Count, tasks[0].Message.SubmittedAt);
                var error = await PublishAndStampAsync(tasks, cancellationToken).ConfigureAwait(false);
                if (error is not null)
                {
                    throw new TaskPublishException([.. tasks.Select(t => t.Message.TaskId)], error);
                }
            }

            return new RelayResult(HeldLock: true, tasks.Count);
        }
        finally
        {
            // Session-level lock: released explicitly (a pooled connection would otherwise keep it until reset), and
            // by PostgreSQL itself if this process dies with the connection open.
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock(@key)", connection);
            unlock.Parameters.AddWithValue("key", RelayLockKey);
            await unlock.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>Deletes up to <paramref name="maxKeys"/> idempotency keys older than <paramref name="retention"/>; returns how many.</summary>
    public async Task<int> DeleteExpiredIdempotencyKeysAsync(TimeSpan retention, int maxKeys, CancellationToken cancellationToken = default)
    {
        await using var command = _dataSource.CreateCommand(DeleteExpiredKeysSql);
        command.Parameters.AddWithValue("age_seconds", retention.TotalSeconds);
        command.Parameters.AddWithValue("limit", maxKeys);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private OutgoingTask ToOutgoing(TaskRequest request, DateTimeOffset now, Guid? batchId)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentException.ThrowIfNullOrWhiteSpace(request.Type, nameof(request));
        if (request.Payload.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"The payload of task type '{request.Type}' must be a JSON object.", nameof(request));
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
        };
        return new OutgoingTask(_options.QueueFor(request), message);
    }

    /// <summary>Commits the rows (and the key); returns the earlier result instead when the key was used before.</summary>
    private async Task<SubmitResult?> StoreAsync(List<OutgoingTask> tasks, SubmitOptions options, CancellationToken cancellationToken)
    {
        // Two tries: a key found on conflict can expire (cleanup) before it is read; the second insert then wins.
        for (var attempt = 0; ; attempt++)
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false))
            {
                var keyInserted = options.IdempotencyKey is null ||
                    await TryInsertKeyAsync(connection, tasks, options, cancellationToken).ConfigureAwait(false);
                if (keyInserted)
                {
                    foreach (var chunk in tasks.Chunk(_options.ChunkSize))
                    {
                        await InsertAsync(connection, chunk, cancellationToken).ConfigureAwait(false);
                    }

                    await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                    return null;
                }

                // A concurrent first request holding the same key made the INSERT wait for its commit; the key row
                // is visible to the next statement, outside this transaction.
                await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
            }

            var earlier = await ReadKeyAsync(connection, options.IdempotencyKey!, cancellationToken).ConfigureAwait(false);
            if (earlier is not null)
            {
                return earlier.Value.Hash == options.RequestHash
                    ? new SubmitResult(earlier.Value.TaskIds, earlier.Value.BatchId, Replayed: true)
                    : throw new IdempotencyConflictException();
            }

            if (attempt >= 1)
            {
                throw new InvalidOperationException("The idempotency key kept conflicting without being readable.");
            }
        }
    }

    private static async Task<bool> TryInsertKeyAsync(NpgsqlConnection connection, List<OutgoingTask> tasks, SubmitOptions options, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(InsertKeySql, connection);
        command.Parameters.AddWithValue("key", options.IdempotencyKey!);
        command.Parameters.AddWithValue("hash", options.RequestHash!);
        command.Parameters.Add(Array("task_ids", NpgsqlDbType.Uuid, tasks.Select(t => t.Message.TaskId)));
        command.Parameters.Add(new NpgsqlParameter("batch_id", NpgsqlDbType.Uuid) { Value = (object?)options.BatchId ?? DBNull.Value });
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not null;
    }

    private static async Task<(string Hash, Guid[] TaskIds, Guid? BatchId)?> ReadKeyAsync(NpgsqlConnection connection, string key, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(SelectKeySql, connection);
        command.Parameters.AddWithValue("key", key);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        return (reader.GetString(0), reader.GetFieldValue<Guid[]>(1), reader.IsDBNull(2) ? null : reader.GetGuid(2));
    }

    private static async Task InsertAsync(NpgsqlConnection connection, OutgoingTask[] chunk, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(InsertSql, connection);
        command.Parameters.Add(Array("id", NpgsqlDbType.Uuid, chunk.Select(m => m.Message.TaskId)));
        command.Parameters.Add(Array("type", NpgsqlDbType.Text, chunk.Select(m => m.Message.Type)));
        command.Parameters.Add(Array("queue", NpgsqlDbType.Text, chunk.Select(m => m.Queue)));
        command.Parameters.Add(Array("payload", NpgsqlDbType.Jsonb, chunk.Select(m => m.Message.Payload.GetRawText())));
        command.Parameters.Add(Array("max_attempts", NpgsqlDbType.Integer, chunk.Select(m => m.Message.MaxAttempts)));
        command.Parameters.Add(Array("timeout_seconds", NpgsqlDbType.Integer, chunk.Select(m => m.Message.TimeoutSeconds)));
        command.Parameters.Add(Array("priority", NpgsqlDbType.Integer, chunk.Select(m => m.Message.Priority)));
        command.Parameters.Add(Array("batch_id", NpgsqlDbType.Uuid, chunk.Select(m => m.Message.BatchId)));
        command.Parameters.Add(Array("submitted_at", NpgsqlDbType.TimestampTz, chunk.Select(m => m.Message.SubmittedAt)));
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Sends chunk by chunk; each chunk is stamped as soon as the broker has confirmed it. A failed stamp is only
    /// logged: the rows stay unpublished and the relay sends them again, which workers recognise as duplicates.
    /// Returns the publish failure, if any; the chunks after a failed one are not tried (the relay takes them).
    /// </summary>
    private async Task<Exception?> PublishAndStampAsync(List<OutgoingTask> tasks, CancellationToken cancellationToken)
    {
        var done = 0;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.PublishTimeout);
        foreach (var chunk in tasks.Chunk(_options.ChunkSize))
        {
            try
            {
                await _publisher.PublishAsync(chunk, timeout.Token).ConfigureAwait(false);
            }
#pragma warning disable CA1031 // Whatever the transport throws, the rows are stored: the caller learns it from the result.
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
#pragma warning restore CA1031
            {
                LogPublishFailed(tasks.Count - done, ex.GetType().Name, ex.Message);
                return ex;
            }

            try
            {
                await using var command = _dataSource.CreateCommand(MarkPublishedSql);
                command.Parameters.Add(Array("id", NpgsqlDbType.Uuid, chunk.Select(m => m.Message.TaskId)));
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (NpgsqlException ex)
            {
                LogStampFailed(chunk.Length, ex.Message);
            }

            done += chunk.Length;
        }

        return null;
    }

    private static async Task<List<OutgoingTask>> ReadUnpublishedAsync(NpgsqlConnection connection, TimeSpan olderThan, int limit, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(SelectUnpublishedSql, connection);
        command.Parameters.AddWithValue("age_seconds", olderThan.TotalSeconds);
        command.Parameters.AddWithValue("limit", limit);
        var tasks = new List<OutgoingTask>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            tasks.Add(TaskRows.ReadOutgoing(reader));
        }

        return tasks;
    }

    private static NpgsqlParameter Array<T>(string name, NpgsqlDbType elementType, IEnumerable<T> values) =>
        new(name, NpgsqlDbType.Array | elementType) { Value = values.ToArray() };

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Count} stored tasks were not confirmed by the broker ({ErrorType}: {Reason}); the relay will publish them")]
    private partial void LogPublishFailed(int count, string errorType, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Count} tasks were confirmed but published_at could not be stamped ({Reason}); the relay will send them again, and workers will skip the copies")]
    private partial void LogStampFailed(int count, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Relay: republishing {Count} tasks whose publish was never confirmed (oldest submitted {Oldest:o})")]
    private partial void LogRelaying(int count, DateTimeOffset? oldest);
}

/// <summary>The tasks are stored, but the broker did not confirm their messages; the relay publishes them later.</summary>
public sealed class TaskPublishException : Exception
{
    public TaskPublishException(IReadOnlyList<Guid> taskIds, Exception innerException)
        : base($"{taskIds.Count} tasks are stored but their publish was not confirmed: {innerException?.Message}", innerException)
    {
        TaskIds = taskIds;
    }

    public TaskPublishException()
    {
        TaskIds = [];
    }

    public TaskPublishException(string message)
        : base(message)
    {
        TaskIds = [];
    }

    public TaskPublishException(string message, Exception innerException)
        : base(message, innerException)
    {
        TaskIds = [];
    }

    /// <summary>The stored tasks that were not confirmed.</summary>
    public IReadOnlyList<Guid> TaskIds { get; }
}

/// <summary>The idempotency key was used before with a different request.</summary>
public sealed class IdempotencyConflictException : Exception
{
    public IdempotencyConflictException()
        : base("This idempotency key was already used for a different request.")
    {
    }

    public IdempotencyConflictException(string message)
        : base(message)
    {
    }

    public IdempotencyConflictException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
