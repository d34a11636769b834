using System.Runtime.ExceptionServices;
using Fleet.Persistence.Entities;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.Persistence;

/// <summary>A delivery asking to run <see cref="TaskId"/>; claiming creates the task row when no producer wrote it.</summary>
public sealed record TaskClaim(
    Guid TaskId,
    string Type,
    string Queue,
    string PayloadJson,
    int Priority,
    Guid? BatchId,
    DateTimeOffset? SubmittedAt,
    int MaxAttempts,
    int? TimeoutSeconds,
    DateTimeOffset StartedAt,
    bool Redelivered,
    string? Tenant = null);

/// <summary>
/// The outcome of a claim: <see cref="Claimed"/> is false when the task is already final (or cancelled).
/// <see cref="Attempt"/> numbers this execution; <see cref="HandedBack"/> counts the earlier executions a draining
/// worker gave back (not charged to the task) and <see cref="Deaths"/> those that died with their worker process.
/// <see cref="PayloadRefusal"/> is set when PostgreSQL could not store the payload: the task was claimed with the
/// payload in storable form and must be completed as failed with this message, never run.
/// </summary>
public readonly record struct ClaimResult(bool Claimed, int Attempt, int HandedBack = 0, int Deaths = 0, string? PayloadRefusal = null)
{
    /// <summary>Executions charged to the task: all but those handed back by a drain.</summary>
    public int Charged => Attempt - HandedBack;
}

/// <summary>
/// The end of one execution: <see cref="Status"/> is the task's new state (final, or <c>queued</c> when a retry is
/// scheduled: <see cref="NotBefore"/> is then its time, and the due relay publishes it) and
/// <see cref="AttemptOutcome"/> what this execution ended with.
/// </summary>
public sealed record TaskCompletion(
    Guid TaskId,
    int Attempt,
    string Status,
    string AttemptOutcome,
    string? ResultJson,
    string? ErrorType,
    string? ErrorMessage,
    DateTimeOffset StartedAt,
    DateTimeOffset FinishedAt,
    double WallMs,
    double? CpuMs,
    DateTimeOffset? NotBefore = null);

/// <summary>
/// The worker's hot-path writes, batched together by one <see cref="GroupCommitter{TItem,TResult}"/>:
/// <list type="bullet">
/// <item><b>Claim</b> (before running): an upsert keyed by task id that marks the task <c>running</c> (creating the
/// row when no producer wrote one), bumps <c>attempts</c> and inserts the <c>task_attempts</c> row, but only while
/// the task is still open. A task that is already final is not claimed, so a redelivered or republished message
/// never runs again.</item>
/// <item><b>Complete</b> (after running): writes the final state, again only where the task is still open, so a
/// final state is never overwritten (a racing duplicate execution only closes its own attempt row).</item>
/// </list>
/// A flush writes the claims and the completions that have queued up in one round trip and one commit: under load
/// one statement each per batch, and at a CPU lane's pace (a task ending while the next one is claimed) one commit
/// per task instead of two. SQL with array parameters and <c>unnest</c> is used here instead of EF because EF cannot
/// express a set-based conditional upsert; everything is parameterised.
/// </summary>
public sealed class TaskLedger : IAsyncDisposable
{
    // A task whose cancel was asked for while it ran is not claimed again (the reconciler ends it cancelled once no
    // worker holds it). Nor is a retry that waits, unpublished, for a not_before still ahead by PostgreSQL's clock: the
    // due relay publishes it at its time, so a message that arrives before then is a stale copy, above all the failed
    // attempt's own message redelivered when its worker died between the retry's commit and the acknowledgement, which
    // would otherwise run the retry at once. (Not a first attempt: a producer whose clock runs ahead of the database's
    // publishes a task it thinks due, and stamps it published after the confirm, so the relay would never send it
    // again.) A fresh delivery claims only a queued (or unknown) task. A task that is already running is claimed again
    // only by a redelivery: the broker hands a message back only when the execution that held it is gone (crash,
    // lost connection, drain), whereas a fresh duplicate of a running task (a second publish) would just run it
    // twice while the first execution still holds its own message.
    //
    // Both statements find their rows by primary key only: their status tests are written as CASE expressions,
    // which no index can serve. As plain "status = 'queued'" tests the planner could read the open tasks through
    // ix_tasks_status_submitted instead and join them to the batch: free without a backlog, the whole backlog per
    // batch with one, so a fleet that fell behind would slow down further
    // (docs/decisions/0100-hot-path-by-primary-key.md).
    private const string ClaimSql = """
        WITH input AS (
            SELECT * FROM unnest(@id, @type, @queue, @payload, @priority, @batch_id, @submitted_at, @max_attempts, @timeout_seconds, @started_at, @redelivered, @tenant)
                AS i(id, type, queue, payload, priority, batch_id, submitted_at, max_attempts, timeout_seconds, started_at, redelivered, tenant)
        ), updated AS (
            UPDATE fleet.tasks t
            SET status = 'running', attempts = t.attempts + 1, started_at = i.started_at, worker_id = @worker,
                published_at = coalesce(t.published_at, i.started_at),
                -- A new execution starts with no progress: a retry must not show its failed attempt's last report.
                progress = NULL, progress_note = NULL, progress_at = NULL
            FROM input i
            WHERE t.id = i.id AND CASE t.status WHEN 'queued' THEN true WHEN 'running' THEN i.redelivered ELSE false END
              AND t.cancel_requested_at IS NULL
              AND CASE WHEN t.published_at IS NULL AND t.attempts > 0 AND t.not_before > now() THEN false ELSE true END
            RETURNING t.id, t.attempts, t.submitted_at
        ), inserted AS (
            -- Tasks published straight to RabbitMQ have no row yet: the first claim creates it.
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, timeout_seconds, priority,
                                     batch_id, submitted_at, published_at, started_at, worker_id, tenant)
            SELECT id, type, queue, 'running', payload, 1, max_attempts, timeout_seconds, priority,
                   batch_id, coalesce(submitted_at, started_at), coalesce(submitted_at, started_at), started_at, @worker, tenant
            FROM input i
            WHERE NOT EXISTS (SELECT 1 FROM fleet.tasks t WHERE t.id = i.id)
            ON CONFLICT (id) DO NOTHING
            RETURNING id, attempts, submitted_at
        ), claimed AS (
            SELECT * FROM updated UNION ALL SELECT * FROM inserted
        ), attempt_rows AS (
            INSERT INTO fleet.task_attempts (task_id, attempt, worker_id, started_at, outcome, queue_wait_ms)
            SELECT c.id, c.attempts, @worker, i.started_at, 'running',
                   greatest(0, extract(epoch FROM i.started_at - c.submitted_at) * 1000)::float8
            FROM claimed c JOIN input i ON i.id = c.id
        ), abandoned_rows AS (
            -- An earlier execution still 'running' when its task is claimed again died with its worker (the
            -- message came back); say so instead of leaving it running for ever.
            UPDATE fleet.task_attempts a SET outcome = 'abandoned', finished_at = i.started_at
            FROM claimed c JOIN input i ON i.id = c.id
            WHERE a.task_id = c.id AND a.attempt < c.attempts AND a.outcome = 'running'
        )
        -- Earlier executions, counted only for a task that ran before (a first claim pays nothing for this): those a
        -- draining worker handed back, and those that died with their process (an execution still 'running' when its
        -- task is claimed again is one; this statement marks it abandoned, but reads the rows as they were).
        SELECT c.id, c.attempts,
               CASE WHEN c.attempts > 1 THEN (SELECT count(*) FROM fleet.task_attempts a
                                              WHERE a.task_id = c.id AND a.attempt < c.attempts AND a.outcome = 'handed_back')::int
                    ELSE 0 END,
               CASE WHEN c.attempts > 1 THEN (SELECT count(*) FROM fleet.task_attempts a
                                              WHERE a.task_id = c.id AND a.attempt < c.attempts AND a.outcome IN ('abandoned', 'running'))::int
                    ELSE 0 END
        FROM claimed c
        """;

    // A retry (status 'queued') waits in PostgreSQL like a delayed task: not_before = finish + backoff and published_at
    // null put it in ix_tasks_due, and the due relay publishes it when now() reaches not_before. Otherwise not_before
    // and published_at are kept, so that a final task still shows the earliest start of its last execution (a delayed
    // task's time, or a retry's, for "how late did it start").
    private const string CompleteSql = """
        WITH input AS (
            SELECT * FROM unnest(@id, @attempt, @status, @outcome, @result, @error_type, @error_message, @started_at, @finished_at, @wall_ms, @cpu_ms, @not_before)
                AS i(id, attempt, status, outcome, result, error_type, error_message, started_at, finished_at, wall_ms, cpu_ms, not_before)
        ), attempt_rows AS (
            UPDATE fleet.task_attempts a
            -- A task claimed ahead started after its claim: the row says when its handler began, and its queue wait grows by the difference.
            SET started_at = i.started_at, queue_wait_ms = a.queue_wait_ms + greatest(0, extract(epoch FROM i.started_at - a.started_at) * 1000)::float8,
                finished_at = i.finished_at, outcome = i.outcome, error_type = i.error_type,
                error_message = i.error_message, wall_ms = i.wall_ms, cpu_ms = i.cpu_ms
            FROM input i
            WHERE a.task_id = i.id AND a.attempt = i.attempt
        )
        UPDATE fleet.tasks t
        SET status = i.status, result = i.result, error_type = i.error_type, error_message = i.error_message,
            started_at = i.started_at, worker_id = @worker, not_before = coalesce(i.not_before, t.not_before),
            published_at = CASE WHEN i.status = 'queued' THEN NULL ELSE t.published_at END,
            finished_at = CASE WHEN i.status IN ('queued', 'running') THEN NULL ELSE i.finished_at END
        FROM input i
        WHERE t.id = i.id AND CASE t.status WHEN 'queued' THEN true WHEN 'running' THEN true ELSE false END
        RETURNING t.id
        """;

    // A draining worker gives back a task it had claimed: the execution is closed as handed back (so it is not charged
    // to the task) and the task is queued again for the message that goes back to the broker. Only while the task is
    // still in this execution's hands.
    private const string HandBackSql = """
        WITH attempt_row AS (
            UPDATE fleet.task_attempts SET outcome = 'handed_back', finished_at = now()
            WHERE task_id = @id AND attempt = @attempt AND outcome = 'running'
        )
        UPDATE fleet.tasks SET status = 'queued'
        WHERE id = @id AND status = 'running' AND attempts = @attempt AND worker_id = @worker
        """;

    private static readonly Action<ILogger, Guid, string, string, Exception?> RefusedMessage = LoggerMessage.Define<Guid, string, string>(
        LogLevel.Warning, new EventId(1, "StorableForm"), "Task {TaskId}: PostgreSQL refused its {What} ({Reason}); it is written in storable form");

    private readonly NpgsqlDataSource _dataSource;
    private readonly string _workerId;
    private readonly TimeSpan _maxOutage;
    private readonly ILogger? _logger;
    private readonly GroupCommitter<LedgerWrite, LedgerOutcome> _writes;
    private readonly CancellationTokenSource _stopWaiting = new();
    private long _outageSince;

    /// <summary>The <c>error_type</c> of the failures the ledger itself records.</summary>
    public static class ErrorTypes
    {
        /// <summary>PostgreSQL could not store the task's payload; the task was not run (payload kept in storable form).</summary>
        public const string UnstorablePayload = "UnstorablePayload";

        /// <summary>The task ran, but PostgreSQL could not store its result (kept in storable form).</summary>
        public const string UnstorableResult = "UnstorableResult";
    }

    /// <param name="maxOutage">
    /// How long a write waits through a database outage (connection refused, server restarting) before it gives
    /// up. Meanwhile the messages whose rows are waiting stay unacknowledged and hold their consumer slots, so the
    /// worker stops taking new messages by itself instead of failing them into error queues; it resumes when the
    /// database answers again.
    /// </param>
    /// <param name="logger">Where a row PostgreSQL refused, and wrote in storable form instead, is reported.</param>
    public TaskLedger(NpgsqlDataSource dataSource, string workerId, int maxBatch = 500, int concurrentFlushes = 2, TimeSpan? maxOutage = null, ILogger? logger = null)
    {
        _dataSource = dataSource;
        _workerId = workerId;
        _maxOutage = maxOutage ?? TimeSpan.FromMinutes(10);
        _logger = logger;
        _writes = new GroupCommitter<LedgerWrite, LedgerOutcome>(FlushAsync, maxBatch, concurrentFlushes, "fleet.ledger.write");
    }

    /// <summary>Claims a task for one execution; completes once the claim is committed.</summary>
    /// <param name="cancellationToken">
    /// Stops the wait, not the write: a stopping worker hands the message back rather than wait for a database that
    /// does not answer, and the claim may still commit later (a redelivery then claims the task again).
    /// </param>
    public async Task<ClaimResult> ClaimAsync(TaskClaim claim, CancellationToken cancellationToken = default) =>
        ThrowIfFailed(await _writes.EnqueueAsync(new LedgerWrite(claim, null)).WaitAsync(cancellationToken).ConfigureAwait(false)).Claim;

    /// <summary>
    /// Commits an execution's final state. Returns true when this write made the task final, false when the task
    /// was already final (a duplicate execution: only its attempt row was closed).
    /// </summary>
    /// <param name="cancellationToken">Stops the wait, not the write, as for <see cref="ClaimAsync"/>.</param>
    public async Task<bool> CompleteAsync(TaskCompletion completion, CancellationToken cancellationToken = default) =>
        ThrowIfFailed(await _writes.EnqueueAsync(new LedgerWrite(null, completion)).WaitAsync(cancellationToken).ConfigureAwait(false)).Finalized;

    /// <summary>
    /// Gives a claimed task back without charging it (a drain, or a lost broker connection, hands its message back):
    /// written at once, not batched, since the process is stopping. Returns whether the task was still this
    /// execution's; when the write fails the task stays running, and its next claim counts the execution as a death.
    /// </summary>
    public async Task<bool> HandBackAsync(Guid taskId, int attempt, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(HandBackSql);
        command.Parameters.AddWithValue("id", taskId);
        command.Parameters.AddWithValue("attempt", attempt);
        command.Parameters.AddWithValue("worker", _workerId);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    private static LedgerOutcome ThrowIfFailed(LedgerOutcome outcome)
    {
        if (outcome.Error is { } error)
        {
            ExceptionDispatchInfo.Throw(error);
        }

        return outcome;
    }

    /// <summary>When the current database outage began (as seen by a failing write), or null when writes succeed.</summary>
    public DateTimeOffset? OutageSince
    {
        get
        {
            var ticks = Interlocked.Read(ref _outageSince);
            return ticks == 0 ? null : new DateTimeOffset(ticks, TimeSpan.Zero);
        }
    }

    /// <summary>
    /// Runs one write, repeating it through transient database failures with backoff for up to the outage limit.
    /// <paramref name="write"/> learns whether it is a repeat: a repeated write may find its first try committed.
    /// </summary>
    private async Task<T> RideOutAsync<T>(Func<bool, Task<T>> write, CancellationToken cancellationToken)
    {
        var delay = TimeSpan.FromMilliseconds(100);
        var started = DateTimeOffset.UtcNow;
        for (var repeat = false; ; repeat = true)
        {
            try
            {
                var result = await write(repeat).ConfigureAwait(false);
                Interlocked.Exchange(ref _outageSince, 0);
                return result;
            }
            catch (Exception ex) when (IsTransient(ex) && DateTimeOffset.UtcNow - started < _maxOutage)
            {
                Interlocked.CompareExchange(ref _outageSince, started.UtcTicks, 0);
                await WaitBeforeRepeatAsync(delay, ex, cancellationToken).ConfigureAwait(false);
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5_000));
            }
        }
    }

    private async Task WaitBeforeRepeatAsync(TimeSpan delay, Exception failure, CancellationToken cancellationToken)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopWaiting.Token);
        try
        {
            await Task.Delay(delay, wait.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_stopWaiting.IsCancellationRequested)
        {
            throw new OperationCanceledException(
                "The ledger is disposed and the database does not answer: the write is given up.",
                failure, _stopWaiting.Token);
        }
    }

    private static bool IsTransient(Exception ex) =>
        ex is NpgsqlException { IsTransient: true } or TimeoutException or System.Net.Sockets.SocketException;

    /// <summary>
    /// Writes one batch: its claims and its completions together, in one transaction. When PostgreSQL refuses a row's
    /// data (a payload or result <c>jsonb</c> cannot hold, say), nothing of the round was committed and the statement
    /// does not say which row it was: the round is written again halved, claims apart from completions first, until
    /// the refused row is alone, and that row is written in storable form (<see cref="StorableForm"/>). So one bad row
    /// never fails the others, which commit once, and is itself recorded rather than lost. Only a refused round pays
    /// for the splitting: about two writes per halving, log2 of its size.
    /// </summary>
    internal async Task<IReadOnlyList<LedgerOutcome>> FlushAsync(IReadOnlyList<LedgerWrite> writes, CancellationToken cancellationToken)
    {
        var (claims, claimAt) = (new List<TaskClaim>(), new List<int>());
        var (completions, completionAt) = (new List<TaskCompletion>(), new List<int>());
        for (var i = 0; i < writes.Count; i++)
        {
            if (writes[i].Claim is { } claim)
            {
                claims.Add(claim);
                claimAt.Add(i);
            }
            else
            {
                completions.Add(writes[i].Completion!);
                completionAt.Add(i);
            }
        }

        var outcomes = new LedgerOutcome[writes.Count];
        string?[]? payloadRefusals = null;

        // One statement cannot change the same row twice, so repeated ids of one kind in a batch (a duplicate
        // publish that arrived together) go to a later round, where they find the first one's write.
        var pendingClaims = Enumerable.Range(0, claims.Count).ToList();
        var pendingCompletions = Enumerable.Range(0, completions.Count).ToList();
        while (pendingClaims.Count > 0 || pendingCompletions.Count > 0)
        {
            var claimRound = TakeRound(pendingClaims, i => claims[i].TaskId);
            var completionRound = TakeRound(pendingCompletions, i => completions[i].TaskId);
            await WriteIsolatingAsync(claimRound, completionRound).ConfigureAwait(false);
        }

        return outcomes;

        async Task WriteIsolatingAsync(List<int> claimRound, List<int> completionRound)
        {
            if (await TryWriteAsync(claimRound, completionRound).ConfigureAwait(false) is not { } refusal)
            {
                return;
            }

            if (claimRound.Count > 0 && completionRound.Count > 0)
            {
                // A claim that cannot be written must not take the results of tasks that already ran with it.
                await WriteIsolatingAsync(claimRound, []).ConfigureAwait(false);
                await WriteIsolatingAsync([], completionRound).ConfigureAwait(false);
            }
            else if (claimRound.Count > 1)
            {
                await WriteIsolatingAsync(claimRound[..(claimRound.Count / 2)], []).ConfigureAwait(false);
                await WriteIsolatingAsync(claimRound[(claimRound.Count / 2)..], []).ConfigureAwait(false);
            }
            else if (completionRound.Count > 1)
            {
                await WriteIsolatingAsync([], completionRound[..(completionRound.Count / 2)]).ConfigureAwait(false);
                await WriteIsolatingAsync([], completionRound[(completionRound.Count / 2)..]).ConfigureAwait(false);
            }
            else
            {
                // Alone: this is the row PostgreSQL refuses. Write it once more, in storable form.
                var reason = Describe(refusal);
                if (claimRound.Count == 1)
                {
                    var i = claimRound[0];
                    LogRefused("payload", claims[i].TaskId, reason);
                    claims[i] = claims[i] with { PayloadJson = StorableForm.Json(reason, claims[i].PayloadJson) };
                    (payloadRefusals ??= new string?[claims.Count])[i] =
                        $"PostgreSQL cannot store the payload ({reason}); it is kept in 'payload' as base64 and the task was not run.";
                }
                else
                {
                    var i = completionRound[0];
                    LogRefused("result", completions[i].TaskId, reason);
                    completions[i] = StorableCompletion(completions[i], reason);
                }

                if (await TryWriteAsync(claimRound, completionRound).ConfigureAwait(false) is { } again)
                {
                    RecordClaims(claimRound, null, again);
                    RecordCompletions(completionRound, null, again);
                }
            }
        }

        // Writes one round and records its outcomes, or an error PostgreSQL gave for all of them. A refusal of a
        // row's data is returned unrecorded instead: nothing was committed, and the caller splits the round.
        async Task<Exception?> TryWriteAsync(List<int> claimRound, List<int> completionRound)
        {
            try
            {
                var (attempts, finalized) = await RideOutAsync(
                    repeat => WriteRoundAsync(claims, claimRound, completions, completionRound, repeat, cancellationToken), cancellationToken).ConfigureAwait(false);
                RecordClaims(claimRound, attempts, null);
                RecordCompletions(completionRound, finalized, null);
            }
            catch (Exception ex) when (IsRefusedData(ex))
            {
                return ex;
            }
            catch (PostgresException ex)
            {
                RecordClaims(claimRound, null, ex);
                RecordCompletions(completionRound, null, ex);
            }

            return null;
        }

        void RecordClaims(List<int> round, Dictionary<Guid, ClaimResult>? attempts, Exception? error)
        {
            foreach (var i in round)
            {
                var claim = attempts is not null && attempts.TryGetValue(claims[i].TaskId, out var claimed)
                    ? claimed with { PayloadRefusal = payloadRefusals?[i] }
                    : default;
                outcomes[claimAt[i]] = new LedgerOutcome(claim, false, error);
            }
        }

        void RecordCompletions(List<int> round, HashSet<Guid>? finalized, Exception? error)
        {
            foreach (var i in round)
            {
                outcomes[completionAt[i]] = new LedgerOutcome(default, finalized?.Contains(completions[i].TaskId) == true, error);
            }
        }
    }

    /// <summary>
    /// Errors about a row's data rather than the statement or the server: data exceptions (class 22: text with NUL,
    /// JSON <c>jsonb</c> cannot hold), integrity constraints (23), program limits such as an oversized index row or
    /// value (54), and text that cannot even be encoded for sending (a lone UTF-16 surrogate).
    /// </summary>
    private static bool IsRefusedData(Exception ex) =>
        ex is System.Text.EncoderFallbackException
        || ex is PostgresException { SqlState: var state } && (state.StartsWith("22", StringComparison.Ordinal)
            || state.StartsWith("23", StringComparison.Ordinal) || state.StartsWith("54", StringComparison.Ordinal));

    private static string Describe(Exception refusal) => refusal is PostgresException postgres
        ? $"PostgreSQL {postgres.SqlState}: {postgres.MessageText}"
        : $"{refusal.GetType().Name}: {refusal.Message}";

    /// <summary>
    /// A completion whose result PostgreSQL refused: the task ends failed (<see cref="ErrorTypes.UnstorableResult"/>)
    /// unless it already failed, and the result is kept in storable form. Its other texts are always made storable.
    /// </summary>
    private static TaskCompletion StorableCompletion(TaskCompletion completion, string reason) => completion.ResultJson is null
        ? completion
        : completion with
        {
            Status = completion.Status == TaskState.Succeeded ? TaskState.Failed : completion.Status,
            AttemptOutcome = completion.AttemptOutcome == TaskState.Succeeded ? TaskState.Failed : completion.AttemptOutcome,
            ResultJson = StorableForm.Json(reason, completion.ResultJson),
            ErrorType = completion.ErrorType ?? ErrorTypes.UnstorableResult,
            ErrorMessage = completion.ErrorMessage ?? $"PostgreSQL cannot store the result ({reason}); it is kept in 'result' as base64.",
        };

    private void LogRefused(string what, Guid taskId, string reason)
    {
        if (_logger?.IsEnabled(LogLevel.Warning) == true)
        {
            RefusedMessage(_logger, taskId, what, reason, null);
        }
    }

    /// <summary>Removes from <paramref name="pending"/>, and returns, its items whose task id is the first of its kind.</summary>
    private static List<int> TakeRound(List<int> pending, Func<int, Guid> taskId)
    {
        var seen = new HashSet<Guid>();
        var round = new List<int>(pending.Count);
        var later = new List<int>();
        foreach (var i in pending)
        {
            (seen.Add(taskId(i)) ? round : later).Add(i);
        }

        pending.Clear();
        pending.AddRange(later);
        return round;
    }

    /// <summary>The claims and completions of one round, one batch of (up to) two statements: one round trip, one commit.</summary>
    /// <remarks>
    /// A connection whose write failed never goes back to the pool. Npgsql prepares a statement on a connection the
    /// fifth time it runs there (<c>Max Auto Prepare</c>); when PostgreSQL refuses the parameters of exactly that run
    /// (a payload <c>jsonb</c> cannot hold, say), Npgsql 10.0.3 has already counted the statement as prepared but never
    /// received its row description, and the next run of it on that connection fails with "Received unexpected
    /// backend message DataRow", breaking the write of healthy tasks. Npgsql has no call to discard one pooled
    /// connection: clearing the pool discards this one (opened before the clear, it is closed when returned) and the
    /// idle ones, which costs a few new connections after a failed write and nothing otherwise.
    /// </remarks>
    private async Task<(Dictionary<Guid, ClaimResult> Claims, HashSet<Guid> Finalized)> WriteRoundAsync(
        IReadOnlyList<TaskClaim> claims, List<int> claimRound, IReadOnlyList<TaskCompletion> completions, List<int> completionRound,
        bool repeat, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await using var batch = CreateRoundBatch(claims, claimRound, completions, completionRound, repeat);
            batch.Connection = connection;
            var attempts = new Dictionary<Guid, ClaimResult>(claimRound.Count);
            var finalized = new HashSet<Guid>();
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (claimRound.Count > 0)
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    attempts[reader.GetGuid(0)] = new ClaimResult(true, reader.GetInt32(1), reader.GetInt32(2), reader.GetInt32(3));
                }

                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            }

            if (completionRound.Count > 0)
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    finalized.Add(reader.GetGuid(0));
                }
            }

            return (attempts, finalized);
        }
        catch
        {
            _dataSource.Clear();
            throw;
        }
    }

    /// <summary>
    /// The round's batch: the claim statement for the given claims, then the completion statement for the given
    /// completions, each left out when it has none (internal: the plan tests explain exactly these statements).
    /// </summary>
    internal NpgsqlBatch CreateRoundBatch(
        IReadOnlyList<TaskClaim> claims, IReadOnlyList<int> claimRound, IReadOnlyList<TaskCompletion> completions, IReadOnlyList<int> completionRound, bool repeat)
    {
        var batch = new NpgsqlBatch();
        if (claimRound.Count > 0)
        {
            var command = new NpgsqlBatchCommand(ClaimSql);
            AddClaimParameters(command.Parameters, claims, claimRound, repeat);
            batch.BatchCommands.Add(command);
        }

        if (completionRound.Count > 0)
        {
            var command = new NpgsqlBatchCommand(CompleteSql);
            AddCompleteParameters(command.Parameters, completions, completionRound);
            batch.BatchCommands.Add(command);
        }

        return batch;
    }

    private void AddClaimParameters(NpgsqlParameterCollection parameters, IReadOnlyList<TaskClaim> claims, IReadOnlyList<int> round, bool repeat)
    {
        parameters.Add(Array("id", NpgsqlDbType.Uuid, round.Select(i => claims[i].TaskId)));
        parameters.Add(Array("type", NpgsqlDbType.Text, round.Select(i => StorableForm.Text(claims[i].Type, StorableForm.MaxNameLength))));
        parameters.Add(Array("queue", NpgsqlDbType.Text, round.Select(i => claims[i].Queue)));
        parameters.Add(Array("payload", NpgsqlDbType.Jsonb, round.Select(i => claims[i].PayloadJson)));
        parameters.Add(Array("priority", NpgsqlDbType.Integer, round.Select(i => claims[i].Priority)));
        parameters.Add(Array("batch_id", NpgsqlDbType.Uuid, round.Select(i => claims[i].BatchId)));
        parameters.Add(Array("submitted_at", NpgsqlDbType.TimestampTz, round.Select(i => claims[i].SubmittedAt?.ToUniversalTime())));
        parameters.Add(Array("max_attempts", NpgsqlDbType.Integer, round.Select(i => claims[i].MaxAttempts)));
        parameters.Add(Array("timeout_seconds", NpgsqlDbType.Integer, round.Select(i => claims[i].TimeoutSeconds)));
        parameters.Add(Array("started_at", NpgsqlDbType.TimestampTz, round.Select(i => claims[i].StartedAt.ToUniversalTime())));
        // A repeated claim may find its first try committed (reply lost): the task is then 'running' by us.
        parameters.Add(Array("redelivered", NpgsqlDbType.Boolean, round.Select(i => claims[i].Redelivered || repeat)));
        parameters.Add(Array("tenant", NpgsqlDbType.Text, round.Select(i => StorableForm.Text(claims[i].Tenant, StorableForm.MaxNameLength))));
        parameters.AddWithValue("worker", _workerId);
    }

    private void AddCompleteParameters(NpgsqlParameterCollection parameters, IReadOnlyList<TaskCompletion> completions, IReadOnlyList<int> round)
    {
        parameters.Add(Array("id", NpgsqlDbType.Uuid, round.Select(i => completions[i].TaskId)));
        parameters.Add(Array("attempt", NpgsqlDbType.Integer, round.Select(i => completions[i].Attempt)));
        parameters.Add(Array("status", NpgsqlDbType.Text, round.Select(i => completions[i].Status)));
        parameters.Add(Array("outcome", NpgsqlDbType.Text, round.Select(i => completions[i].AttemptOutcome)));
        parameters.Add(Array("result", NpgsqlDbType.Jsonb, round.Select(i => completions[i].ResultJson)));
        parameters.Add(Array("error_type", NpgsqlDbType.Text, round.Select(i => StorableForm.Text(completions[i].ErrorType, StorableForm.MaxNameLength))));
        parameters.Add(Array("error_message", NpgsqlDbType.Text, round.Select(i => StorableForm.Text(completions[i].ErrorMessage, StorableForm.MaxErrorMessageLength))));
        parameters.Add(Array("started_at", NpgsqlDbType.TimestampTz, round.Select(i => completions[i].StartedAt.ToUniversalTime())));
        parameters.Add(Array("finished_at", NpgsqlDbType.TimestampTz, round.Select(i => completions[i].FinishedAt.ToUniversalTime())));
        parameters.Add(Array("wall_ms", NpgsqlDbType.Double, round.Select(i => completions[i].WallMs)));
        parameters.Add(Array("cpu_ms", NpgsqlDbType.Double, round.Select(i => completions[i].CpuMs)));
        parameters.Add(Array("not_before", NpgsqlDbType.TimestampTz, round.Select(i => completions[i].NotBefore?.ToUniversalTime())));
        parameters.AddWithValue("worker", _workerId);
    }

    private static NpgsqlParameter Array<T>(string name, NpgsqlDbType elementType, IEnumerable<T> values) =>
        new(name, NpgsqlDbType.Array | elementType) { Value = values.ToArray() };

    /// <summary>
    /// Writes what is queued, but no longer waits through a database outage: a write that finds the database
    /// unreachable fails at once with <see cref="OperationCanceledException"/>. The ledger goes when the worker has
    /// stopped, and its consumers have handed their messages back already; waiting up to the outage limit would
    /// only hold the process's stop.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        await _stopWaiting.CancelAsync().ConfigureAwait(false);
        await _writes.DisposeAsync().ConfigureAwait(false);
        _stopWaiting.Dispose();
    }
}

/// <summary>One queued ledger write: a claim or a completion (exactly one of the two).</summary>
internal readonly record struct LedgerWrite(TaskClaim? Claim, TaskCompletion? Completion);

/// <summary>What one write came to: the claim's result or whether the completion made the task final; or its error.</summary>
internal readonly record struct LedgerOutcome(ClaimResult Claim, bool Finalized, Exception? Error = null);
