using System.Text;
using Fleet.Client;
using Npgsql;
using RabbitMQ.Client;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// Base of the integration tests: resets tables and queues before each test and offers the SQL checks they share.
/// </summary>
[Collection(FleetCollection.Name)]
public abstract class FleetTest(FleetFixture fleet) : IAsyncLifetime
{
    protected static readonly TimeSpan DefaultWait = TimeSpan.FromSeconds(60);

    protected FleetFixture Fleet { get; } = fleet;

    public virtual Task InitializeAsync() => Fleet.ResetAsync();

    public virtual Task DisposeAsync() => Task.CompletedTask;

    /// <summary>Polls until every task in <paramref name="ids"/> is final; fails with the counts seen when time runs out.</summary>
    protected async Task WaitForFinalAsync(IReadOnlyCollection<Guid> ids, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultWait);
        long final = 0;
        while (DateTime.UtcNow < deadline)
        {
            final = await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status IN ('succeeded','failed','timed_out','cancelled')",
                ("ids", ids.ToArray()));
            if (final == ids.Count)
            {
                return;
            }

            await Task.Delay(50);
        }

        Assert.Fail($"Only {final} of {ids.Count} tasks became final within the wait.");
    }

    protected Task<TaskInfo?> GetTaskAsync(Guid id) => Fleet.Client.GetAsync(id);

    protected async Task<T> ScalarAsync<T>(string sql, params (string Name, object Value)[] parameters)
    {
        await using var command = Fleet.DataSource.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        var result = await command.ExecuteScalarAsync();
        return (T)result!;
    }

    protected Task<List<T>> ListAsync<T>(string sql, Func<NpgsqlDataReader, T> read, params (string Name, object Value)[] parameters) =>
        Fleet.DataSource.ListAsync(sql, read, parameters);

    /// <summary>Polls <paramref name="condition"/> until it holds or <paramref name="timeout"/> passes.</summary>
    protected static Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan? timeout = null) =>
        Sql.EventuallyAsync(condition, timeout ?? DefaultWait, TimeSpan.FromMilliseconds(50));

    /// <summary>Runs the built <c>fleet</c> command (fleet.dll beside this test assembly) against the test database.</summary>
    private protected Task<ProcessTools.CommandResult> FleetCliAsync(params string[] arguments) =>
        ProcessTools.RunAsync(
            "dotnet",
            [Path.Combine(AppContext.BaseDirectory, "fleet.dll"), .. arguments],
            TimeSpan.FromMinutes(2),
            new Dictionary<string, string> { ["ConnectionStrings__fleetdb"] = Fleet.PostgresConnectionString });

    /// <summary>Publishes a raw body as any AMQP client would (persistent, JSON content type, publisher confirms).</summary>
    protected async Task PublishRawAsync(string exchange, string routingKey, byte[] body, string? messageId = null)
    {
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var properties = new BasicProperties { ContentType = "application/json", DeliveryMode = DeliveryModes.Persistent, MessageId = messageId };
        await channel.BasicPublishAsync(exchange, routingKey, mandatory: true, properties, body);
    }

    protected Task PublishRawAsync(string exchange, string routingKey, string body, string? messageId = null) =>
        PublishRawAsync(exchange, routingKey, Encoding.UTF8.GetBytes(body), messageId);

    /// <summary>
    /// Publishes many raw bodies in order, each to its lane's exchange, over one channel with publisher confirms: the
    /// messages of one exchange reach its queue in the order given, and all are confirmed when this returns.
    /// </summary>
    protected async Task PublishRawManyAsync(IEnumerable<RawMessage> messages)
    {
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var pending = new List<Task>();
        foreach (var message in messages)
        {
            var properties = new BasicProperties { ContentType = "application/json", DeliveryMode = DeliveryModes.Persistent, MessageId = message.MessageId };
            pending.Add(channel.BasicPublishAsync(message.Exchange, "", mandatory: true, properties, message.Body).AsTask());
            if (pending.Count == 256)
            {
                await Task.WhenAll(pending);
                pending.Clear();
            }
        }

        await Task.WhenAll(pending);
    }

    /// <summary>The task id a worker gives a plain JSON message without <c>taskId</c> (docs/architecture.md, "Task ids").</summary>
    protected static Guid TaskIdForMessageId(string messageId)
    {
        if (Guid.TryParse(messageId, out var id))
        {
            return id;
        }

        var hash = System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes("fleet:message_id:" + messageId));
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash.AsSpan(0, 16), bigEndian: true);
    }

    /// <summary>Messages ready in <paramref name="queue"/>; 0 when it does not exist.</summary>
    /// <summary>How many consumers <paramref name="queue"/> has (0 when it does not exist).</summary>
    /// <summary>
    /// Puts a message into an error queue with the fault headers MassTransit gives the messages it moves there
    /// (through <paramref name="amqpUri"/>, else this run's broker), confirmed by the broker.
    /// </summary>
    protected async Task DeadLetterAsync(string queue, string messageId, string body, string exceptionType, string reason, string? amqpUri = null)
    {
        await using var connection = amqpUri is null ? await Fleet.OpenRabbitAsync() : await new ConnectionFactory { Uri = new Uri(amqpUri) }.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var properties = new BasicProperties
        {
            ContentType = "application/json",
            DeliveryMode = DeliveryModes.Persistent,
            MessageId = messageId,
            Headers = new Dictionary<string, object?>
            {
                ["MT-Reason"] = "fault",
                ["MT-Fault-ExceptionType"] = exceptionType,
                ["MT-Fault-Message"] = reason,
                ["MT-Fault-Timestamp"] = DateTime.UtcNow.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
                ["MT-Fault-ConsumerType"] = "Fleet.Worker.MessagePath.ProcessTaskConsumer",
            },
        };
        await channel.BasicPublishAsync("", queue, mandatory: true, properties, Encoding.UTF8.GetBytes(body));
    }

    protected async Task<uint> QueueConsumerCountAsync(string queue)
    {
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync();
        try
        {
            return (await channel.QueueDeclarePassiveAsync(queue)).ConsumerCount;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return 0;
        }
    }

    protected async Task<uint> QueueMessageCountAsync(string queue)
    {
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync();
        try
        {
            return (await channel.QueueDeclarePassiveAsync(queue)).MessageCount;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return 0;
        }
    }
}

/// <summary>One raw AMQP message for <see cref="FleetTest.PublishRawManyAsync"/>: a body for a lane's exchange.</summary>
public sealed record RawMessage(string Exchange, byte[] Body, string? MessageId = null);
