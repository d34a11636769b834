using System.Diagnostics;
using System.Text.Json;
using Fleet.Client;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Fleet.Bench;

/// <summary>
/// The broker's own limit on this machine: plain RabbitMQ.Client, a fresh durable queue <c>fleet-bench-raw</c> of the
/// lanes' type (the arguments <see cref="QueueTopology.LaneArguments"/> gives a lane) in the fleet's vhost, on the first
/// node of the connection string, <c>count</c> persistent messages published with publisher confirms
/// (a sliding window of outstanding confirms) while one consumer with manual acknowledgements (prefetch
/// <see cref="Prefetch"/>) takes them at the same time. Rate = count / time until the last ack. The queue is
/// deleted afterwards.
/// </summary>
internal static class RawBrokerBaseline
{
    public const string QueueName = "fleet-bench-raw";
    public const ushort Prefetch = 256;
    public const int ConfirmWindow = 512;

    public static async Task<RawBrokerResult> RunAsync(string amqpUri, BrokerQueueType queueType, int count, int bodyBytes, CancellationToken cancellationToken)
    {
        var factory = new ConnectionFactory { Uri = new Uri(BrokerNodes.FirstNodeUri(amqpUri)), ClientProvidedName = "fleet-bench-raw" };
        await using var publisherConnection = await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var consumerConnection = await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var publisher = await publisherConnection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true,
                // Our own sliding window bounds the outstanding confirms; the client's limiter, four times wider,
                // never reaches its throttling threshold (50% of permits in use), which would add delays.
                outstandingPublisherConfirmationsRateLimiter: new ThrottlingRateLimiter(ConfirmWindow * 4)),
            cancellationToken).ConfigureAwait(false);
        await using var consumerChannel = await consumerConnection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);

        // Fresh queue: drop whatever an interrupted earlier run left.
        await publisher.QueueDeleteAsync(QueueName, cancellationToken: cancellationToken).ConfigureAwait(false);
        await publisher.QueueDeclareAsync(QueueName, durable: true, exclusive: false, autoDelete: false,
            arguments: QueueTopology.LaneArguments(queueType), cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            await consumerChannel.BasicQosAsync(0, Prefetch, false, cancellationToken).ConfigureAwait(false);
            var received = 0;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var consumer = new AsyncEventingBasicConsumer(consumerChannel);
            consumer.ReceivedAsync += async (_, delivery) =>
            {
                await consumerChannel.BasicAckAsync(delivery.DeliveryTag, multiple: false, cancellationToken).ConfigureAwait(false);
                if (Interlocked.Increment(ref received) == count)
                {
                    done.TrySetResult();
                }
            };
            await consumerChannel.BasicConsumeAsync(QueueName, autoAck: false, consumer, cancellationToken).ConfigureAwait(false);

            var body = new byte[bodyBytes];
            Array.Fill(body, (byte)'x');
            var properties = new BasicProperties { Persistent = true, ContentType = "application/octet-stream" };
            var clock = Stopwatch.StartNew();
            var inflight = new Queue<Task>(ConfirmWindow);
            for (var i = 0; i < count; i++)
            {
                if (inflight.Count >= ConfirmWindow)
                {
                    await inflight.Dequeue().ConfigureAwait(false);
                }

                inflight.Enqueue(publisher.BasicPublishAsync(string.Empty, QueueName, mandatory: false, properties, body, cancellationToken).AsTask());
            }

            while (inflight.Count > 0)
            {
                await inflight.Dequeue().ConfigureAwait(false);
            }

            var published = clock.Elapsed;
            using (cancellationToken.Register(() => done.TrySetCanceled(cancellationToken)))
            {
                await done.Task.WaitAsync(TimeSpan.FromMinutes(10), cancellationToken).ConfigureAwait(false);
            }

            var elapsed = clock.Elapsed;
            return new RawBrokerResult(count, bodyBytes, elapsed.TotalSeconds, count / elapsed.TotalSeconds, count / published.TotalSeconds) { QueueType = queueType };
        }
        finally
        {
            await publisher.QueueDeleteAsync(QueueName, cancellationToken: CancellationToken.None).ConfigureAwait(false);
        }
    }
}

/// <summary>
/// What a backlog costs the broker: <c>count</c> messages of the run's size published (with confirms) into a fresh queue
/// <c>fleet-bench-backlog</c> of the lanes' type that nobody consumes, then, after the broker's statistics interval,
/// the queue's own <c>memory</c> and the nodes' <c>mem_used</c> from the management API. The queue is deleted afterwards.
/// </summary>
internal static class BacklogMemory
{
    public const string QueueName = "fleet-bench-backlog";

    /// <summary>Longer than RabbitMQ's default collect_statistics_interval (5 s): the readings are then of the full queue.</summary>
    private static readonly TimeSpan StatisticsWait = TimeSpan.FromSeconds(7);

    public static async Task<BacklogResult> MeasureAsync(string amqpUri, BrokerQueueType queueType, int count, int bodyBytes, HttpClient management, CancellationToken cancellationToken)
    {
        var factory = new ConnectionFactory { Uri = new Uri(BrokerNodes.FirstNodeUri(amqpUri)), ClientProvidedName = "fleet-bench-backlog" };
        await using var connection = await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var channel = await connection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true,
                outstandingPublisherConfirmationsRateLimiter: new ThrottlingRateLimiter(RawBrokerBaseline.ConfirmWindow * 4)),
            cancellationToken).ConfigureAwait(false);
        await channel.QueueDeleteAsync(QueueName, cancellationToken: cancellationToken).ConfigureAwait(false);
        await channel.QueueDeclareAsync(QueueName, durable: true, exclusive: false, autoDelete: false,
            arguments: QueueTopology.LaneArguments(queueType), cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            await Task.Delay(StatisticsWait, cancellationToken).ConfigureAwait(false);
            var before = await NodesMemUsedAsync(management, cancellationToken).ConfigureAwait(false);
            var body = new byte[bodyBytes];
            Array.Fill(body, (byte)'x');
            var properties = new BasicProperties { Persistent = true, ContentType = "application/octet-stream" };
            var inflight = new Queue<Task>(RawBrokerBaseline.ConfirmWindow);
            for (var i = 0; i < count; i++)
            {
                if (inflight.Count >= RawBrokerBaseline.ConfirmWindow)
                {
                    await inflight.Dequeue().ConfigureAwait(false);
                }

                inflight.Enqueue(channel.BasicPublishAsync(string.Empty, QueueName, mandatory: false, properties, body, cancellationToken).AsTask());
            }

            while (inflight.Count > 0)
            {
                await inflight.Dequeue().ConfigureAwait(false);
            }

            await Task.Delay(StatisticsWait, cancellationToken).ConfigureAwait(false);
            var after = await NodesMemUsedAsync(management, cancellationToken).ConfigureAwait(false);
            var vhost = Uri.EscapeDataString(RabbitMqAddress.Parse(BrokerNodes.FirstNodeUri(amqpUri)).VirtualHost);
            using var queue = JsonDocument.Parse(await management.GetStringAsync(new Uri($"api/queues/{vhost}/{QueueName}", UriKind.Relative), cancellationToken).ConfigureAwait(false));
            long? queueMemory = queue.RootElement.TryGetProperty("memory", out var m) && m.ValueKind == JsonValueKind.Number ? m.GetInt64() : null;
            return new BacklogResult(count, bodyBytes, queueMemory, before, after);
        }
        finally
        {
            await channel.QueueDeleteAsync(QueueName, cancellationToken: CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static async Task<long?> NodesMemUsedAsync(HttpClient management, CancellationToken cancellationToken)
    {
        using var nodes = JsonDocument.Parse(await management.GetStringAsync(new Uri("api/nodes?columns=name,mem_used", UriKind.Relative), cancellationToken).ConfigureAwait(false));
        var values = nodes.RootElement.EnumerateArray().Where(n => n.TryGetProperty("mem_used", out var v) && v.ValueKind == JsonValueKind.Number).Select(n => n.GetProperty("mem_used").GetInt64()).ToList();
        return values.Count == 0 ? null : values.Sum();
    }
}

/// <summary>A backlog of <paramref name="Messages"/> in the broker: the queue's own memory and every node's mem_used before and after.</summary>
internal sealed record BacklogResult(int Messages, int BodyBytes, long? QueueMemoryBytes, long? MemUsedBeforeBytes, long? MemUsedAfterBytes);

/// <summary>One raw-broker run: the end-to-end rate (last ack) and the publish-with-confirms rate alone.</summary>
internal sealed record RawBrokerResult(int Count, int BodyBytes, double Seconds, double RatePerSecond, double PublishRatePerSecond)
{
    public BrokerQueueType QueueType { get; init; }

    /// <summary>The broker's memory during this run (null when not sampled).</summary>
    public BrokerMemory? BrokerMemory { get; init; }
}
