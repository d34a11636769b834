using Fleet.Client;
using Fleet.Contracts;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using RabbitMQ.Client;

namespace Fleet.Worker.Reconciliation;

/// <summary>
/// Finds tasks that are open (<c>queued</c> or <c>running</c>) although no message and no live worker will ever end
/// them, and republishes them (or ends them <c>cancelled</c> when a cancel was asked for). Messages get lost in ways
/// that no acknowledgement protocol sees: a queue purged by an operator, a broker that lost its disk or crashed
/// before it persisted a delivered message, a worker that vanished with its tasks.
/// <para>
/// Every worker runs this loop, and one of them acts per pass: the one that gets a PostgreSQL advisory lock for the
/// pass's transaction. Republishing is safe because claims are idempotent: a copy of a task that runs or has ended
/// is acknowledged without running again. What counts as lost (see docs/reliability.md for the bounds):
/// </para>
/// <list type="bullet">
/// <item>a <c>running</c> task, started over <c>Worker:ReconcileAfterSeconds</c> ago, whose worker is gone (no
/// heartbeat for <see cref="StaleAfter"/>, or stopped), or is alive but did not hold it at a heartbeat taken after
/// the task started (its message died with a broker, the execution with it);</item>
/// <item>a <c>queued</c> task published (and due, for one with a <c>not_before</c>) over
/// <c>Worker:ReconcileAfterSeconds</c> ago, while its lane's queue has no ready message and no live worker holds
/// it, seen so in two passes in a row: with nothing ready, its message would have been delivered, and every
/// heartbeat since the first pass would show the worker holding it. A task submitted but never confirmed by the
/// broker (<c>published_at</c> null) needs no empty lane; a delayed task or a retry, which waits unpublished on
/// purpose, counts from its <c>not_before</c>.</item>
/// </list>
/// </summary>
public sealed partial class TaskReconciler(
    NpgsqlDataSource dataSource,
    RabbitMqAddress broker,
    RabbitMqTaskPublisher publisher,
    IOptions<WorkerOptions> options,
    ILogger<TaskReconciler> logger) : BackgroundService
{
    /// <summary>The advisory lock a pass holds for its transaction, so that one worker acts at a time.</summary>
    public const long LockKey = 0x666C_6565_7452_6563;

    public const string CancelledReason = "Cancelled by request; the task was not running anywhere any more.";

    private readonly WorkerOptions _options = options.Value;
    private HashSet<Guid> _suspects = [];
    private DateTime _suspectsSince;
    private IConnection? _connection;
    private IChannel? _channel;

    /// <summary>A worker with no heartbeat for this long is taken for dead (four missed beats, at least 20 s).</summary>
    private TimeSpan StaleAfter => TimeSpan.FromSeconds(Math.Max(20, 4 * _options.HeartbeatSeconds));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_options.ReconcileIntervalSeconds == 0)
        {
            return;
        }

        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(_options.ReconcileIntervalSeconds));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await ReconcileAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is not OutOfMemoryException)
                {
                    // The database or the broker is away; the tasks wait, and the next pass looks again.
                    LogPassFailed(ex.GetType().Name, ex.Message);
                    _suspects = [];
                    await ResetBrokerAsync().ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// One pass: returns what it republished and cancelled, or null when another worker holds the lock. The loop
    /// runs it every <c>Worker:ReconcileIntervalSeconds</c>; an operator's tool or a test may run one now.
    /// </summary>
    public async Task<ReconcileResult?> ReconcileAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var tryLock = new NpgsqlCommand(ReconcilerSql.TryLock, connection, transaction))
        {
            tryLock.Parameters.AddWithValue("key", LockKey);
            if (!(bool)(await tryLock.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
            {
                // Another worker reconciles; this one's suspects would be stale when it gets the lock again.
                _suspects = [];
                return null;
            }
        }

        // Which lanes have nothing ready, asked before the rows are read (each statement below reads the rows as they
        // are when it starts): a task published before this moment is then delivered or lost, never waiting in its
        // queue. The database's clock after it is the moment later heartbeats must follow.
        var idleQueues = await IdleQueuesAsync(cancellationToken).ConfigureAwait(false);
        DateTime passStarted;
        await using (var clock = new NpgsqlCommand(ReconcilerSql.Clock, connection, transaction))
        {
            passStarted = (DateTime)(await clock.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        var released = new List<(OutgoingTask Task, bool Cancelled)>();
        await using (var command = new NpgsqlCommand(ReconcilerSql.ReleaseRunning, connection, transaction))
        {
            command.Parameters.AddWithValue("after", (double)_options.ReconcileAfterSeconds);
            command.Parameters.AddWithValue("stale", StaleAfter.TotalSeconds);
            command.Parameters.AddWithValue("limit", _options.ReconcileBatchSize);
            command.Parameters.AddWithValue("cancelled_reason", CancelledReason);
            await ReadReleasedAsync(command, released, cancellationToken).ConfigureAwait(false);
        }

        // Queued tasks: only those that were suspects in the previous pass too, and only when every live worker has
        // written a heartbeat since that pass began (its held_tasks then show every message it received before).
        var suspects = new HashSet<Guid>();
        await using (var command = new NpgsqlCommand(ReconcilerSql.FindQueued, connection, transaction))
        {
            command.Parameters.AddWithValue("after", (double)_options.ReconcileAfterSeconds);
            command.Parameters.AddWithValue("stale", StaleAfter.TotalSeconds);
            command.Parameters.AddWithValue("idle_queues", idleQueues);
            command.Parameters.AddWithValue("limit", _options.ReconcileBatchSize);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                suspects.Add(reader.GetGuid(0));
            }
        }

        var confirmed = suspects.Where(_suspects.Contains).ToArray();
        if (confirmed.Length > 0)
        {
            await using var command = new NpgsqlCommand(ReconcilerSql.HeartbeatsSince, connection, transaction);
            command.Parameters.AddWithValue("stale", StaleAfter.TotalSeconds);
            command.Parameters.AddWithValue("since", _suspectsSince);
            if (!(bool)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
            {
                // A live worker has been silent since: keep the previous pass's suspects and time, and look again.
                suspects = _suspects;
                confirmed = [];
                passStarted = _suspectsSince;
            }
        }

        _suspects = suspects;
        _suspectsSince = passStarted;
        if (confirmed.Length > 0)
        {
            await using var command = new NpgsqlCommand(ReconcilerSql.ReleaseQueued, connection, transaction);
            command.Parameters.AddWithValue("ids", confirmed);
            command.Parameters.AddWithValue("cancelled_reason", CancelledReason);
            await ReadReleasedAsync(command, released, cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);

        // Published after the commit: a crash in between leaves the tasks queued with a fresh published_at, and a
        // later pass finds them again. A failed publish likewise.
        var republish = released.Where(r => !r.Cancelled).Select(r => r.Task).ToList();
        if (republish.Count > 0)
        {
            await publisher.PublishAsync(republish, cancellationToken).ConfigureAwait(false);
            LogRepublished(republish.Count, string.Join(", ", republish.Take(5).Select(t => t.Message.TaskId)));
        }

        var cancelled = released.Count - republish.Count;
        if (cancelled > 0)
        {
            LogCancelled(cancelled);
        }

        return new ReconcileResult(republish.Count, cancelled);
    }

    private static async Task ReadReleasedAsync(NpgsqlCommand command, List<(OutgoingTask, bool)> released, CancellationToken cancellationToken)
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            released.Add((TaskRows.ReadOutgoing(reader), reader.GetBoolean(TaskRows.ColumnCount)));
        }
    }

    /// <summary>The lanes (of all workers, and this worker's own queues) whose queue holds no ready message now.</summary>
    private async Task<string[]> IdleQueuesAsync(CancellationToken cancellationToken)
    {
        var idle = new List<string>();
        foreach (var queue in TaskQueues.All.Union(_options.Queues, StringComparer.Ordinal))
        {
            // A lane's task may wait in the lane or in its dispatch queue: the lane is idle only when both are empty.
            // A missing dispatch queue (nothing dispatched yet) holds nothing.
            if (await ReadyAsync(queue, cancellationToken).ConfigureAwait(false) == 0
                && (await ReadyAsync(TaskQueues.DispatchQueueOf(queue), cancellationToken).ConfigureAwait(false) ?? 0) == 0)
            {
                idle.Add(queue);
            }
        }

        return [.. idle];
    }

    /// <summary>The ready messages of <paramref name="queue"/>; null when it does not exist.</summary>
    private async Task<uint?> ReadyAsync(string queue, CancellationToken cancellationToken)
    {
        var channel = await ChannelAsync(cancellationToken).ConfigureAwait(false);
        if (await BrokerProbe.QueueAsync(channel, queue, cancellationToken).ConfigureAwait(false) is { } ok)
        {
            return ok.MessageCount;
        }

        // No such queue (the broker closed the channel for that): nothing can be waiting in it, and nothing could be
        // delivered from a missing lane either, so such a lane does not count as idle.
        await ResetBrokerAsync(connectionToo: false).ConfigureAwait(false);
        return null;
    }

    private async Task<IChannel> ChannelAsync(CancellationToken cancellationToken)
    {
        if (_channel is { IsOpen: true })
        {
            return _channel;
        }

        if (_connection is not { IsOpen: true })
        {
            await ResetBrokerAsync().ConfigureAwait(false);
            _connection = await broker.ConnectAsync($"fleet-reconciler-probe {_options.HostName}:{Environment.ProcessId}", cancellationToken).ConfigureAwait(false);
        }

        _channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        return _channel;
    }

    private async Task ResetBrokerAsync(bool connectionToo = true)
    {
        if (_channel is not null)
        {
            await _channel.DisposeAsync().ConfigureAwait(false);
            _channel = null;
        }

        if (connectionToo && _connection is not null)
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
            _connection = null;
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        await ResetBrokerAsync().ConfigureAwait(false);
    }

    public override void Dispose()
    {
        _channel?.Dispose();
        _connection?.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reconciler: republished {Count} tasks whose message was gone (first: {TaskIds})")]
    private partial void LogRepublished(int count, string taskIds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Reconciler: ended {Count} tasks cancelled whose cancel was asked for while no worker held them")]
    private partial void LogCancelled(int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reconciler pass failed ({ErrorType}: {Reason}); the next pass looks again")]
    private partial void LogPassFailed(string errorType, string reason);
}

/// <summary>What one reconciler pass did.</summary>
public readonly record struct ReconcileResult(int Republished, int Cancelled);
