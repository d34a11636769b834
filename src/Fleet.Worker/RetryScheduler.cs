using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;

namespace Fleet.Worker;

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
/// </summary>
public sealed class RetryScheduler(IOptions<WorkerOptions> options, RabbitMqAddress broker) : IAsyncDisposable
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly WorkerOptions _options = options.Value;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly HashSet<string> _declared = new(StringComparer.Ordinal);
    private IConnection? _connection;
    private IChannel? _channel;

    /// <summary>The backoff before attempt <paramref name="nextAttempt"/>: base x 2^(n-2), capped, with +-20% jitter.</summary>
    public TimeSpan DelayBefore(int nextAttempt)
    {
        var exponential = _options.RetryBaseSeconds * Math.Pow(2, Math.Max(0, nextAttempt - 2));
        var jitter = 0.8 + (Random.Shared.NextDouble() * 0.4);
        return TimeSpan.FromSeconds(Math.Min(exponential, _options.RetryMaxSeconds) * jitter);
    }

    /// <summary>The delay queue that holds a retry of <paramref name="delay"/> bound for <paramref name="queue"/>.</summary>
    public static string RungFor(string queue, TimeSpan delay)
    {
        var seconds = 1;
        while (seconds < delay.TotalSeconds && seconds < 4096)
        {
            seconds *= 2;
        }

        return $"{queue}.retry.{seconds}s";
    }

    /// <summary>Publishes <paramref name="message"/> to come back to <paramref name="queue"/> after <paramref name="delay"/>; returns once the broker confirmed it.</summary>
    public async Task ScheduleAsync(string queue, ProcessTask message, TimeSpan delay, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        var rung = RungFor(queue, delay);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var channel = await ChannelAsync(cancellationToken).ConfigureAwait(false);
            if (!_declared.Contains(rung))
            {
                await channel.QueueDeclareAsync(rung, durable: true, exclusive: false, autoDelete: false, new Dictionary<string, object?>
                {
                    ["x-dead-letter-exchange"] = "",
                    ["x-dead-letter-routing-key"] = queue,
                }, cancellationToken: cancellationToken).ConfigureAwait(false);
                _declared.Add(rung);
            }

            var properties = new BasicProperties
            {
                ContentType = "application/json",
                DeliveryMode = DeliveryModes.Persistent,
                MessageId = message.TaskId.ToString(),
                Expiration = ((long)Math.Max(1, delay.TotalMilliseconds)).ToString(System.Globalization.CultureInfo.InvariantCulture),
            };
            var body = JsonSerializer.SerializeToUtf8Bytes(message, Json);

            // With confirmation tracking on, this completes when the broker has confirmed the message.
            await channel.BasicPublishAsync("", rung, mandatory: true, properties, body, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            // A broken channel or connection is rebuilt by the next call.
            await ResetAsync().ConfigureAwait(false);
            throw;
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<IChannel> ChannelAsync(CancellationToken cancellationToken)
    {
        if (_channel is { IsOpen: true })
        {
            return _channel;
        }

        await ResetAsync().ConfigureAwait(false);
        var factory = new ConnectionFactory
        {
            HostName = broker.Host,
            Port = broker.Port,
            VirtualHost = broker.VirtualHost,
            UserName = broker.UserName,
            Password = broker.Password,
            ClientProvidedName = $"fleet-worker-retries {_options.HostName}:{Environment.ProcessId}",
            RequestedHeartbeat = broker.Heartbeat,
            RequestedConnectionTimeout = broker.ConnectionTimeout,
            Ssl = new SslOption { Enabled = broker.UseTls, ServerName = broker.Host },
        };
        _connection = await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
        _channel = await _connection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true),
            cancellationToken).ConfigureAwait(false);
        _declared.Clear();
        return _channel;
    }

    private async Task ResetAsync()
    {
        if (_channel is not null)
        {
            await _channel.DisposeAsync().ConfigureAwait(false);
            _channel = null;
        }

        if (_connection is not null)
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
            _connection = null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await ResetAsync().ConfigureAwait(false);
        _gate.Dispose();
    }
}
