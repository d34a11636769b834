using System.Globalization;
using System.Text;
using System.Text.Json;
using Npgsql;

namespace Fleet.Client;

/// <summary>
/// Runs final tasks again, for the API's <c>POST /tasks/{id}/requeue</c> and <c>POST /tasks/requeue</c> and for
/// <c>fleet requeue</c>. A requeue never touches the old row: a final state never changes, and what a task did stays
/// on record. It submits a new task through <see cref="TaskSubmitter"/> (so the outbox, the dispatcher and the limits
/// apply as to any submission) with the old task's type, payload, queue, priority, time limit, attempts and tenant,
/// and the old id in <c>tasks.requeued_from</c>. It does not carry the old task's batch (a batch's counts and its
/// onComplete are about what was submitted in it, and are final once it is), its chain links (the chain ended), its
/// unique key or its schedule firing. Thread-safe.
/// </summary>
public sealed class TaskRequeuer(NpgsqlDataSource dataSource, TaskSubmitter submitter)
{
    /// <summary>
    /// Bulk requeues take this transaction-level advisory lock ("fleetReq") around their select and submit, so that
    /// two of them at once cannot both see a task as not yet requeued and both run it again: the second one selects
    /// after the first committed its new rows, and skips their old tasks.
    /// </summary>
    public const long LockKey = 0x666C_6565_7452_6571;

    private const string Columns = "t.id, t.type, t.queue, t.payload::text, t.priority, t.timeout_seconds, t.max_attempts, t.tenant, t.status";

    private readonly NpgsqlDataSource _dataSource = dataSource ?? throw new ArgumentNullException(nameof(dataSource));
    private readonly TaskSubmitter _submitter = submitter ?? throw new ArgumentNullException(nameof(submitter));

    /// <summary>Requeues one final task. An explicit request: it runs the task again even if it was requeued before.</summary>
    /// <exception cref="IdempotencyConflictException">The idempotency key was used before for a different request.</exception>
    public async Task<RequeueOneResult> RequeueAsync(Guid id, SubmitOptions? options = null, CancellationToken cancellationToken = default)
    {
        if (await ReplayAsync(options, cancellationToken).ConfigureAwait(false) is { } replay)
        {
            return new RequeueOneResult(RequeueOutcome.Requeued, replay);
        }

        await using var command = _dataSource.CreateCommand($"SELECT {Columns} FROM fleet.tasks t WHERE t.id = @id");
        command.Parameters.AddWithValue("id", id);
        var found = await ReadAsync(command, cancellationToken).ConfigureAwait(false);
        if (found.Count == 0)
        {
            return new RequeueOneResult(RequeueOutcome.NotFound);
        }

        var (request, status) = found[0];
        if (!RequeueFilter.FinalStates.Contains(status))
        {
            return new RequeueOneResult(RequeueOutcome.NotFinal, Status: status);
        }

        return new RequeueOneResult(RequeueOutcome.Requeued, await SubmitAsync([request], options, cancellationToken).ConfigureAwait(false), status);
    }

    /// <summary>
    /// Requeues the final tasks that <paramref name="filter"/> selects, the earliest finished first, skipping those
    /// requeued before unless <see cref="RequeueFilter.Again"/>; all in one submission. None selected is an empty result.
    /// </summary>
    /// <exception cref="ArgumentException">The filter has problems (<see cref="RequeueFilter.Check"/>).</exception>
    /// <exception cref="IdempotencyConflictException">The idempotency key was used before for a different request.</exception>
    public async Task<RequeueResult> RequeueAsync(RequeueFilter filter, SubmitOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        if (filter.Check() is { Count: > 0 } problems)
        {
            throw new ArgumentException(string.Join(" ", problems.Select(p => $"{p.Field}: {p.Problem}")), nameof(filter));
        }

        // Asked before selecting: a retry must get the first answer, not a new selection (which, without "again",
        // would find nothing left to requeue).
        if (await ReplayAsync(options, cancellationToken).ConfigureAwait(false) is { } replay)
        {
            return replay;
        }

        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var lockCommand = new NpgsqlCommand("SELECT pg_advisory_xact_lock(@key)", connection, transaction))
        {
            lockCommand.Parameters.AddWithValue("key", LockKey);
            await lockCommand.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await using var select = SelectCommand(filter, connection, transaction);
        var found = await ReadAsync(select, cancellationToken).ConfigureAwait(false);
        var result = found.Count == 0
            ? new RequeueResult([], Replayed: false)
            : await SubmitAsync([.. found.Select(f => f.Request)], options, cancellationToken).ConfigureAwait(false);

        // Releases the lock only now that the new rows are committed (by the submission's own transaction).
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return result;
    }

    /// <summary>
    /// The selection, with only the conditions the filter uses: a plan for "@x IS NULL OR ..." could not use the
    /// indexes (the client's pool plans generically). ix_tasks_requeued_from answers the "requeued before" test.
    /// </summary>
    private static NpgsqlCommand SelectCommand(RequeueFilter filter, NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        var sql = new StringBuilder($"SELECT {Columns} FROM fleet.tasks t WHERE t.status = ANY(@statuses)");
        var command = new NpgsqlCommand { Connection = connection, Transaction = transaction };
        command.Parameters.AddWithValue("statuses", filter.Statuses.Distinct(StringComparer.Ordinal).ToArray());
        if (filter.Type is not null)
        {
            sql.Append(" AND t.type = @type");
            command.Parameters.AddWithValue("type", filter.Type);
        }

        if (filter.BatchId is { } batchId)
        {
            sql.Append(" AND t.batch_id = @batch_id");
            command.Parameters.AddWithValue("batch_id", batchId);
        }

        if (filter.FinishedSince is { } since)
        {
            sql.Append(" AND t.finished_at >= @since");
            command.Parameters.AddWithValue("since", since.ToUniversalTime());
        }

        if (filter.FinishedUntil is { } until)
        {
            sql.Append(" AND t.finished_at < @until");
            command.Parameters.AddWithValue("until", until.ToUniversalTime());
        }

        if (!filter.Again)
        {
            sql.Append(" AND NOT EXISTS (SELECT 1 FROM fleet.tasks r WHERE r.requeued_from = t.id)");
        }

        sql.Append(CultureInfo.InvariantCulture, $" ORDER BY t.finished_at, t.id LIMIT {filter.Limit}");
        command.CommandText = sql.ToString();
        return command;
    }

    private static async Task<List<(TaskRequest Request, string Status)>> ReadAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        var found = new List<(TaskRequest, string)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            using var payload = JsonDocument.Parse(reader.GetString(3));
            found.Add((new TaskRequest(reader.GetString(1), payload.RootElement.Clone())
            {
                Queue = reader.GetString(2),
                Priority = reader.GetInt32(4),
                TimeoutSeconds = reader.IsDBNull(5) ? null : reader.GetInt32(5),
                MaxAttempts = reader.GetInt32(6),
                Tenant = reader.IsDBNull(7) ? null : reader.GetString(7),
                RequeuedFrom = reader.GetGuid(0),
            }, reader.GetString(8)));
        }

        return found;
    }

    private async Task<RequeueResult> SubmitAsync(IReadOnlyList<TaskRequest> requests, SubmitOptions? options, CancellationToken cancellationToken)
    {
        var submitted = await _submitter.SubmitAsync(requests, options, cancellationToken).ConfigureAwait(false);
        if (submitted.Replayed)
        {
            // A concurrent request under the same key stored first: its tasks, not these.
            return new RequeueResult(await PairsAsync(submitted.TaskIds, cancellationToken).ConfigureAwait(false), Replayed: true);
        }

        return new RequeueResult([.. submitted.TaskIds.Select((id, i) => new RequeuedTask(id, requests[i].RequeuedFrom!.Value))], Replayed: false, submitted.PublishError);
    }

    /// <summary>The earlier result when the idempotency key was used before; null when it is new (or there is none).</summary>
    private async Task<RequeueResult?> ReplayAsync(SubmitOptions? options, CancellationToken cancellationToken)
    {
        if (options?.IdempotencyKey is not { } key)
        {
            return null;
        }

        if (string.IsNullOrEmpty(options.RequestHash))
        {
            throw new ArgumentException("An idempotency key needs the request's hash.", nameof(options));
        }

        await using var command = _dataSource.CreateCommand(SubmissionSql.SelectKey);
        command.Parameters.AddWithValue("key", key);
        string hash;
        Guid[] ids;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                return null;
            }

            (hash, ids) = (reader.GetString(0), reader.GetFieldValue<Guid[]>(1));
        }

        return hash == options.RequestHash
            ? new RequeueResult(await PairsAsync(ids, cancellationToken).ConfigureAwait(false), Replayed: true)
            : throw new IdempotencyConflictException();
    }

    /// <summary>The old task of each of <paramref name="ids"/>, in their order (a row that retention deleted is left out).</summary>
    private async Task<IReadOnlyList<RequeuedTask>> PairsAsync(IReadOnlyList<Guid> ids, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(
            "SELECT id, requeued_from FROM fleet.tasks WHERE id = ANY(@ids) AND requeued_from IS NOT NULL");
        command.Parameters.AddWithValue("ids", ids.ToArray());
        var from = new Dictionary<Guid, Guid>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            from[reader.GetGuid(0)] = reader.GetGuid(1);
        }

        return [.. ids.Where(from.ContainsKey).Select(id => new RequeuedTask(id, from[id]))];
    }
}
