using Fleet.Contracts;
using MassTransit;

namespace Fleet.Client;

/// <summary>One task message and the queue (lane) it goes to.</summary>
public readonly record struct OutgoingTask(string Queue, ProcessTask Message);

/// <summary>
/// Sends task messages to their queues. <see cref="PublishAsync"/> completes only when the broker has confirmed
/// every message (publisher confirms); it throws when any of them was not confirmed. <see cref="TaskSubmitter"/>
/// stamps <c>published_at</c> only after it returns, which is what makes the outbox relay's work well defined.
/// </summary>
public interface ITaskPublisher
{
    Task PublishAsync(IReadOnlyList<OutgoingTask> tasks, CancellationToken cancellationToken);
}

/// <summary>
/// Sends with MassTransit to <c>queue:NAME</c> (the lane's queue and its fanout exchange), each message with the
/// task id as its message id. MassTransit's RabbitMQ transport awaits the publisher confirm of every send.
/// Sends go to the lane's queue rather than being published by message type, because a type-bound publish would
/// land in every lane (see DESIGN.md, "Pitfalls seen").
/// </summary>
public sealed class MassTransitTaskPublisher(ISendEndpointProvider sendEndpoints) : ITaskPublisher
{
    public async Task PublishAsync(IReadOnlyList<OutgoingTask> tasks, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        var sends = new List<Task>(tasks.Count);
        foreach (var group in tasks.GroupBy(t => t.Queue, StringComparer.Ordinal))
        {
            var endpoint = await sendEndpoints.GetSendEndpoint(new Uri($"queue:{group.Key}")).ConfigureAwait(false);
            foreach (var task in group)
            {
                var message = task.Message;
                sends.Add(endpoint.Send(message, context => context.MessageId = message.TaskId, cancellationToken));
            }
        }

        await Task.WhenAll(sends).ConfigureAwait(false);
    }
}
