using System.Text.Json;
using Fleet.Contracts;
using Fleet.Persistence.Entities;
using Fleet.Tasks;
using Fleet.Worker;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>
/// Every ending of a handler becomes exactly one outcome, and the right one: the executor run without a worker
/// around it (no broker, no database), with handlers that misbehave on purpose.
/// </summary>
public sealed class TaskExecutorTests : IDisposable
{
    private readonly CpuLane _lane;
    private readonly RunningTasks _running = new();
    private readonly WorkerCounters _counters = new();
    private readonly IOptions<WorkerOptions> _options = Options.Create(new WorkerOptions { CpuConcurrency = 1, HardStopGraceSeconds = 1 });

    public TaskExecutorTests() => _lane = new CpuLane(_options);

    public void Dispose() => _lane.Dispose();

    [Fact]
    public async Task APrepareThatThrowsSomethingOtherThanAValidationError_EndsFailedWithItsTypeAndMessage_AndIsNotRetried()
    {
        // Before: the FormatException escaped the executor after the claim; the message went to _error and the row
        // stayed running for ever.
        var outcome = await ExecuteAsync(new FaultInjectionHandlers.PrepareBugHandler(), Message(FaultInjectionHandlers.PrepareBugHandler.TypeName));

        Assert.Equal((TaskState.Failed, "System.FormatException", false), (outcome.Status, outcome.ErrorType, outcome.Retryable));
        Assert.Contains("Injected parsing bug", outcome.ErrorMessage, StringComparison.Ordinal);
    }

    private Task<ExecutionOutcome> ExecuteAsync(ITaskHandler handler, ProcessTask message) =>
        NewExecutor(handler).ExecuteAsync(Guid.NewGuid(), message, CancellationToken.None);

    private TaskExecutor NewExecutor(ITaskHandler handler) =>
        new(new TaskHandlerRegistry([handler]), _lane, _running, _counters, _options);

    private static ProcessTask Message(string type, object? payload = null, int timeoutSeconds = 5) => new()
    {
        TaskId = Guid.NewGuid(),
        Type = type,
        Payload = JsonSerializer.SerializeToElement(payload ?? new { }),
        TimeoutSeconds = timeoutSeconds,
    };
}
