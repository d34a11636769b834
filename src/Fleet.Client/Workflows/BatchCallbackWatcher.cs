using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.Client;

/// <summary>
/// Creates each batch's onComplete task once every task of the batch is final (<c>fleet.batch_callbacks</c>). Every
/// API replica and worker runs it; a round runs only in the process that wins a transaction advisory lock, so one
/// process looks at a time. Nothing on a task's own path writes anything for it: the watcher reads each pending batch
/// in <c>ix_tasks_batch</c> order from where it last found an open task (the row keeps that place), so a batch of n
/// tasks costs about n row reads overall, however often it is polled, and no task's completion updates a shared row.
/// Exactly once: the callback task's id is fixed at submit, so a second creation (a leader that died between the
/// task's commit and <c>fired_at</c>) inserts nothing; its second message is skipped by the worker's claim.
/// </summary>
public sealed partial class BatchCallbackWatcher
{
    /// <summary>The transaction advisory lock of a round (one process at a time).</summary>
    public const long LockKey = 0x666C_6565_7442_6377;

    /// <summary>Most pending callbacks one round looks at.</summary>
    private const int RoundSize = 200;

    private const string TryLock = "SELECT pg_try_advisory_xact_lock(@key)";

    // Oldest first from where the last round stopped, through the partial index ix_batch_callbacks_pending (fired_at
    // IS NULL): with more than a round's worth pending, long-running batches at the head must not keep the newer ones
    // from ever being looked at, so the rounds walk on and start over once they reach the end.
    private const string SelectPending = """
        SELECT batch_id, task::text, checked_submitted_at, checked_task_id, created_at
        FROM fleet.batch_callbacks
        WHERE fired_at IS NULL AND (created_at, batch_id) > (@after_at, @after_id)
        ORDER BY created_at, batch_id
        LIMIT @limit
        """;

    // The first task of the batch, from the watcher's place on, that is still open: an index range scan of
    // ix_tasks_batch (batch_id, submitted_at, id) that stops at the first open row; none means the batch is done.
    private const string FirstOpen = """
        SELECT submitted_at, id
        FROM fleet.tasks
        WHERE batch_id = @batch_id
          AND (submitted_at, id) >= (coalesce(@after_at, '-infinity'::timestamptz), coalesce(@after_id, '00000000-0000-0000-0000-000000000000'::uuid))
          AND status IN ('queued','running')
        ORDER BY submitted_at, id
        LIMIT 1
        """;

    private const string SavePlace = """
        UPDATE fleet.batch_callbacks SET checked_submitted_at = @at, checked_task_id = @id WHERE batch_id = @batch_id
        """;

    private const string MarkFired = "UPDATE fleet.batch_callbacks SET fired_at = now() WHERE batch_id = @batch_id AND fired_at IS NULL";

    private readonly NpgsqlDataSource _dataSource;
    private readonly TaskSubmitter _submitter;
    private readonly ILogger _logger;

    // Where the next round starts (the last callback this process looked at); the start of the table after a short round.
    private (DateTimeOffset At, Guid Id) _next = (DateTimeOffset.MinValue, Guid.Empty);

    // Callbacks refused so far, logged once each rather than every round.
    private readonly HashSet<Guid> _refused = [];

    public BatchCallbackWatcher(NpgsqlDataSource dataSource, ITaskPublisher publisher, ILogger<BatchCallbackWatcher>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(publisher);
        _dataSource = dataSource;
        _logger = logger ?? (ILogger)NullLogger<BatchCallbackWatcher>.Instance;
        _submitter = new TaskSubmitter(dataSource, publisher, new TaskSubmitterOptions());
    }

    /// <summary>Rounds every <paramref name="interval"/> until stopped; a failed round is logged and the next one tries again.</summary>
    public async Task RunAsync(TimeSpan interval, CancellationToken stoppingToken)
    {
        var failing = false;
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await RunOnceAsync(stoppingToken).ConfigureAwait(false);
                    failing = false;
                }
#pragma warning disable CA1031 // Whatever failed, the callbacks are stored and the next round looks again.
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is not OutOfMemoryException)
#pragma warning restore CA1031
                {
                    if (!failing)
                    {
                        failing = true;
                        LogRoundFailed(ex.GetType().Name, ex.Message);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>One round; returns how many callback tasks it created (0 when another process holds the lock).</summary>
    public async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var tryLock = new NpgsqlCommand(TryLock, connection))
        {
            tryLock.Parameters.AddWithValue("key", LockKey);
            if (await tryLock.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not true)
            {
                return 0;
            }
        }

        var pending = new List<(Guid BatchId, string Task, DateTimeOffset? At, Guid? Id)>();
        var last = _next;
        await using (var select = new NpgsqlCommand(SelectPending, connection))
        {
            select.Parameters.AddWithValue("limit", RoundSize);
            select.Parameters.Add(new NpgsqlParameter("after_at", NpgsqlDbType.TimestampTz) { Value = _next.At });
            select.Parameters.AddWithValue("after_id", _next.Id);
            await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                pending.Add((reader.GetGuid(0), reader.GetString(1),
                    reader.IsDBNull(2) ? null : reader.GetFieldValue<DateTimeOffset>(2), reader.IsDBNull(3) ? null : reader.GetGuid(3)));
                last = (reader.GetFieldValue<DateTimeOffset>(4), reader.GetGuid(0));
            }
        }

        _next = pending.Count < RoundSize ? (DateTimeOffset.MinValue, Guid.Empty) : last;

        var fired = 0;
        foreach (var callback in pending)
        {
            var open = await FirstOpenAsync(connection, callback.BatchId, callback.At, callback.Id, cancellationToken).ConfigureAwait(false);
            if (open is { } place)
            {
                if (place.At != callback.At || place.Id != callback.Id)
                {
                    await ExecuteAsync(connection, SavePlace, cancellationToken, ("batch_id", callback.BatchId), ("at", place.At), ("id", place.Id)).ConfigureAwait(false);
                }

                continue;
            }

            // Created on the submitter's own connection and committed there: the id fixed at submit makes a repeat
            // (this round failing before its commit below) insert nothing. A callback that cannot be created is
            // logged and tried again next round; it must not hold up the batches after it.
            var request = BatchCallbackTask.FromJson(callback.Task, callback.BatchId);
            try
            {
                await _submitter.SubmitAsync([request], cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            catch (ArgumentException ex)
            {
                if (_refused.Add(callback.BatchId))
                {
                    LogCallbackRefused(callback.BatchId, request.Type, ex.Message);
                }

                continue;
            }

            await ExecuteAsync(connection, MarkFired, cancellationToken, ("batch_id", callback.BatchId)).ConfigureAwait(false);
            LogFired(callback.BatchId, request.TaskId!.Value, request.Type);
            fired++;
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return fired;
    }

    private static async Task<(DateTimeOffset At, Guid Id)?> FirstOpenAsync(
        NpgsqlConnection connection, Guid batchId, DateTimeOffset? at, Guid? id, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(FirstOpen, connection);
        command.Parameters.AddWithValue("batch_id", batchId);
        command.Parameters.Add(new NpgsqlParameter("after_at", NpgsqlDbType.TimestampTz) { Value = (object?)at ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("after_id", NpgsqlDbType.Uuid) { Value = (object?)id ?? DBNull.Value });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
            ? (reader.GetFieldValue<DateTimeOffset>(0), reader.GetGuid(1))
            : null;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken, params (string Name, object Value)[] parameters)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId} ended: created its onComplete task {TaskId} ({Type})")]
    private partial void LogFired(Guid batchId, Guid taskId, string type);

    [LoggerMessage(Level = LogLevel.Error, Message = "Batch {BatchId} ended, but its onComplete task ({Type}) was refused: {Error}; tried again each round")]
    private partial void LogCallbackRefused(Guid batchId, string type, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A batch watcher round failed ({ErrorType}: {Error}); the next round tries again")]
    private partial void LogRoundFailed(string errorType, string error);
}
