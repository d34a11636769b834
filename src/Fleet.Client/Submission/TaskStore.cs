using Npgsql;
using NpgsqlTypes;

namespace Fleet.Client;

/// <summary>What storing a submission found besides the rows it inserted.</summary>
/// <param name="Replay">The earlier submission under the same idempotency key, when there was one (nothing was stored).</param>
/// <param name="ExistingFirings">Schedule firings not stored because their firing has a task already.</param>
/// <param name="ExistingUnique">For tasks whose uniqueKey matched an active task: their id to that task's id.</param>
internal sealed record StoreOutcome(SubmitResult? Replay, HashSet<Guid>? ExistingFirings = null, Dictionary<Guid, Guid>? ExistingUnique = null);

/// <summary>A batch's onComplete task to record with the batch (<c>fleet.batch_callbacks</c>).</summary>
internal sealed record BatchCallbackRow(Guid BatchId, Guid TaskId, string TaskJson);

/// <summary>
/// Step 1 of a submission: commits the task rows (bulk INSERTs of <c>chunkSize</c> rows), the batch's callback and the
/// idempotency key, if any, in one transaction; or finds that the key was used before and returns that submission
/// instead.
/// </summary>
internal sealed class TaskStore(NpgsqlDataSource dataSource, int chunkSize)
{
    /// <summary>Commits the rows (the callback, the key); returns the earlier result instead when the key was used before.</summary>
    /// <exception cref="IdempotencyConflictException">The key was used before for a different request.</exception>
    public async Task<StoreOutcome> StoreAsync(List<OutgoingTask> tasks, SubmitOptions options, BatchCallbackRow? callback, CancellationToken cancellationToken)
    {
        // Two tries: a key found on conflict can expire (cleanup) before it is read; the second insert then wins.
        for (var attempt = 0; ; attempt++)
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false))
            {
                var keyInserted = options.IdempotencyKey is null ||
                    await TryInsertKeyAsync(connection, tasks, options, cancellationToken).ConfigureAwait(false);
                if (keyInserted)
                {
                    HashSet<Guid>? existingFirings = null;
                    Dictionary<Guid, Guid>? existingUnique = null;
                    foreach (var chunk in tasks.Chunk(chunkSize))
                    {
                        if (await InsertAsync(connection, chunk, cancellationToken).ConfigureAwait(false) is { Count: > 0 } notInserted)
                        {
                            foreach (var task in chunk.Where(t => notInserted.Contains(t.Message.TaskId)))
                            {
                                if (task.ScheduleName is not null)
                                {
                                    (existingFirings ??= []).Add(task.Message.TaskId);
                                }
                            }

                            var unique = chunk.Where(t => t.UniqueKey is not null && notInserted.Contains(t.Message.TaskId)).ToList();
                            if (unique.Count > 0)
                            {
                                foreach (var (id, existing) in await ResolveUniqueAsync(connection, unique, cancellationToken).ConfigureAwait(false))
                                {
                                    (existingUnique ??= [])[id] = existing;
                                }
                            }
                        }
                    }

                    if (callback is not null)
                    {
                        await InsertCallbackAsync(connection, callback, cancellationToken).ConfigureAwait(false);
                    }

                    // The key was written with this try's ids before the inserts; a task whose uniqueKey an active task
                    // holds was answered with the holder's id, and a retry must get that id back, not one never stored.
                    if (options.IdempotencyKey is not null && existingUnique is not null)
                    {
                        await UpdateKeyAsync(connection, tasks, existingUnique, options.IdempotencyKey, cancellationToken).ConfigureAwait(false);
                    }

                    await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                    return new StoreOutcome(null, existingFirings, existingUnique);
                }

                // A concurrent first request holding the same key made the INSERT wait for its commit; the key row
                // is visible to the next statement, outside this transaction.
                await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
            }

            var earlier = await ReadKeyAsync(connection, options.IdempotencyKey!, cancellationToken).ConfigureAwait(false);
            if (earlier is not null)
            {
                return earlier.Value.Hash == options.RequestHash
                    ? new StoreOutcome(new SubmitResult(earlier.Value.TaskIds, earlier.Value.BatchId, Replayed: true))
                    : throw new IdempotencyConflictException();
            }

            if (attempt >= 1)
            {
                throw new InvalidOperationException("The idempotency key kept conflicting without being readable.");
            }
        }
    }

    /// <summary>
    /// For tasks whose insert did nothing and that carry a uniqueKey: the active task holding each key. A key whose
    /// holder ended between the insert and this read is free again, so its task is inserted after all (a few rounds at
    /// most: each round needs another task with the key to start and end meanwhile). A task found by neither way was
    /// not inserted because its id exists (a resubmission), and keeps its id.
    /// </summary>
    private static async Task<List<(Guid Id, Guid Existing)>> ResolveUniqueAsync(NpgsqlConnection connection, List<OutgoingTask> tasks, CancellationToken cancellationToken)
    {
        var found = new List<(Guid, Guid)>();
        for (var round = 0; tasks.Count > 0 && round < 5; round++)
        {
            var holders = new Dictionary<string, Guid>(StringComparer.Ordinal);
            await using (var command = new NpgsqlCommand(SubmissionSql.SelectUniqueHolders, connection))
            {
                command.Parameters.Add(SubmissionSql.Array("keys", NpgsqlDbType.Text, tasks.Select(t => t.UniqueKey)));
                await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    holders[reader.GetString(0)] = reader.GetGuid(1);
                }
            }

            var free = new List<OutgoingTask>();
            foreach (var task in tasks)
            {
                if (holders.TryGetValue(task.UniqueKey!, out var holder) && holder != task.Message.TaskId)
                {
                    found.Add((task.Message.TaskId, holder));
                }
                else if (!holders.ContainsKey(task.UniqueKey!))
                {
                    free.Add(task);
                }
            }

            tasks = free;
            if (free.Count == 0)
            {
                break;
            }

            var notInserted = await InsertAsync(connection, [.. free], cancellationToken).ConfigureAwait(false) ?? [];
            tasks = free.Where(t => notInserted.Contains(t.Message.TaskId)).ToList();
            if (tasks.Count > 0)
            {
                // A task whose id exists already (a resubmission) keeps its id, as any resubmission does.
                var existing = await ExistingIdsAsync(connection, tasks, cancellationToken).ConfigureAwait(false);
                tasks.RemoveAll(t => existing.Contains(t.Message.TaskId));
            }
        }

        // Still neither stored nor matched: the key changed hands in every round. Publishing such a task would let a
        // worker's claim create it beside the key's holder, so the whole submission is refused (and rolled back).
        return tasks.Count == 0
            ? found
            : throw new InvalidOperationException($"The uniqueKey '{tasks[0].UniqueKey}' kept changing hands; nothing was stored. Submit again.");
    }

    private static async Task<HashSet<Guid>> ExistingIdsAsync(NpgsqlConnection connection, List<OutgoingTask> tasks, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT id FROM fleet.tasks WHERE id = ANY(@id)", connection);
        command.Parameters.Add(SubmissionSql.Array("id", NpgsqlDbType.Uuid, tasks.Select(t => t.Message.TaskId)));
        var ids = new HashSet<Guid>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            ids.Add(reader.GetGuid(0));
        }

        return ids;
    }

    private static async Task InsertCallbackAsync(NpgsqlConnection connection, BatchCallbackRow callback, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(SubmissionSql.InsertBatchCallback, connection);
        command.Parameters.AddWithValue("batch_id", callback.BatchId);
        command.Parameters.AddWithValue("task_id", callback.TaskId);
        command.Parameters.Add(new NpgsqlParameter("task", NpgsqlDbType.Jsonb) { Value = callback.TaskJson });
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private static async Task<bool> TryInsertKeyAsync(NpgsqlConnection connection, List<OutgoingTask> tasks, SubmitOptions options, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(SubmissionSql.InsertKey, connection);
        command.Parameters.AddWithValue("key", options.IdempotencyKey!);
        command.Parameters.AddWithValue("hash", options.RequestHash!);
        command.Parameters.Add(SubmissionSql.Array("task_ids", NpgsqlDbType.Uuid, tasks.Select(t => t.Message.TaskId)));
        command.Parameters.Add(new NpgsqlParameter("batch_id", NpgsqlDbType.Uuid) { Value = (object?)options.BatchId ?? DBNull.Value });
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not null;
    }

    private static async Task UpdateKeyAsync(NpgsqlConnection connection, List<OutgoingTask> tasks, Dictionary<Guid, Guid> existing, string key, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("UPDATE fleet.idempotency_keys SET task_ids = @task_ids WHERE key = @key", connection);
        command.Parameters.AddWithValue("key", key);
        command.Parameters.Add(SubmissionSql.Array("task_ids", NpgsqlDbType.Uuid,
            tasks.Select(t => existing.TryGetValue(t.Message.TaskId, out var holder) ? holder : t.Message.TaskId)));
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private static async Task<(string Hash, Guid[] TaskIds, Guid? BatchId)?> ReadKeyAsync(NpgsqlConnection connection, string key, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(SubmissionSql.SelectKey, connection);
        command.Parameters.AddWithValue("key", key);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        return (reader.GetString(0), reader.GetFieldValue<Guid[]>(1), reader.IsDBNull(2) ? null : reader.GetGuid(2));
    }

    /// <summary>
    /// Inserts the chunk; returns the ids of its schedule firings and uniqueKey tasks that were not inserted (null
    /// when it holds neither: then the statement has no RETURNING, as always for plain tasks).
    /// </summary>
    private static async Task<HashSet<Guid>?> InsertAsync(NpgsqlConnection connection, OutgoingTask[] chunk, CancellationToken cancellationToken)
    {
        var firings = chunk.Any(m => m.ScheduleName is not null || m.UniqueKey is not null)
            ? chunk.Where(m => m.ScheduleName is not null || m.UniqueKey is not null).Select(m => m.Message.TaskId).ToHashSet()
            : null;
        await using var command = new NpgsqlCommand(firings is null ? SubmissionSql.InsertTasks : SubmissionSql.InsertTasksReturning, connection);
        command.Parameters.Add(SubmissionSql.Array("id", NpgsqlDbType.Uuid, chunk.Select(m => m.Message.TaskId)));
        command.Parameters.Add(SubmissionSql.Array("type", NpgsqlDbType.Text, chunk.Select(m => m.Message.Type)));
        command.Parameters.Add(SubmissionSql.Array("queue", NpgsqlDbType.Text, chunk.Select(m => m.Queue)));
        command.Parameters.Add(SubmissionSql.Array("payload", NpgsqlDbType.Jsonb, chunk.Select(m => m.Message.Payload.GetRawText())));
        command.Parameters.Add(SubmissionSql.Array("max_attempts", NpgsqlDbType.Integer, chunk.Select(m => m.Message.MaxAttempts)));
        command.Parameters.Add(SubmissionSql.Array("timeout_seconds", NpgsqlDbType.Integer, chunk.Select(m => m.Message.TimeoutSeconds)));
        command.Parameters.Add(SubmissionSql.Array("priority", NpgsqlDbType.Integer, chunk.Select(m => m.Message.Priority)));
        command.Parameters.Add(SubmissionSql.Array("batch_id", NpgsqlDbType.Uuid, chunk.Select(m => m.Message.BatchId)));
        command.Parameters.Add(SubmissionSql.Array("submitted_at", NpgsqlDbType.TimestampTz, chunk.Select(m => m.Message.SubmittedAt)));
        command.Parameters.Add(SubmissionSql.Array("not_before", NpgsqlDbType.TimestampTz, chunk.Select(m => m.Message.NotBefore)));
        command.Parameters.Add(SubmissionSql.Array("tenant", NpgsqlDbType.Text, chunk.Select(m => m.Message.Tenant)));
        command.Parameters.Add(SubmissionSql.Array("schedule_name", NpgsqlDbType.Text, chunk.Select(m => m.ScheduleName)));
        command.Parameters.Add(SubmissionSql.Array("scheduled_for", NpgsqlDbType.TimestampTz, chunk.Select(m => m.ScheduledFor)));
        command.Parameters.Add(SubmissionSql.Array("dispatched", NpgsqlDbType.Boolean, chunk.Select(m => m.Dispatched)));
        command.Parameters.Add(SubmissionSql.Array("after_task_id", NpgsqlDbType.Uuid, chunk.Select(m => m.Message.AfterTaskId)));
        command.Parameters.Add(SubmissionSql.Array("next_task_id", NpgsqlDbType.Uuid, chunk.Select(m => m.NextTaskId)));
        command.Parameters.Add(SubmissionSql.Array("after_batch_id", NpgsqlDbType.Uuid, chunk.Select(m => m.Message.AfterBatchId)));
        command.Parameters.Add(SubmissionSql.Array("requeued_from", NpgsqlDbType.Uuid, chunk.Select(m => m.RequeuedFrom)));
        command.Parameters.Add(SubmissionSql.Array("unique_key", NpgsqlDbType.Text, chunk.Select(m => m.UniqueKey)));
        if (firings is null)
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return null;
        }

        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            firings.Remove(reader.GetGuid(0));
        }

        return firings;
    }
}
