using System.Collections.Concurrent;
using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.Worker.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// Retries with exponential backoff on plain RabbitMQ 3.10, which has no delayed-message plugin in Debian's build.
/// Each lane queue gets a ladder of durable delay queues, <c>{queue}.retry.{n}s</c> for n = 1, 2, 4 ... with
/// <c>x-dead-letter-exchange = ""</c> and <c>x-dead-letter-routing-key = {queue}</c>. A retry is published, as the
/// plain JSON task body, to the smallest rung at least as long as its delay, with that delay as the message's own
/// expiration: when it expires RabbitMQ dead-letters it back into the lane queue, where any worker takes it.
/// Nothing holds a worker slot while the retry waits, and it survives worker restarts (durable queue, persistent
/// message). RabbitMQ expires only the head of a queue, so a message can wait behind a longer one on its rung:
/// the real delay is at most the rung's length, i.e. under twice the requested one.
/// MassTransit has no way to declare these arguments or to publish with a per-message expiration to the default
/// exchange, hence RabbitMQ.Client directly for this one job.
/// Retries publish concurrently on one channel: RabbitMQ.Client 7 serializes the frames of concurrent publishes
/// and numbers them under its own lock, then lets each wait for its own confirm, so one confirm that never comes
/// holds back no other retry. Only opening the connection and declaring a delay queue take this class's lock.
/// </summary>
public sealed partial class RetryScheduler : IAsyncDisposable
{
    /// <summary>The rungs' lengths in seconds: 1, 2, 4 ... 4096 (over an hour, beyond the longest backoff allowed).</summary>
    public static IReadOnlyList<int> RungSeconds => QueueTopology.RetryRungSeconds;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly Func<CancellationToken, Task<(IConnection? Connection, IChannel Channel)>> _open;
    private readonly ILogger _logger;
    private readonly BrokerQueueType _queueType;
    private readonly WorkerMetrics _metrics;
    private readonly double _baseSeconds;
    private readonly double _maxSeconds;
    private readonly TimeSpan _publishTimeout;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile Link? _link;

    public RetryScheduler(IOptions<WorkerOptions> options, RabbitMqAddress broker, ILogger<RetryScheduler> logger, WorkerMetrics metrics)
        : this(options, OpenWith(broker, options), logger, metrics, broker.QueueType)
    {
    }

    /// <param name="open">Opens the connection (null when there is none to close) and a channel with publisher confirmation tracking.</param>
    /// <param name="queueType">The type the rungs are declared with: that of the lanes (<see cref="QueueTopology"/>).</param>
    internal RetryScheduler(
        IOptions<WorkerOptions> options,
        Func<CancellationToken, Task<(IConnection? Connection, IChannel Channel)>> open,
        ILogger logger,
        WorkerMetrics metrics,
        BrokerQueueType queueType = QueueTopology.DefaultQueueType)
    {
        ArgumentNullException.ThrowIfNull(options);
        _open = open;
        _queueType = queueType;
        _logger = logger;
        _metrics = metrics;
        _baseSeconds = options.Value.RetryBaseSeconds;
        _maxSeconds = options.Value.RetryMaxSeconds;
        _publishTimeout = TimeSpan.FromSeconds(options.Value.RetryPublishTimeoutSeconds);
    }

    /// <summary>The delay queues of <paramref name="queue"/>, shortest first: <c>{queue}.retry.1s</c> ... <c>{queue}.retry.4096s</c>.</summary>
    public static IReadOnlyList<string> QueueNames(string queue) => QueueTopology.RetryRungNames(queue);

    /// <summary>The backoff before attempt <paramref name="nextAttempt"/>: base x 2^(n-2), capped, with +-20% jitter.</summary>
    public TimeSpan DelayBefore(int nextAttempt)
    {
        var exponential = _baseSeconds * Math.Pow(2, Math.Max(0, nextAttempt - 2));
        var jitter = 0.8 + (Random.Shared.NextDouble() * 0.4);
        return TimeSpan.FromSeconds(Math.Min(exponential, _maxSeconds) * jitter);
    }

    /// <summary>The delay queue that holds a retry of <paramref name="delay"/> bound for <paramref name="queue"/>.</summary>
    public static string RungFor(string queue, TimeSpan delay)
    {
        var seconds = RungSeconds.FirstOrDefault(s => s >= delay.TotalSeconds, RungSeconds[^1]);
        return QueueTopology.RetryRungName(queue, seconds);
    }

    /// <summary>
    /// Publishes <paramref name="message"/> to come back to <paramref name="queue"/> after <paramref name="delay"/>.
    /// Returns true once the broker confirmed it; false, logged and counted, when that did not happen within
    /// <c>Worker:RetryPublishTimeoutSeconds</c> (broker unreachable, delay queue refused, message returned or
    /// nacked, no confirm). Throws only when <paramref name="cancellationToken"/> (the worker stopping) is cancelled.
    /// </summary>
    public async Task<bool> ScheduleAsync(string queue, ProcessTask message, TimeSpan delay, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        var rung = RungFor(queue, delay);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(_publishTimeout);
        Link? link = null;
        try
        {
            link = await LinkForAsync(queue, rung, deadline.Token).ConfigureAwait(false);
            var properties = new BasicProperties
            {
                ContentType = "application/json",
                DeliveryMode = DeliveryModes.Persistent,
                MessageId = message.TaskId.ToString(),
                Expiration = ((long)Math.Max(1, delay.TotalMilliseconds)).ToString(System.Globalization.CultureInfo.InvariantCulture),
            };
            var body = JsonSerializer.SerializeToUtf8Bytes(message, Json);

            // With confirmation tracking on, this completes when the broker has confirmed the message.
            await link.Channel.BasicPublishAsync("", rung, mandatory: true, properties, body, deadline.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // Whatever went wrong, the task is left queued; nothing may fault the message.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            var timedOut = deadline.IsCancellationRequested;
            if (!timedOut)
            {
                // Returned as unroutable (the delay queue was deleted), say: declare it again next time.
                link?.Declared.TryRemove(rung, out _);
            }

            _metrics.AddRetryPublishFailure(queue);
            LogNotScheduled(message.TaskId, rung, timedOut ? $"not confirmed within {_publishTimeout.TotalSeconds:0} s (Worker:RetryPublishTimeoutSeconds)" : $"{ex.GetType().Name}: {ex.Message}", ex);
            return false;
        }
    }

    /// <summary>The open link with <paramref name="rung"/> declared; lock-free when both are there already.</summary>
    private async Task<Link> LinkForAsync(string queue, string rung, CancellationToken cancellationToken)
    {
        var link = _link;
        if (link is not null && link.Channel.IsOpen && link.Declared.ContainsKey(rung))
        {
            return link;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            link = _link;
            if (link is null || !link.Channel.IsOpen)
            {
                _link = null;
                Forget(link);
                var (connection, channel) = await _open(cancellationToken).ConfigureAwait(false);
                link = _link = new Link(connection, channel);
            }

            if (!link.Declared.ContainsKey(rung))
            {
                try
                {
                    await link.Channel.QueueDeclareAsync(rung, durable: true, exclusive: false, autoDelete: false,
                        QueueTopology.RetryRungArguments(_queueType, queue), cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    // A refused declare closes the channel, and one given up mid-call leaves its reply unread: the
                    // next retry starts on a new connection.
                    _link = null;
                    Forget(link);
                    throw;
                }

                link.Declared[rung] = true;
            }

            return link;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Closes a link no longer used, in the background: its close may wait for a broker that does not answer.</summary>
    private void Forget(Link? link)
    {
        if (link is not null)
        {
            _ = Task.Run(link.CloseQuietlyAsync, CancellationToken.None);
        }
    }

    private static Func<CancellationToken, Task<(IConnection? Connection, IChannel Channel)>> OpenWith(RabbitMqAddress broker, IOptions<WorkerOptions> options)
    {
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentNullException.ThrowIfNull(options);
        var name = $"fleet-worker-retries {options.Value.HostName}:{Environment.ProcessId}";
        return async cancellationToken =>
        {
            var connection = await broker.ConnectAsync(name, cancellationToken).ConfigureAwait(false);
            try
            {
                var channel = await connection.CreateChannelAsync(
                    new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true),
                    cancellationToken).ConfigureAwait(false);
                return (connection, channel);
            }
            catch
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        };
    }

    public async ValueTask DisposeAsync()
    {
        var link = _link;
        _link = null;
        if (link is not null)
        {
            await link.CloseQuietlyAsync().ConfigureAwait(false);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "The retry of task {TaskId} was not scheduled on {Rung}: {Reason}. Its message is acknowledged and the task stays queued, for the reconciler to publish again")]
    private partial void LogNotScheduled(Guid taskId, string rung, string reason, Exception exception);

    /// <summary>A connection, its confirming channel, and the delay queues declared on it.</summary>
    private sealed class Link(IConnection? connection, IChannel channel)
    {
        public IChannel Channel { get; } = channel;

        public ConcurrentDictionary<string, bool> Declared { get; } = new(StringComparer.Ordinal);

        public async Task CloseQuietlyAsync()
        {
            try
            {
                await Channel.DisposeAsync().ConfigureAwait(false);
                if (connection is not null)
                {
                    await connection.DisposeAsync().ConfigureAwait(false);
                }
            }
#pragma warning disable CA1031 // Closing what is already broken: there is nothing to do about a failure.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }
    }
}
