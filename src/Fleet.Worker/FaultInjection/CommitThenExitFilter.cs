using Fleet.Contracts;
using Fleet.Worker.MessagePath;
using MassTransit;

namespace Fleet.Worker.FaultInjection;

/// <summary>
/// Kills the process after a <c>fault-commit-exit</c> task's final state is committed and before its message is
/// acknowledged: the window that makes at-least-once delivery redeliver a finished task. Put around the task
/// consumer only when <c>Worker:FaultInjection</c> is true, so the production path holds no such branch.
/// </summary>
public sealed class CommitThenExitFilter : IFilter<ConsumeContext<ProcessTask>>
{
    public async Task Send(ConsumeContext<ProcessTask> context, IPipe<ConsumeContext<ProcessTask>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        await next.Send(context).ConfigureAwait(false);
        if (context.Message.Type == FaultInjectionHandlers.CommitThenExitHandler.TypeName
            && context.ReceiveContext.TryGetPayload<FinalStateCommitted>(out _))
        {
            Environment.FailFast("fault-commit-exit: injected crash after the commit, before the acknowledgement");
        }
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("fault-commit-exit");
}
