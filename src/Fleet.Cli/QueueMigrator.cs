using Fleet.Contracts;
using Fleet.Client;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Fleet.Cli;

/// <summary>
/// Moves a lane's queues (the lane, its <c>_error</c> and <c>_skipped</c> queues, and the retry rungs an older version
/// left, where they still exist) to another queue type. A queue's type cannot change in place, so each queue is emptied into a temporary queue of the target type
/// (<c>{queue}.migrating</c>), deleted, declared again with <see cref="QueueTopology"/>'s arguments and filled back.
/// Every move is at-least-once: a message is acknowledged on its source only after the broker confirmed its copy, so
/// an interruption can duplicate messages (a task runs once anyway: workers claim it in PostgreSQL) but never drop
/// one. Which step a queue is at follows from what exists (the queue, its type, the temporary queue), so running the
/// migration again after an interruption finishes it.
/// </summary>
internal sealed class QueueMigrator(IConnection connection, BrokerQueueType target, TextWriter output)
{
    /// <summary>The suffix of the temporary queue a queue's messages wait in while the queue is declared again.</summary>
    public const string TemporarySuffix = ".migrating";

    private const int MoveBatch = 500;

    /// <summary>The queues of <paramref name="lane"/> in the order they are moved: the lane last, so that the rungs
    /// that dead-letter into it and the error queues are of the target type before workers can use it again.</summary>
    public static IReadOnlyList<QueueSpec> QueuesOf(string lane) =>
    [
        .. QueueTopology.RetryRungNames(lane).Select(rung => new QueueSpec(rung, lane, IsRung: true)),
        new QueueSpec($"{lane}_error", lane, IsRung: false),
        new QueueSpec($"{lane}_skipped", lane, IsRung: false),
        new QueueSpec($"{TaskQueues.DispatchQueueOf(lane)}_error", lane, IsRung: false),
        new QueueSpec($"{TaskQueues.DispatchQueueOf(lane)}_skipped", lane, IsRung: false),
        new QueueSpec(TaskQueues.DispatchQueueOf(lane), lane, IsRung: false),
        new QueueSpec(lane, lane, IsRung: false),
    ];

    /// <summary>The arguments <paramref name="queue"/> is declared with for <paramref name="type"/>.</summary>
    public static Dictionary<string, object?> ArgumentsOf(QueueSpec queue, BrokerQueueType type) =>
        queue.IsRung ? QueueTopology.RetryRungArguments(type, queue.Lane) : QueueTopology.LaneArguments(type);

    /// <summary>The consumers of each existing lane queue: a worker consuming while its lane is deleted would
    /// redeclare it with its own type, and its deliveries would be requeued into a queue about to go.</summary>
    public async Task<IReadOnlyList<(string Queue, uint Consumers)>> ConsumersAsync(IEnumerable<string> lanes, CancellationToken cancellationToken)
    {
        var found = new List<(string, uint)>();
        foreach (var queue in lanes.SelectMany(lane => new[] { lane, TaskQueues.DispatchQueueOf(lane) }))
        {
            if (await PeekAsync(queue, cancellationToken).ConfigureAwait(false) is { ConsumerCount: > 0 } state)
            {
                found.Add((queue, state.ConsumerCount));
            }
        }

        return found;
    }

    /// <summary>Moves every queue of <paramref name="lane"/> to the target type; prints one line per queue.</summary>
    public async Task<long> MigrateLaneAsync(string lane, CancellationToken cancellationToken)
    {
        long moved = 0;
        foreach (var queue in QueuesOf(lane))
        {
            moved += await MigrateQueueAsync(queue, cancellationToken).ConfigureAwait(false);
        }

        return moved;
    }

    private async Task<long> MigrateQueueAsync(QueueSpec queue, CancellationToken cancellationToken)
    {
        var temporary = queue.Name + TemporarySuffix;
        var source = await PeekAsync(queue.Name, cancellationToken).ConfigureAwait(false);
        var parked = await PeekAsync(temporary, cancellationToken).ConfigureAwait(false);
        if (source is null && parked is null)
        {
            return 0; // never used (an _error queue nothing faulted into), or a rung of an older version that is gone or never was
        }

        var exchange = await ExchangeExistsAsync(queue.Name, cancellationToken).ConfigureAwait(false) ? queue.Name : null;
        var wasTarget = source is not null && await IsOfTargetTypeAsync(queue, cancellationToken).ConfigureAwait(false);
        if (wasTarget && parked is null)
        {
            if (exchange is not null)
            {
                await WithChannelAsync(ch => ch.QueueBindAsync(queue.Name, exchange, string.Empty, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            }

            output.WriteLine($"{queue.Name}: already {Name(target)}, {source!.MessageCount} message(s) left in place");
            return 0;
        }

        long out_ = 0;
        if (source is not null && !wasTarget)
        {
            // Out: new publishes land in the temporary queue first, then the queue is emptied into it and deleted.
            await WithChannelAsync(ch => ch.QueueDeclareAsync(temporary, durable: true, exclusive: false, autoDelete: false, ArgumentsOf(queue, target), cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            if (exchange is not null)
            {
                await WithChannelAsync(ch => ch.QueueBindAsync(temporary, exchange, string.Empty, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
                await WithChannelAsync(ch => ch.QueueUnbindAsync(queue.Name, exchange, string.Empty, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            }

            out_ = await DrainThenDeleteAsync(queue.Name, temporary, cancellationToken).ConfigureAwait(false);
        }

        // Back: the queue again, of the target type, bound before the temporary queue is unbound (a publish in between
        // lands in both: a duplicate message, which a task survives; no binding at all would refuse it).
        await WithChannelAsync(ch => ch.QueueDeclareAsync(queue.Name, durable: true, exclusive: false, autoDelete: false, ArgumentsOf(queue, target), cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
        if (exchange is not null)
        {
            await WithChannelAsync(ch => ch.QueueBindAsync(queue.Name, exchange, string.Empty, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            await WithChannelAsync(ch => ch.QueueUnbindAsync(temporary, exchange, string.Empty, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
        }

        var back = await DrainThenDeleteAsync(temporary, queue.Name, cancellationToken).ConfigureAwait(false);
        output.WriteLine(wasTarget || source is null
            ? $"{queue.Name}: {Name(target)}; finished an interrupted migration, moved {back} message(s) back"
            : $"{queue.Name}: {Name(Other(target))} -> {Name(target)}, moved {out_} message(s) out and {back} back");
        return back;
    }

    /// <summary>
    /// Moves every message of <paramref name="from"/> to <paramref name="to"/>, then deletes <paramref name="from"/> once
    /// it is empty; moves again while something (a rung dead-lettering into a lane) put a message in meanwhile.
    /// </summary>
    private async Task<long> DrainThenDeleteAsync(string from, string to, CancellationToken cancellationToken)
    {
        long moved = 0;
        while (true)
        {
            moved += await MoveAllAsync(from, to, cancellationToken).ConfigureAwait(false);
            var state = await PeekAsync(from, cancellationToken).ConfigureAwait(false);
            if (state is null)
            {
                return moved;
            }

            // A quorum queue counts the messages just taken by basic.get until their acknowledgements are applied
            // (its consumer count too, so that is not checked here): ask again shortly.
            if (state.MessageCount > 0)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken).ConfigureAwait(false);
                continue;
            }

            // Quorum queues refuse if-empty deletes (540 NOT_IMPLEMENTED), hence the check above. Only a message
            // dead-lettered into the lane in the instant between them can be lost: its task is still queued in
            // PostgreSQL, and the reconciler publishes it again.
            var dropped = await WithChannelAsync(ch => ch.QueueDeleteAsync(from, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            if (dropped > 0)
            {
                output.WriteLine($"{from}: {dropped} message(s) arrived while it was deleted; the reconciler publishes their queued tasks again");
            }

            return moved;
        }
    }

    /// <summary>Get, copy with publisher confirms, acknowledge: a message leaves its queue only once its copy is safe.</summary>
    private async Task<long> MoveAllAsync(string from, string to, CancellationToken cancellationToken)
    {
        var options = new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true);
        var channel = await connection.CreateChannelAsync(options, cancellationToken).ConfigureAwait(false);
        await using (channel.ConfigureAwait(false))
        {
            long moved = 0;
            while (true)
            {
                ulong last = 0;
                var batch = 0;
                while (batch < MoveBatch && await channel.BasicGetAsync(from, autoAck: false, cancellationToken).ConfigureAwait(false) is { } message)
                {
                    // Same body, same properties and headers: the per-message expiration of a rung's message too,
                    // whose countdown starts again in the new queue (see docs/queues.md).
                    var properties = new BasicProperties(message.BasicProperties);
                    await channel.BasicPublishAsync(string.Empty, to, mandatory: true, properties, message.Body, cancellationToken).ConfigureAwait(false);
                    last = message.DeliveryTag;
                    batch++;
                }

                if (batch == 0)
                {
                    return moved;
                }

                await channel.BasicAckAsync(last, multiple: true, cancellationToken).ConfigureAwait(false);
                moved += batch;
            }
        }
    }

    /// <summary>A declare with the target arguments succeeds only on a queue of the target type (and arguments).</summary>
    private async Task<bool> IsOfTargetTypeAsync(QueueSpec queue, CancellationToken cancellationToken)
    {
        try
        {
            await WithChannelAsync(ch => ch.QueueDeclareAsync(queue.Name, durable: true, exclusive: false, autoDelete: false, ArgumentsOf(queue, target), cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (OperationInterruptedException ex) when (ex.ShutdownReason?.ReplyCode == Constants.PreconditionFailed)
        {
            return false;
        }
    }

    /// <summary>The queue's message and consumer counts, or null if it does not exist.</summary>
    private Task<QueueDeclareOk?> PeekAsync(string queue, CancellationToken cancellationToken) =>
        BrokerProbe.QueueAsync(connection, queue, cancellationToken);

    private Task<bool> ExchangeExistsAsync(string exchange, CancellationToken cancellationToken) =>
        BrokerProbe.ExchangeExistsAsync(connection, exchange, cancellationToken);

    // The broker closes a channel on any refused operation: each step gets a fresh one.
    private async Task<T> WithChannelAsync<T>(Func<IChannel, Task<T>> step, CancellationToken cancellationToken)
    {
        var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        await using (channel.ConfigureAwait(false))
        {
            return await step(channel).ConfigureAwait(false);
        }
    }

    private Task WithChannelAsync(Func<IChannel, Task> step, CancellationToken cancellationToken) =>
        WithChannelAsync(async ch => { await step(ch).ConfigureAwait(false); return true; }, cancellationToken);

    private static BrokerQueueType Other(BrokerQueueType type) => type == BrokerQueueType.Quorum ? BrokerQueueType.Classic : BrokerQueueType.Quorum;

    public static string Name(BrokerQueueType type) => type.ToString().ToLowerInvariant();
}

/// <summary>One queue of a lane: its name, its lane, and whether it is a retry rung (dead-letters into the lane).</summary>
internal sealed record QueueSpec(string Name, string Lane, bool IsRung);
