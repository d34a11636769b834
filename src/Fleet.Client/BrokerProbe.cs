using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Fleet.Client;

/// <summary>
/// Whether an exchange or a queue exists on the broker, by a passive declare. A passive declare of something missing
/// is answered 404 NOT_FOUND and the broker closes the channel it came on: the overloads taking a connection open a
/// channel of their own per probe; the ones taking a channel leave it closed when the answer is "missing", so the
/// caller goes on with it only when something was found. Any other refusal (access, a lost connection) is thrown.
/// </summary>
public static class BrokerProbe
{
    /// <summary>The queue's message and consumer counts, or null when it does not exist.</summary>
    public static async Task<QueueDeclareOk?> QueueAsync(IChannel channel, string queue, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(channel);
        try
        {
            return await channel.QueueDeclarePassiveAsync(queue, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationInterruptedException ex) when (IsNotFound(ex))
        {
            return null;
        }
    }

    /// <summary>True if the exchange exists.</summary>
    public static async Task<bool> ExchangeExistsAsync(IChannel channel, string exchange, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(channel);
        try
        {
            await channel.ExchangeDeclarePassiveAsync(exchange, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (OperationInterruptedException ex) when (IsNotFound(ex))
        {
            return false;
        }
    }

    /// <summary>The queue's counts, or null when it does not exist, on a channel of its own.</summary>
    public static async Task<QueueDeclareOk?> QueueAsync(IConnection connection, string queue, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        await using (channel.ConfigureAwait(false))
        {
            return await QueueAsync(channel, queue, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>True if the exchange exists, asked on a channel of its own.</summary>
    public static async Task<bool> ExchangeExistsAsync(IConnection connection, string exchange, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        await using (channel.ConfigureAwait(false))
        {
            return await ExchangeExistsAsync(channel, exchange, cancellationToken).ConfigureAwait(false);
        }
    }

    private static bool IsNotFound(OperationInterruptedException ex) => ex.ShutdownReason?.ReplyCode == Constants.NotFound;
}
