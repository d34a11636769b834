using Fleet.Contracts;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// Receives the <see cref="CancelTask"/> broadcast (every worker has its own temporary queue bound to the
/// <c>fleet-control</c> fanout) and fires the token of the task if it runs here; the task then ends <c>cancelled</c>.
/// </summary>
public sealed partial class CancelTaskConsumer(RunningTasks running, ILogger<CancelTaskConsumer> logger) : IConsumer<CancelTask>
{
    public Task Consume(ConsumeContext<CancelTask> context)
    {
        if (running.TryCancel(context.Message.TaskId, context.Message.Reason ?? "Cancelled by request."))
        {
            LogCancelled(context.Message.TaskId);
        }

        return Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Task {TaskId} cancelled by request")]
    private partial void LogCancelled(Guid taskId);
}
