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

    protected async Task<List<T>> ListAsync<T>(string sql, Func<NpgsqlDataReader, T> read, params (string Name, object Value)[] parameters)
    {
        await using var command = Fleet.DataSource.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<T>();
        while (await reader.ReadAsync())
        {
            rows.Add(read(reader));
        }

        return rows;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds or <paramref name="timeout"/> passes.</summary>
    protected static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultWait);
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return true;
            }

            await Task.Delay(50);
        }

        return await condition();
    }

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

    /// <summary>Messages ready in <paramref name="queue"/>; 0 when it does not exist.</summary>
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
