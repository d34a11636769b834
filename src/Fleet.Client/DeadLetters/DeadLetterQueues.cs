using System.Collections;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Unicode;
using Fleet.Contracts;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Fleet.Client;

/// <summary>
/// The messages MassTransit faulted into the lanes' <c>_error</c> queues (a body that names no task, a message
/// whose consume failed after its retries): listed with their reason, replayed to the queue they faulted on, or
/// discarded. The API (<c>/dead-letters</c>) and the CLI (<c>fleet dead-letters</c>, which compiles this file) share it.
/// <para>
/// Everything goes through AMQP <c>basic.get</c> without auto-ack on the API's own broker connection, not through the
/// management API's "get messages" (which does the same inside the broker with <c>ackmode=reject_requeue_true</c>):
/// the management URI is optional and its user needs the <c>management</c> tag, while AMQP is always there, needs
/// only the read right on the error queues, and works the same on classic and quorum queues. A message taken is
/// held unacknowledged until the operation decides: ack (discarded, or replayed and confirmed), or one
/// <c>basic.nack</c> with requeue for all the others at the end. Should the process die in between, the broker
/// requeues whatever the closed channel held: nothing is lost. Requeued messages of a classic queue go back to their
/// places; a quorum queue delivers returned messages before the rest, in their order; so a listing leaves the
/// order as it was. A quorum queue counts each return (<c>x-delivery-count</c>); Fleet declares no delivery limit,
/// and one (RabbitMQ 4's default of 20) would drop a dead letter after that many listings.
/// </para>
/// Operations of one process take turns: a listing holds its messages, which a replay at the same time would not see.
/// </summary>
public sealed class DeadLetterQueues(RabbitMqAddress broker, string connectionName)
{
    /// <summary>The suffix MassTransit gives a receive endpoint's error queue.</summary>
    public const string ErrorSuffix = "_error";

    /// <summary>The most dead letters one listing returns.</summary>
    public const int MaxLimit = 1000;

    /// <summary>The listing's default size.</summary>
    public const int DefaultLimit = 100;

    /// <summary>How much of a body a listing shows.</summary>
    public const int MaxBodyBytes = 64 * 1024;

    private const int MaxHeaderChars = 2000;

    private readonly SemaphoreSlim _turn = new(1, 1);

    /// <summary>The error queues of the queues of <paramref name="catalog"/> and their dispatch queues: <c>fleet-cpu_error</c>, <c>fleet-cpu.dispatch_error</c>, ...</summary>
    public static IReadOnlyList<string> QueuesOf(QueueCatalog catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return [.. catalog.Names.SelectMany(queue => new[] { queue + ErrorSuffix, TaskQueues.DispatchQueueOf(queue) + ErrorSuffix })];
    }

    /// <summary>The queue a dead letter of <paramref name="errorQueue"/> faulted on, whose fanout exchange a replay publishes to.</summary>
    public static string LaneOf(string errorQueue)
    {
        ArgumentNullException.ThrowIfNull(errorQueue);
        return errorQueue.EndsWith(ErrorSuffix, StringComparison.Ordinal) ? errorQueue[..^ErrorSuffix.Length] : errorQueue;
    }

    /// <summary>Up to <paramref name="limit"/> dead letters of <paramref name="queues"/>, in queue order; nothing is removed.</summary>
    public async Task<DeadLetterList> ListAsync(IReadOnlyList<string> queues, int limit, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(queues);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await using var connection = await broker.ConnectAsync(connectionName, cancellationToken).ConfigureAwait(false);
            var depths = new List<DeadLetterQueueDepth>();
            var letters = new List<DeadLetter>();
            var truncated = false;
            foreach (var queue in queues)
            {
                // A channel per queue: a passive declare of a queue nothing ever faulted into closes its channel.
                var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
                await using (channel.ConfigureAwait(false))
                {
                    var depth = await DepthAsync(channel, queue, cancellationToken).ConfigureAwait(false);
                    depths.Add(depth);
                    if (depth.Messages == 0)
                    {
                        continue;
                    }

                    ulong? last = null;
                    var read = 0;
                    try
                    {
                        while (letters.Count < limit && await channel.BasicGetAsync(queue, autoAck: false, cancellationToken).ConfigureAwait(false) is { } message)
                        {
                            last = message.DeliveryTag;
                            letters.Add(Describe(queue, message));
                            read++;
                        }

                        truncated |= read < depth.Messages;
                    }
                    finally
                    {
                        if (last is { } tag && channel.IsOpen)
                        {
                            // All at once, at the end: one by one, a requeued message would be the next basic.get's answer.
                            await channel.BasicNackAsync(tag, multiple: true, requeue: true, CancellationToken.None).ConfigureAwait(false);
                        }
                    }
                }
            }

            return new DeadLetterList(depths, letters, truncated);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>
    /// Sends the selected dead letters of <paramref name="queue"/> back to the queue they faulted on, each published
    /// with a publisher confirm before it is acked here: a crash in between leaves a copy in both places, never in
    /// neither (the worker's claim runs a task id once). Throws <see cref="DeadLetterReplayException"/> when a publish
    /// is refused; that message and the rest stay dead letters.
    /// </summary>
    public Task<DeadLetterOutcome> ReplayAsync(string queue, DeadLetterSelection selection, CancellationToken cancellationToken) =>
        TakeAsync(queue, selection, "replay", replay: true, cancellationToken);

    /// <summary>Removes the selected dead letters of <paramref name="queue"/> for good (acks them).</summary>
    public Task<DeadLetterOutcome> DiscardAsync(string queue, DeadLetterSelection selection, CancellationToken cancellationToken) =>
        TakeAsync(queue, selection, "discard", replay: false, cancellationToken);

    private async Task<DeadLetterOutcome> TakeAsync(string queue, DeadLetterSelection selection, string action, bool replay, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(selection);
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await using var connection = await broker.ConnectAsync(connectionName, cancellationToken).ConfigureAwait(false);
            var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
            await using (channel.ConfigureAwait(false))
            {
                var depth = await DepthAsync(channel, queue, cancellationToken).ConfigureAwait(false);
                var found = new HashSet<string>(StringComparer.Ordinal);
                var taken = 0;
                IChannel? publisher = null;
                var held = new List<ulong>();
                try
                {
                    // Only the messages there at the start: the skipped ones are held, so none is read twice, and a
                    // replayed message that faults again comes in behind them.
                    for (long seen = 0; seen < depth.Messages; seen++)
                    {
                        if (await channel.BasicGetAsync(queue, autoAck: false, cancellationToken).ConfigureAwait(false) is not { } message)
                        {
                            break;
                        }

                        var letter = Describe(queue, message);
                        if (!selection.Matches(letter))
                        {
                            held.Add(message.DeliveryTag);
                            continue;
                        }

                        found.Add(letter.MessageId);
                        if (replay)
                        {
                            publisher ??= await connection.CreateChannelAsync(
                                new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), cancellationToken).ConfigureAwait(false);
                            try
                            {
                                // Mandatory: a lane without its queue returns the message, which is an error here, not a silent drop.
                                await publisher.BasicPublishAsync(letter.Lane, string.Empty, mandatory: true, Replayed(message, queue), message.Body, CancellationToken.None).ConfigureAwait(false);
                            }
                            catch (Exception ex) when (ex is PublishException or OperationInterruptedException or AlreadyClosedException)
                            {
                                held.Add(message.DeliveryTag);
                                var why = ex is PublishException { IsReturn: true } ? $"{letter.Lane} did not route it (no queue bound)" : $"the broker refused it: {ex.Message}";
                                throw new DeadLetterReplayException($"Replaying {letter.MessageId} from {queue} failed: {why}. {taken} were replayed before it; it and the rest stay in {queue}.", taken, ex);
                            }
                        }

                        await channel.BasicAckAsync(message.DeliveryTag, multiple: false, CancellationToken.None).ConfigureAwait(false);
                        taken++;
                    }
                }
                finally
                {
                    if (publisher is not null)
                    {
                        await publisher.DisposeAsync().ConfigureAwait(false);
                    }

                    // The skipped ones go back together, in their order: the taken ones are acked already, so a multiple
                    // nack up to the last skipped tag returns exactly the skipped ones.
                    if (held.Count > 0 && channel.IsOpen)
                    {
                        await channel.BasicNackAsync(held[^1], multiple: true, requeue: true, CancellationToken.None).ConfigureAwait(false);
                    }
                }

                var notFound = selection.MessageIds is null ? [] : selection.MessageIds.Where(id => !found.Contains(id)).Order(StringComparer.Ordinal).ToList();
                return new DeadLetterOutcome(queue, action, taken, notFound);
            }
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>The queue's ready messages; a queue that does not exist (nothing ever faulted there) has none.</summary>
    private static async Task<DeadLetterQueueDepth> DepthAsync(IChannel channel, string queue, CancellationToken cancellationToken) =>
        await BrokerProbe.QueueAsync(channel, queue, cancellationToken).ConfigureAwait(false) is { } ok
            ? new DeadLetterQueueDepth(queue, true, ok.MessageCount)
            : new DeadLetterQueueDepth(queue, false, 0);

    /// <summary>
    /// The properties of the copy a replay sends: the original's (message id, content type, trace context, headers),
    /// persistent, without MassTransit's fault headers (the copy has not faulted) and with where it came from.
    /// </summary>
    private static BasicProperties Replayed(BasicGetResult message, string queue)
    {
        var properties = new BasicProperties(message.BasicProperties) { DeliveryMode = DeliveryModes.Persistent };
        var headers = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, value) in message.BasicProperties.Headers ?? new Dictionary<string, object?>())
        {
            if (!name.StartsWith("MT-Fault-", StringComparison.Ordinal) && name is not ("MT-Reason" or "x-delivery-count"))
            {
                headers[name] = value;
            }
        }

        headers["fleet-replayed-from"] = queue;
        properties.Headers = headers;
        return properties;
    }

    private static DeadLetter Describe(string queue, BasicGetResult message)
    {
        var properties = message.BasicProperties;
        var headers = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in properties.Headers ?? new Dictionary<string, object?>())
        {
            headers[name] = Capped(Text(value))!;
        }

        var body = message.Body.Span;
        var id = string.IsNullOrEmpty(properties.MessageId)
            ? "sha256:" + Convert.ToHexStringLower(SHA256.HashData(body))[..32]
            : properties.MessageId;
        var shown = Math.Min(body.Length, MaxBodyBytes);
        string shownText, encoding;
        if (Utf8.IsValid(body))
        {
            // Cut before a continuation byte, so that the shown part is whole characters.
            while (shown < body.Length && shown > 0 && (body[shown] & 0xC0) == 0x80)
            {
                shown--;
            }

            (shownText, encoding) = (Encoding.UTF8.GetString(body[..shown]), "utf-8");
        }
        else
        {
            (shownText, encoding) = (Convert.ToBase64String(body[..shown]), "base64");
        }

        return new DeadLetter(
            queue,
            LaneOf(queue),
            id,
            Capped(Header(properties, "MT-Fault-Message")),
            Header(properties, "MT-Fault-ExceptionType"),
            DateTimeOffset.TryParse(Header(properties, "MT-Fault-Timestamp"), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at) ? at : null,
            message.Redelivered,
            properties.Headers?.TryGetValue("x-delivery-count", out var count) == true && count is not null ? Convert.ToInt64(count, CultureInfo.InvariantCulture) : null,
            properties.ContentType,
            headers,
            shownText,
            encoding,
            body.Length,
            shown < body.Length);
    }

    /// <summary>A header's text cut at 2,000 characters: a parser's message may quote the whole body it refused.</summary>
    private static string? Capped(string? text) => text is { Length: > MaxHeaderChars } ? text[..MaxHeaderChars] : text;

    private static string? Header(IReadOnlyBasicProperties properties, string name) =>
        properties.Headers?.TryGetValue(name, out var value) == true && value is not null ? Text(value) : null;

    /// <summary>An AMQP header value as text: strings arrive as UTF-8 bytes; tables and arrays are written out.</summary>
    private static string Text(object? value) => value switch
    {
        null => "",
        byte[] bytes => Encoding.UTF8.GetString(bytes),
        AmqpTimestamp timestamp => DateTimeOffset.FromUnixTimeSeconds(timestamp.UnixTime).ToString("O", CultureInfo.InvariantCulture),
        IDictionary<string, object?> table => "{" + string.Join(", ", table.Select(e => $"{e.Key}: {Text(e.Value)}")) + "}",
        IEnumerable list and not string => "[" + string.Join(", ", list.Cast<object?>().Select(Text)) + "]",
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
