using System.Diagnostics;
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

/// <summary>One raw-broker run: the end-to-end rate (last ack) and the publish-with-confirms rate alone.</summary>
internal sealed record RawBrokerResult(int Count, int BodyBytes, double Seconds, double RatePerSecond, double PublishRatePerSecond)
{
    public BrokerQueueType QueueType { get; init; }

    /// <summary>The broker's memory during this run (null when not sampled).</summary>
    public BrokerMemory? BrokerMemory { get; init; }
}
