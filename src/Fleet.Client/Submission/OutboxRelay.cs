using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Fleet.Client;

/// <summary>
/// The transactional outbox's relay: republishes tasks whose submission committed but never saw the broker's confirm
/// (a crash, or a broker outage, between <see cref="TaskSubmitter"/>'s commit and its stamp). They are the rows still
/// <c>queued</c> with <c>published_at</c> null, found through the partial index <c>ix_tasks_unpublished</c>. Workers
/// are idempotent by task id, so a message sent twice (confirm received, crash before the stamp) still runs once.
/// Thread-safe.
/// </summary>
public sealed partial class OutboxRelay
{
    /// <summary>
    /// The PostgreSQL advisory lock (session level) that a relay round holds, so that only one process (one API
    /// replica) relays at a time. The value spells "fleetRly" in ASCII.
    /// </summary>
    public const long RelayLockKey = 0x666C_6565_7452_6C79;

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
    /// <paramref name="olderThan"/> (long enough that their own submission has given up), oldest first.
    /// </summary>
    /// <exception cref="TaskPublishException">The broker did not confirm the republished messages; the next round tries again.</exception>
    public async Task<RelayResult> RelayUnpublishedAsync(TimeSpan olderThan, int maxTasks, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTasks, 1);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (var tryLock = new NpgsqlCommand(SubmissionSql.TryLockRelay, connection))
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
            unlock.Parameters.AddWithValue("key", RelayLockKey);
            await unlock.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static async Task<List<OutgoingTask>> ReadUnpublishedAsync(NpgsqlConnection connection, TimeSpan olderThan, int limit, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(SubmissionSql.SelectUnpublished, connection);
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Relay: republishing {Count} tasks whose publish was never confirmed (oldest submitted {Oldest:o})")]
    private partial void LogRelaying(int count, DateTimeOffset? oldest);
}

/// <summary>What one relay round did.</summary>
public readonly record struct RelayResult(bool HeldLock, int Republished);
