using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Fleet.Client;

/// <summary>
/// The transactional outbox's relays, both publishing stored tasks that are still <c>queued</c> with
/// <c>published_at</c> null (workers are idempotent by task id, so a message sent twice, confirm received and crash
/// before the stamp, still runs once). Thread-safe.
/// <list type="bullet">
/// <item><see cref="RelayUnpublishedAsync"/> republishes tasks whose submission committed but never saw the broker's
/// confirm (a crash, or a broker outage, between <see cref="TaskSubmitter"/>'s commit and its stamp), found through
/// the partial index <c>ix_tasks_unpublished</c>;</item>
/// <item><see cref="PublishDueAsync"/> publishes delayed tasks and retries whose <c>not_before</c> has come, found
/// through <c>ix_tasks_due</c>: both wait in PostgreSQL, not in the broker, until then (a retry because the failed
/// attempt's commit set <c>published_at</c> back to null with its new <c>not_before</c>).</item>
/// </list>
/// </summary>
public sealed partial class OutboxRelay
{
    /// <summary>
    /// The PostgreSQL advisory lock (session level) that a relay round holds, so that only one process (one API
    /// replica) relays at a time. The value spells "fleetRly" in ASCII.
    /// </summary>
    public const long RelayLockKey = 0x666C_6565_7452_6C79;

    /// <summary>
    /// The advisory lock of a due round, so that one process (an API replica or a worker) publishes due tasks at a
    /// time. Not <see cref="RelayLockKey"/>: a slow outbox round must not hold up tasks whose time has come. The
    /// value spells "fleetDue" in ASCII.
    /// </summary>
    public const long DueLockKey = 0x666C_6565_7444_7565;

    private readonly NpgsqlDataSource _dataSource;
    private readonly OutboxPublisher _publisher;
    private readonly ILogger _logger;

    /// <param name="options">Chunk size and publish timeout, as for the submissions this relays.</param>
    public OutboxRelay(NpgsqlDataSource dataSource, ITaskPublisher publisher, TaskSubmitterOptions options, ILogger<OutboxRelay>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(publisher);
        ArgumentNullException.ThrowIfNull(options);
        _dataSource = dataSource;
        _logger = logger ?? NullLogger<OutboxRelay>.Instance;
        _publisher = new OutboxPublisher(dataSource, publisher, options, _logger);
    }

    /// <summary>
    /// One relay round: if no other process holds <see cref="RelayLockKey"/>, republishes up to
    /// <paramref name="maxTasks"/> tasks that are still <c>queued</c> with <c>published_at</c> null and older than
    /// <paramref name="olderThan"/> (long enough that their own submission has given up), oldest first. Delayed tasks
    /// are not among them: <see cref="PublishDueAsync"/> publishes those at their time.
    /// </summary>
    /// <exception cref="TaskPublishException">The broker did not confirm the republished messages; the next round tries again.</exception>
    public async Task<RelayResult> RelayUnpublishedAsync(TimeSpan olderThan, int maxTasks, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTasks, 1);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await RoundAsync(connection, RelayLockKey, SubmissionSql.SelectUnpublished, maxTasks, "fleet.relay", LogRelaying,
            command => command.Parameters.AddWithValue("age_seconds", olderThan.TotalSeconds), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// One due round: publishes up to <paramref name="maxTasks"/> delayed tasks whose <c>not_before</c> has come
    /// (by PostgreSQL's clock), earliest first, if no other process holds <see cref="DueLockKey"/>. It first asks
    /// whether any task is due at all (one lookup in <c>ix_tasks_due</c>), so that polling it often costs an idle
    /// fleet one cheap statement, and takes the lock only when there is work.
    /// </summary>
    /// <exception cref="TaskPublishException">The broker did not confirm the messages; the next round tries again.</exception>
    public async Task<RelayResult> PublishDueAsync(int maxTasks, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTasks, 1);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (var probe = new NpgsqlCommand(SubmissionSql.AnyDue, connection))
        {
            if (await probe.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is null)
            {
                return new RelayResult(HeldLock: false, Republished: 0);
            }
        }

        return await RoundAsync(connection, DueLockKey, SubmissionSql.SelectDue, maxTasks, "fleet.relay.due", LogPublishingDue,
            static _ => { }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs <see cref="PublishDueAsync"/> every <paramref name="interval"/> until <paramref name="stoppingToken"/>
    /// fires, with rounds in a row while each one finds a full batch: the loop that the API and every worker run, so
    /// that delayed tasks are published whichever of them is up. A failed round (database or broker away) is logged
    /// once per outage, not at every tick, and the tasks wait for the next one.
    /// </summary>
    public async Task RunDueLoopAsync(TimeSpan interval, int maxTasks, CancellationToken stoppingToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTasks, 1);
        const int MaxRoundsPerTick = 20;
        var failing = false;
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    for (var round = 0; round < MaxRoundsPerTick; round++)
                    {
                        if ((await PublishDueAsync(maxTasks, stoppingToken).ConfigureAwait(false)).Republished < maxTasks)
                        {
                            break;
                        }
                    }

                    if (failing)
                    {
                        failing = false;
                        LogDueRecovered();
                    }
                }
#pragma warning disable CA1031 // Whatever failed, the rows are stored and the next tick tries again.
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is not OutOfMemoryException)
#pragma warning restore CA1031
                {
                    if (!failing)
                    {
                        failing = true;
                        LogDueFailed(ex.GetType().Name, ex.Message);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Under the session-level advisory lock <paramref name="lockKey"/> (or not at all, when another process holds
    /// it): reads the tasks <paramref name="selectSql"/> finds, publishes them with confirms and stamps them.
    /// </summary>
    private async Task<RelayResult> RoundAsync(
        NpgsqlConnection connection, long lockKey, string selectSql, int maxTasks, string activityName,
        Action<int, DateTimeOffset?> log, Action<NpgsqlCommand> bind, CancellationToken cancellationToken)
    {
        await using (var tryLock = new NpgsqlCommand(SubmissionSql.TryLockRelay, connection))
        {
            tryLock.Parameters.AddWithValue("key", lockKey);
            if (!(bool)(await tryLock.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
            {
                return new RelayResult(HeldLock: false, Republished: 0);
            }
        }

        try
        {
            var tasks = await ReadAsync(connection, selectSql, maxTasks, bind, cancellationToken).ConfigureAwait(false);
            if (tasks.Count > 0)
            {
                // The original submit's trace is not stored with the row: a relayed task starts a trace of its own here.
                using var activity = ClientTelemetry.Source.StartActivity(activityName);
                activity?.SetTag("fleet.task.count", tasks.Count);
                log(tasks.Count, tasks[0].Message.SubmittedAt);
                var error = await _publisher.PublishAndStampAsync(tasks, cancellationToken).ConfigureAwait(false);
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
            await using var unlock = new NpgsqlCommand(SubmissionSql.UnlockRelay, connection);
            unlock.Parameters.AddWithValue("key", lockKey);
            await unlock.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static async Task<List<OutgoingTask>> ReadAsync(NpgsqlConnection connection, string selectSql, int limit, Action<NpgsqlCommand> bind, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(selectSql, connection);
        bind(command);
        command.Parameters.AddWithValue("limit", limit);
        var tasks = new List<OutgoingTask>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            tasks.Add(TaskRows.ReadOutgoing(reader));
        }

        return tasks;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Relay: republishing {Count} tasks whose publish was never confirmed (oldest submitted {Oldest:o})")]
    private partial void LogRelaying(int count, DateTimeOffset? oldest);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Due relay round failed ({ErrorType}: {Reason}); delayed tasks wait, and it tries again at every tick")]
    private partial void LogDueFailed(string errorType, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Due relay rounds succeed again")]
    private partial void LogDueRecovered();

    [LoggerMessage(Level = LogLevel.Debug, Message = "Due relay: publishing {Count} delayed tasks whose time has come (first submitted {First:o})")]
    private partial void LogPublishingDue(int count, DateTimeOffset? first);
}

/// <summary>What one relay round did.</summary>
public readonly record struct RelayResult(bool HeldLock, int Republished);
