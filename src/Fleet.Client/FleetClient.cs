using Fleet.Contracts;
using MassTransit;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.Client;

/// <summary>
/// Submits tasks to the fleet and reads their state. A submission first commits the task rows as <c>queued</c>
/// with <c>published_at</c> null, then sends the messages with publisher confirms, then stamps
/// <c>published_at</c>: a crash in between leaves rows that a relay (planned with the HTTP API) can find and republish, and workers are
/// idempotent by task id, so a republish never runs a task twice after it is final.
/// Thread-safe; create one per process and dispose it at shutdown.
/// </summary>
public sealed class FleetClient : IAsyncDisposable
{
    private const string InsertSql = """
        INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, timeout_seconds, priority, batch_id, submitted_at)
        SELECT i.id, i.type, i.queue, 'queued', i.payload, 0, i.max_attempts, i.timeout_seconds, i.priority, i.batch_id, i.submitted_at
        FROM unnest(@id, @type, @queue, @payload, @max_attempts, @timeout_seconds, @priority, @batch_id, @submitted_at)
            AS i(id, type, queue, payload, max_attempts, timeout_seconds, priority, batch_id, submitted_at)
        ON CONFLICT (id) DO NOTHING
        """;

    private const string MarkPublishedSql =
        "UPDATE fleet.tasks SET published_at = now() WHERE id = ANY(@id) AND published_at IS NULL";

    private const string SelectTaskSql = """
        SELECT id, type, queue, status, payload::text, result::text, error_type, error_message, attempts, batch_id,
               submitted_at, started_at, finished_at, worker_id
        FROM fleet.tasks WHERE id = @id
        """;

    private const string BatchProgressSql = """
        SELECT count(*),
               count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'running'),
               count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'),
               count(*) FILTER (WHERE status = 'timed_out'), count(*) FILTER (WHERE status = 'cancelled')
        FROM fleet.tasks WHERE batch_id = @batch_id
        """;

    private readonly FleetClientOptions _options;
    private readonly NpgsqlDataSource _dataSource;
    private readonly IBusControl _bus;
    private readonly SemaphoreSlim _startLock = new(1, 1);
    private volatile bool _started;

    public FleetClient(FleetClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        System.ComponentModel.DataAnnotations.Validator.ValidateObject(options, new(options), validateAllProperties: true);
        _options = options;
        _dataSource = NpgsqlDataSource.Create(options.PostgresConnectionString);
        var address = RabbitMqAddress.Parse(options.RabbitMqUri);
        _bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            // Sends are awaited until the broker confirms them (MassTransit's default publisher confirms), so a
            // send that fails is never stamped published.
            cfg.UseFleetHost(address, "fleet-client");
        });
    }

    /// <summary>Submits one task and returns its id once it is stored and confirmed by the broker.</summary>
    public async Task<Guid> SubmitAsync(TaskRequest request, CancellationToken cancellationToken = default)
    {
        var ids = await SubmitManyAsync([request], cancellationToken).ConfigureAwait(false);
        return ids[0];
    }

    /// <summary>Submits many tasks with bulk writes and concurrent confirmed sends; returns their ids in order.</summary>
    public async Task<IReadOnlyList<Guid>> SubmitManyAsync(IEnumerable<TaskRequest> requests, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        await EnsureStartedAsync(cancellationToken).ConfigureAwait(false);
        var now = DateTimeOffset.UtcNow;
        var messages = requests.Select(r => ToMessage(r, now)).ToList();
        foreach (var chunk in messages.Chunk(_options.BulkChunkSize))
        {
            await InsertAsync(chunk, cancellationToken).ConfigureAwait(false);
            await SendAsync(chunk, cancellationToken).ConfigureAwait(false);
            await MarkPublishedAsync(chunk, cancellationToken).ConfigureAwait(false);
        }

        return [.. messages.Select(m => m.Message.TaskId)];
    }

    /// <summary>Reads one task, or null when no task has that id.</summary>
    public async Task<TaskInfo?> GetAsync(Guid taskId, CancellationToken cancellationToken = default)
    {
        await using var command = _dataSource.CreateCommand(SelectTaskSql);
        command.Parameters.AddWithValue("id", taskId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        return new TaskInfo(
            reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4),
            reader.IsDBNull(5) ? null : reader.GetString(5), reader.IsDBNull(6) ? null : reader.GetString(6),
            reader.IsDBNull(7) ? null : reader.GetString(7), reader.GetInt32(8), reader.IsDBNull(9) ? null : reader.GetGuid(9),
            reader.GetFieldValue<DateTimeOffset>(10), reader.IsDBNull(11) ? null : reader.GetFieldValue<DateTimeOffset>(11),
            reader.IsDBNull(12) ? null : reader.GetFieldValue<DateTimeOffset>(12), reader.IsDBNull(13) ? null : reader.GetString(13));
    }

    /// <summary>Counts a batch's tasks by state (one indexed aggregate).</summary>
    public async Task<BatchProgress> GetBatchProgressAsync(Guid batchId, CancellationToken cancellationToken = default)
    {
        await using var command = _dataSource.CreateCommand(BatchProgressSql);
        command.Parameters.AddWithValue("batch_id", batchId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return new BatchProgress(batchId, reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3),
            reader.GetInt64(4), reader.GetInt64(5), reader.GetInt64(6));
    }

    /// <summary>Polls until the task is final or <paramref name="timeout"/> passes; returns the last state read.</summary>
    public async Task<TaskInfo?> WaitAsync(Guid taskId, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);
        var delay = TimeSpan.FromMilliseconds(20);
        while (true)
        {
            var info = await GetAsync(taskId, cancellationToken).ConfigureAwait(false);
            if (info is { IsFinal: true } || timeoutSource.IsCancellationRequested)
            {
                return info;
            }

            try
            {
                await Task.Delay(delay, timeoutSource.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return await GetAsync(taskId, cancellationToken).ConfigureAwait(false);
            }

            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 500));
        }
    }

    private QueuedMessage ToMessage(TaskRequest request, DateTimeOffset now)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(request.Type, nameof(request));
        if (request.Payload.ValueKind != System.Text.Json.JsonValueKind.Object)
        {
            throw new ArgumentException($"The payload of task type '{request.Type}' must be a JSON object.", nameof(request));
        }

        var queue = request.Queue ?? (_options.CpuTypes.Contains(request.Type) ? TaskQueues.Cpu : TaskQueues.Io);
        var message = new ProcessTask
        {
            TaskId = request.TaskId ?? Guid.CreateVersion7(now),
            Type = request.Type,
            Payload = request.Payload,
            Priority = request.Priority,
            TimeoutSeconds = request.TimeoutSeconds,
            MaxAttempts = request.MaxAttempts ?? _options.DefaultMaxAttempts,
            BatchId = request.BatchId,
            SubmittedAt = now,
        };
        return new QueuedMessage(queue, message);
    }

    private async Task InsertAsync(QueuedMessage[] chunk, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(InsertSql);
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

    private async Task SendAsync(QueuedMessage[] chunk, CancellationToken cancellationToken)
    {
        var sends = new List<Task>(chunk.Length);
        foreach (var group in chunk.GroupBy(m => m.Queue, StringComparer.Ordinal))
        {
            var endpoint = await _bus.GetSendEndpoint(new Uri($"queue:{group.Key}")).ConfigureAwait(false);
            foreach (var message in group)
            {
                sends.Add(endpoint.Send(message.Message, context => context.MessageId = message.Message.TaskId, cancellationToken));
            }
        }

        await Task.WhenAll(sends).ConfigureAwait(false);
    }

    private async Task MarkPublishedAsync(QueuedMessage[] chunk, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(MarkPublishedSql);
        command.Parameters.Add(Array("id", NpgsqlDbType.Uuid, chunk.Select(m => m.Message.TaskId)));
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task EnsureStartedAsync(CancellationToken cancellationToken)
    {
        if (_started)
        {
            return;
        }

        await _startLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!_started)
            {
                await _bus.StartAsync(cancellationToken).ConfigureAwait(false);
                _started = true;
            }
        }
        finally
        {
            _startLock.Release();
        }
    }

    private static NpgsqlParameter Array<T>(string name, NpgsqlDbType elementType, IEnumerable<T> values) =>
        new(name, NpgsqlDbType.Array | elementType) { Value = values.ToArray() };

    public async ValueTask DisposeAsync()
    {
        if (_started)
        {
            await _bus.StopAsync().ConfigureAwait(false);
        }

        await _dataSource.DisposeAsync().ConfigureAwait(false);
        _startLock.Dispose();
    }

    private readonly record struct QueuedMessage(string Queue, ProcessTask Message);
}
