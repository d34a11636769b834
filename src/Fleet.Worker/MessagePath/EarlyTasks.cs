using Fleet.Contracts;
using Fleet.Persistence;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// Keeps a task from running before its time when its message arrives early: a plain JSON body published straight
/// to a lane with <c>notBefore</c> (or <c>delaySeconds</c>) ahead. Instead of running it, the worker stores it as a
/// delayed task, <c>queued</c> with that <c>not_before</c> and <c>published_at</c> null, and acknowledges the
/// message; the due relay publishes it again at its time. PostgreSQL's clock has the last word: the row is written
/// only while <c>now()</c> is still before <c>not_before</c>, so a worker whose clock runs behind the database's
/// cannot bounce a due task back and forth; it runs it.
/// The same hand-over serves a plain JSON body that arrives in a lane but is the dispatcher's to publish (a tenant, a
/// priority above 0, a type under a limit): it is stored as a dispatched task, so that it takes its turn with the
/// others of its tenant and priority and counts against its limits, instead of running ahead of them.
/// </summary>
public sealed partial class EarlyTasks(NpgsqlDataSource dataSource, ILogger<EarlyTasks> logger)
{
    // One statement for both cases: a task with no row yet is inserted as a delayed (or dispatched) task; a queued
    // row (a copy of a message that was handed over before) waits again for its time or its turn. A row that is
    // running or final is left alone: the claim decides about such a copy, as for any duplicate.
    private const string DeferSql = """
        INSERT INTO fleet.tasks AS t (id, type, queue, status, payload, attempts, max_attempts, timeout_seconds, priority,
                                      batch_id, submitted_at, not_before, tenant, dispatched)
        SELECT @id, @type, @queue, 'queued', @payload, 0, @max_attempts, @timeout_seconds, @priority,
               @batch_id, coalesce(@submitted_at, now()), @not_before, @tenant, @dispatched
        WHERE @dispatched OR now() < @not_before
        ON CONFLICT (id) DO UPDATE SET published_at = NULL, not_before = excluded.not_before, dispatched = t.dispatched OR excluded.dispatched
            WHERE t.status = 'queued'
        RETURNING t.id
        """;

    /// <summary>
    /// When the task may start, by the message: its <c>notBefore</c>, else <c>delaySeconds</c> counted from its
    /// <c>submittedAt</c> or, without one, from <paramref name="receivedAt"/>; null when it names neither (the usual
    /// message, which then costs nothing more). A negative or non-finite delay means none; one beyond
    /// <see cref="TaskLimits.MaxDelaySeconds"/> is cut to it.
    /// </summary>
    public static DateTimeOffset? DueTime(ProcessTask message, DateTimeOffset receivedAt)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.NotBefore is { } notBefore)
        {
            return notBefore.ToUniversalTime();
        }

        return message.DelaySeconds is { } delay && delay > 0 && double.IsFinite(delay)
            ? (message.SubmittedAt ?? receivedAt).ToUniversalTime().AddSeconds(Math.Min(delay, TaskLimits.MaxDelaySeconds))
            : null;
    }

    /// <summary>
    /// Stores the task as delayed until <paramref name="notBefore"/> when PostgreSQL's clock says it is still early,
    /// or, when <paramref name="dispatched"/>, as a dispatched task (its <paramref name="notBefore"/>, if any, kept);
    /// returns whether it did (then the message is to be acknowledged without running). False when the time has come
    /// by the database's clock (and it is not dispatched), when the task is already running or final, or when its
    /// payload cannot be stored as given (the claim then records the task as it does any such payload).
    /// </summary>
    public async Task<bool> DeferAsync(Guid taskId, string queue, ProcessTask message, DateTimeOffset? notBefore, bool dispatched, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        await using var command = dataSource.CreateCommand(DeferSql);
        command.Parameters.AddWithValue("id", taskId);
        command.Parameters.AddWithValue("type", StorableForm.Text(message.Type ?? "", StorableForm.MaxNameLength)!);
        command.Parameters.AddWithValue("queue", queue);
        command.Parameters.Add(new NpgsqlParameter("payload", NpgsqlDbType.Jsonb)
        {
            Value = message.Payload.ValueKind == System.Text.Json.JsonValueKind.Undefined ? "null" : message.Payload.GetRawText(),
        });
        command.Parameters.AddWithValue("max_attempts", ProcessTaskConsumer.MaxAttemptsOf(message));
        command.Parameters.Add(new NpgsqlParameter("timeout_seconds", NpgsqlDbType.Integer) { Value = (object?)message.TimeoutSeconds ?? DBNull.Value });
        command.Parameters.AddWithValue("priority", message.Priority);
        command.Parameters.Add(new NpgsqlParameter("batch_id", NpgsqlDbType.Uuid) { Value = (object?)message.BatchId ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("submitted_at", NpgsqlDbType.TimestampTz) { Value = (object?)message.SubmittedAt?.ToUniversalTime() ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("not_before", NpgsqlDbType.TimestampTz) { Value = (object?)notBefore?.ToUniversalTime() ?? DBNull.Value });
        command.Parameters.AddWithValue("dispatched", dispatched);
        command.Parameters.Add(new NpgsqlParameter("tenant", NpgsqlDbType.Text) { Value = (object?)StorableForm.Text(message.Tenant, StorableForm.MaxNameLength) ?? DBNull.Value });
        try
        {
            if (await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is null)
            {
                return false;
            }
        }
        catch (PostgresException ex) when (ex.SqlState is PostgresErrorCodes.UntranslatableCharacter or PostgresErrorCodes.InvalidTextRepresentation
                                             or PostgresErrorCodes.CharacterNotInRepertoire)
        {
            // A payload jsonb refuses (a NUL, a lone surrogate): the claim stores it in storable form and fails the
            // task without running it, as it does for such a payload at any time.
            LogNotStorable(taskId, ex.SqlState);
            return false;
        }

        if (dispatched)
        {
            LogDispatched(taskId);
        }
        else
        {
            LogDeferred(taskId, notBefore!.Value);
        }

        return true;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Task {TaskId} arrived before its notBefore {NotBefore:o}; stored as delayed, the due relay publishes it at its time")]
    private partial void LogDeferred(Guid taskId, DateTimeOffset notBefore);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Task {TaskId} arrived in its lane but has a tenant, a priority or a limited type; stored for the dispatcher to publish in its turn")]
    private partial void LogDispatched(Guid taskId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Task {TaskId} arrived early, but its payload cannot be stored as given ({SqlState}); the claim records it")]
    private partial void LogNotStorable(Guid taskId, string sqlState);
}
