using System.Diagnostics;
using System.Text.Json;
using Fleet.Contracts;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Fleet.Client;

/// <summary>
/// Sends task messages as the public plain JSON body (the same bytes any AMQP producer may send, see
/// <c>task-message.schema.json</c>) with RabbitMQ.Client, pipelining the publisher confirms: a submission of N
/// tasks keeps up to <see cref="ConfirmWindow"/> messages in flight on one channel and waits for the broker's
/// confirms together, instead of one confirmed send after another, so a producer is bound by the broker, not by
/// round trips (docs/decisions/0004).
/// <para>
/// Each message is persistent, mandatory (an unroutable message is an error, never silently dropped), has the
/// task id as its <c>message_id</c>, and carries the caller's trace context (<c>traceparent</c> for any consumer,
/// <c>MT-Activity-Id</c> for MassTransit's) so that the worker's consume joins the submitter's trace.
/// </para>
/// Concurrent <see cref="PublishAsync"/> calls each take a channel of their own from a small pool (channels are
/// not shared between concurrent publishers). A failed channel or connection is dropped and rebuilt by the next
/// call; the failed call throws, and its tasks stay unstamped for the relay.
/// </summary>
public sealed class RabbitMqTaskPublisher(RabbitMqAddress address, string connectionName) : ITaskPublisher, IAsyncDisposable
{
    /// <summary>Messages awaiting their confirm per channel; the broker acknowledges in batches, so a wide window pays.</summary>
    public const int ConfirmWindow = 1024;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly SemaphoreSlim _connectionLock = new(1, 1);
    private readonly Stack<IChannel> _idle = new();
    private readonly Lock _idleLock = new();
    private readonly HashSet<string> _declared = new(StringComparer.Ordinal);
    private IConnection? _connection;
    private bool _disposed;

    public async Task PublishAsync(IReadOnlyList<OutgoingTask> tasks, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tasks.Count == 0)
        {
            return;
        }

        using var activity = ClientTelemetry.Source.StartActivity(tasks.Count == 1 ? $"{tasks[0].Queue} send" : "fleet send", ActivityKind.Producer);
        activity?.SetTag("messaging.system", "rabbitmq");
        activity?.SetTag("messaging.batch.message_count", tasks.Count);
        if (tasks.Count == 1)
        {
            activity?.SetTag("fleet.task_id", tasks[0].Message.TaskId);
        }

        var channel = await RentChannelAsync(cancellationToken).ConfigureAwait(false);
        var healthy = false;
        try
        {
            await DeclareAsync(channel, tasks, cancellationToken).ConfigureAwait(false);
            var traceParent = Activity.Current?.Id;
            var inflight = new Queue<Task>(Math.Min(tasks.Count, ConfirmWindow));
            foreach (var task in tasks)
            {
                if (inflight.Count >= ConfirmWindow)
                {
                    await inflight.Dequeue().ConfigureAwait(false);
                }

                inflight.Enqueue(PublishOneAsync(channel, task, traceParent, cancellationToken));
            }

            // Every send is awaited, even after one failed, so that no confirm is left pending on a pooled channel.
            Exception? first = null;
            while (inflight.Count > 0)
            {
                try
                {
                    await inflight.Dequeue().ConfigureAwait(false);
                }
                catch (Exception ex) when (first is null)
                {
                    first = ex;
                }
            }

            if (first is not null)
            {
                activity?.SetStatus(ActivityStatusCode.Error, first.Message);
                throw first is PublishException returned && returned.IsReturn
                    ? new InvalidOperationException("A task message could not be routed to its queue (the broker returned it).", first)
                    : first;
            }

            healthy = true;
        }
        finally
        {
            ReturnChannel(channel, healthy);
        }
    }

    /// <summary>The size in bytes of the body this publisher sends for <paramref name="message"/> (benchmarks size their baselines by it).</summary>
    public static int BodyBytes(ProcessTask message) => JsonSerializer.SerializeToUtf8Bytes(message, Json).Length;

    private static Task PublishOneAsync(IChannel channel, OutgoingTask task, string? traceParent, CancellationToken cancellationToken)
    {
        var message = task.Message;
        var properties = new BasicProperties
        {
            ContentType = "application/json",
            DeliveryMode = DeliveryModes.Persistent,
            MessageId = message.TaskId.ToString(),
        };
        if (traceParent is not null)
        {
            properties.Headers = new Dictionary<string, object?>(2, StringComparer.Ordinal)
            {
                ["traceparent"] = traceParent,
                ["MT-Activity-Id"] = traceParent,
            };
        }

        var body = JsonSerializer.SerializeToUtf8Bytes(message, Json);

        // The lane's fanout exchange (named like its queue, as MassTransit lays it out) routes to the queue.
        // With confirmation tracking on, the returned task completes when the broker has confirmed the message.
        return channel.BasicPublishAsync(task.Queue, string.Empty, mandatory: true, properties, body, cancellationToken).AsTask();
    }

    /// <summary>
    /// Makes sure each lane's exchange, queue and binding exist, exactly as the workers' MassTransit endpoints
    /// declare them (durable fanout exchange and durable classic queue of the same name), so that tasks sent before
    /// any worker ever started are kept, not dropped. Done once per queue and connection. A lane that exists is only
    /// looked at (a passive declare needs no rights): a producer's broker user may publish to the lanes but not
    /// configure them, which would also let it delete them. Only a missing lane is declared, which needs that right.
    /// </summary>
    private async Task DeclareAsync(IChannel channel, IReadOnlyList<OutgoingTask> tasks, CancellationToken cancellationToken)
    {
        // A submission goes to one or two lanes: look each distinct queue up once, not once per task.
        string? previous = null;
        foreach (var task in tasks)
        {
            var queue = task.Queue;
            if (queue == previous)
            {
                continue;
            }

            previous = queue;
            bool known;
            lock (_idleLock)
            {
                known = _declared.Contains(queue);
            }

            if (known)
            {
                continue;
            }

            if (!await LaneExistsAsync(queue, cancellationToken).ConfigureAwait(false))
            {
                await channel.ExchangeDeclareAsync(queue, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: cancellationToken).ConfigureAwait(false);
                await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, QueueTopology.LaneArguments(address.QueueType), cancellationToken: cancellationToken).ConfigureAwait(false);
                await channel.QueueBindAsync(queue, queue, string.Empty, cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            lock (_idleLock)
            {
                _declared.Add(queue);
            }
        }
    }

    /// <summary>
    /// True if the lane's exchange and queue both exist (their binding is taken on trust: a publish it lacks comes back
    /// as unroutable). On a channel of its own, because the broker closes a channel whose passive declare finds nothing.
    /// </summary>
    private async Task<bool> LaneExistsAsync(string queue, CancellationToken cancellationToken)
    {
        var connection = await ConnectionAsync(cancellationToken).ConfigureAwait(false);
        var probe = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        await using (probe.ConfigureAwait(false))
        {
            // A missing exchange closes the probe's channel: the queue is asked only after a found exchange.
            return await BrokerProbe.ExchangeExistsAsync(probe, queue, cancellationToken).ConfigureAwait(false)
                && await BrokerProbe.QueueAsync(probe, queue, cancellationToken).ConfigureAwait(false) is not null;
        }
    }

    private async Task<IChannel> RentChannelAsync(CancellationToken cancellationToken)
    {
        lock (_idleLock)
        {
            while (_idle.TryPop(out var pooled))
            {
                if (pooled.IsOpen)
                {
                    return pooled;
                }

                pooled.Dispose();
            }
        }

        var connection = await ConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await connection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true,
                // The window above bounds what is outstanding; the client's own limiter, twice as wide, never
                // reaches its throttling threshold (half its permits), which would add delays of its own.
                outstandingPublisherConfirmationsRateLimiter: new ThrottlingRateLimiter(ConfirmWindow * 2)),
            cancellationToken).ConfigureAwait(false);
    }

    private void ReturnChannel(IChannel channel, bool healthy)
    {
        if (healthy && channel.IsOpen)
        {
            lock (_idleLock)
            {
                if (!_disposed)
                {
                    _idle.Push(channel);
                    return;
                }
            }
        }

        // A channel that saw an error may hold a half-finished state: never reuse it.
        channel.Dispose();
    }

    private async Task<IConnection> ConnectionAsync(CancellationToken cancellationToken)
    {
        await _connectionLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_connection is { IsOpen: true })
            {
                return _connection;
            }

            if (_connection is not null)
            {
                await _connection.DisposeAsync().ConfigureAwait(false);
                lock (_idleLock)
                {
                    _declared.Clear();
                }
            }

            // Any node of the address: after a node loss the new connection lands on one that is up.
            _connection = await address.ConnectAsync(connectionName, cancellationToken).ConfigureAwait(false);
            return _connection;
        }
        finally
        {
            _connectionLock.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        List<IChannel> idle;
        lock (_idleLock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            idle = [.. _idle];
            _idle.Clear();
        }

        foreach (var channel in idle)
        {
            await channel.DisposeAsync().ConfigureAwait(false);
        }

        if (_connection is not null)
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
        }

        _connectionLock.Dispose();
    }
}
