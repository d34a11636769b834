using Fleet.Contracts;
using Fleet.Client;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// Before the bus starts: checks that the lanes that already exist (and their <c>_error</c> and <c>_skipped</c> queues)
/// are of the configured <c>RabbitMq:QueueType</c>. Without it a worker whose lanes have the other type
/// would have MassTransit redeclare them forever (406 PRECONDITION_FAILED, the channel closed, a retry every few
/// seconds) and never consume; with it the worker stops at once with one line that names the queue, both types and
/// the fix. Queues that do not exist yet are left to the bus to declare. The retry delay queues of older versions
/// (<c>{lane}.retry.{n}s</c>) are not looked at: no worker declares them any more, and <c>fleet queues migrate</c>
/// moves those that still exist.
/// </summary>
internal sealed partial class LaneQueueTypeCheck(RabbitMqAddress broker, IOptions<WorkerOptions> options, ILogger<LaneQueueTypeCheck> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        IConnection connection;
        try
        {
            connection = await broker.ConnectAsync($"fleet-worker queue check {Environment.ProcessId}", cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // An unreachable broker is the bus's to wait for and report; this check only looks at queues it can see.
            LogUnchecked(logger, ex.Message);
            return;
        }

        await using (connection.ConfigureAwait(false))
        {
            var configured = broker.QueueType;
            var other = configured == BrokerQueueType.Quorum ? BrokerQueueType.Classic : BrokerQueueType.Quorum;
            var wrong = new List<string>();
            foreach (var lane in options.Value.Queues)
            {
                IEnumerable<(string Queue, Dictionary<string, object?> Arguments)> queues =
                [
                    (lane, QueueTopology.LaneArguments(configured)),
                    ($"{lane}_error", QueueTopology.LaneArguments(configured)),
                    ($"{lane}_skipped", QueueTopology.LaneArguments(configured)),
                    (TaskQueues.DispatchQueueOf(lane), QueueTopology.LaneArguments(configured)),
                    ($"{TaskQueues.DispatchQueueOf(lane)}_error", QueueTopology.LaneArguments(configured)),
                    ($"{TaskQueues.DispatchQueueOf(lane)}_skipped", QueueTopology.LaneArguments(configured)),
                ];
                foreach (var (queue, arguments) in queues)
                {
                    if (await IsDifferentAsync(connection, queue, arguments, cancellationToken).ConfigureAwait(false))
                    {
                        wrong.Add(queue);
                    }
                }
            }

            if (wrong.Count > 0)
            {
                var type = configured.ToString().ToLowerInvariant();
                var message = $"Queue(s) {string.Join(", ", wrong)} exist as {other.ToString().ToLowerInvariant()} queues (or with other arguments), "
                    + $"but {QueueTopology.QueueTypeKey} is {type}: a queue's type cannot change in place. Stop every worker and run "
                    + $"`fleet queues migrate --to {type}` (docs/queues.md), or set RabbitMq__QueueType={other.ToString().ToLowerInvariant()}.";
                LogWrongType(logger, message);
                throw new InvalidOperationException(message);
            }
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>True if <paramref name="queue"/> exists and a declare with <paramref name="arguments"/> is refused.</summary>
    private static async Task<bool> IsDifferentAsync(IConnection connection, string queue, Dictionary<string, object?> arguments, CancellationToken cancellationToken)
    {
        if (await BrokerProbe.QueueAsync(connection, queue, cancellationToken).ConfigureAwait(false) is null)
        {
            return false;
        }

        // A refused declare closes its channel: a channel of its own.
        var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        await using (channel.ConfigureAwait(false))
        {
            try
            {
                // The very declare the bus makes: a no-op on an equivalent queue.
                await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments, cancellationToken: cancellationToken).ConfigureAwait(false);
                return false;
            }
            catch (OperationInterruptedException ex) when (ex.ShutdownReason?.ReplyCode == Constants.PreconditionFailed)
            {
                return true;
            }
            catch (OperationInterruptedException ex) when (ex.ShutdownReason?.ReplyCode == Constants.AccessRefused)
            {
                // A login that may not configure this queue cannot tell; whoever declares it will say so.
                return false;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "{Message}")]
    private static partial void LogWrongType(ILogger logger, string message);

    [LoggerMessage(Level = LogLevel.Debug, Message = "The lanes' queue types were not checked: the broker is not reachable yet ({Reason})")]
    private static partial void LogUnchecked(ILogger logger, string reason);
}
