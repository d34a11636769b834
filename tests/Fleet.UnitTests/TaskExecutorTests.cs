using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Fleet.Contracts;
using Fleet.Persistence.Entities;
using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;
using Fleet.Worker;
using Fleet.Worker.FaultInjection;
using Fleet.Worker.MessagePath;
using Fleet.Worker.ProcessLane;
using Fleet.Worker.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
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
    // A grace long enough that a loaded machine's late wake-up of a cancelled handler is not taken for one that
    // ignores its token; the test of the hard stop itself shortens it.
    private readonly IOptions<WorkerOptions> _options = Options.Create(new WorkerOptions { CpuConcurrency = 1, HardStopGraceSeconds = 10 });
    private readonly WorkerMetrics _metrics;

    public TaskExecutorTests()
    {
        _lane = new CpuLane(_options);
        _metrics = new WorkerMetrics(null, _options);
    }

    public void Dispose()
    {
        _lane.Dispose();
        _metrics.Dispose();
    }

    [Fact]
    public async Task APrepareThatThrowsSomethingOtherThanAValidationError_EndsFailedWithItsTypeAndMessage_AndIsNotRetried()
    {
        // Before: the FormatException escaped the executor after the claim; the message went to _error and the row
        // stayed running for ever.
        var outcome = await ExecuteAsync(new FaultInjectionHandlers.PrepareBugHandler(), Message(FaultInjectionHandlers.PrepareBugHandler.TypeName));

        Assert.Equal((TaskState.Failed, "System.FormatException", false), (outcome.Status, outcome.ErrorType, outcome.Retryable));
        Assert.Contains("Injected parsing bug", outcome.ErrorMessage, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AHandlersOwnTimeoutException_IsARetryableFailure_NotTheHardStop()
    {
        var outcome = await ExecuteAsync(new FaultInjectionHandlers.TimeoutHandler(), Message(FaultInjectionHandlers.TimeoutHandler.TypeName));

        AssertOwnTimeout(outcome, "did not answer within the handler's own timeout");
        Assert.Equal(0, _metrics.Abandoned);
    }

    [Fact]
    public async Task ACpuHandlersOwnTimeoutException_IsARetryableFailure_AndAbandonsNoThread()
    {
        var handler = new TestHandler("cpu-own-timeout", TaskLane.Cpu, _ => throw new TimeoutException("The device did not answer in time."));

        var outcome = await ExecuteAsync(handler, Message(handler.Type));

        AssertOwnTimeout(outcome, "The device did not answer in time.");
        Assert.Equal((0L, 0), (_metrics.Abandoned, _lane.AbandonedThreads));
    }

    [Fact]
    public async Task HttpGetsOwnTimeout_IsARetryableFailure_WithItsMessage()
    {
        // A server that accepts the connection and never answers: http-get's own timeoutMs fires long before the
        // task's time limit, and http-get reports it as a TimeoutException.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        using var provider = BuiltInHandlers.CreateProvider();
        var handler = provider.GetRequiredService<TaskHandlerRegistry>().TryGet(HttpGetHandler.TypeName, out var h) ? h : throw new InvalidOperationException();
        var url = $"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}/slow";

        var outcome = await ExecuteAsync(handler, Message(HttpGetHandler.TypeName, new { url, timeoutMs = 200 }, timeoutSeconds: 30));

        AssertOwnTimeout(outcome, "did not complete within timeoutMs = 200");
    }

    [Fact]
    public async Task AHandlerIgnoringItsToken_IsStillAbandonedAtTheHardStop()
    {
        _options.Value.HardStopGraceSeconds = 1;
        using var release = new ManualResetEventSlim();
        var handler = new TestHandler("cpu-ignores-token", TaskLane.Cpu, _ =>
        {
            release.Wait();
            return default;
        });

        try
        {
            var outcome = await ExecuteAsync(handler, Message(handler.Type, timeoutSeconds: 1));

            Assert.Equal((TaskState.TimedOut, TaskExecutor.ErrorTypes.Timeout, false), (outcome.Status, outcome.ErrorType, outcome.Retryable));
            Assert.Contains("abandoned", outcome.ErrorMessage, StringComparison.Ordinal);
            Assert.Equal((1L, 1), (_metrics.Abandoned, _lane.AbandonedThreads));
        }
        finally
        {
            release.Set();
        }
    }

    [Theory]
    [InlineData(TaskLane.Cpu)]
    [InlineData(TaskLane.Io)]
    public async Task AHandlerThatStopsOnItsTimeLimitByThrowingSomethingElse_EndsTimedOut_NotAsARetryableFailure(TaskLane lane)
    {
        // Blocking on a cancellable task throws AggregateException(TaskCanceledException), not the cancellation itself.
        var handler = new TestHandler("wraps-cancellation", lane, BlockUntilCancelled);

        var outcome = await ExecuteAsync(handler, Message(handler.Type, timeoutSeconds: 1));

        Assert.Equal((TaskState.TimedOut, TaskExecutor.ErrorTypes.Timeout, false), (outcome.Status, outcome.ErrorType, outcome.Retryable));
        Assert.Equal(0L, _metrics.Abandoned);
    }

    [Fact]
    public async Task ATaskAskingForMoreThanTheWorkersCap_TimesOutAtTheCap_AndItsErrorSaysSo()
    {
        var options = Options.Create(new WorkerOptions { CpuConcurrency = 1, MaxTimeoutSeconds = 1, DefaultTimeoutSeconds = 1 });
        var handler = new TestHandler("asks-too-long", TaskLane.Io, BlockUntilCancelled);
        var registry = new TaskHandlerRegistry([handler]);
        var executor = new TaskExecutor(registry, _lane, new ProcessPool(options, registry, NullLogger<ProcessPool>.Instance), _running, _metrics, options);

        var outcome = await executor.ExecuteAsync(Guid.NewGuid(), Message(handler.Type, timeoutSeconds: 900), CancellationToken.None)
            .WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal((TaskState.TimedOut, TaskExecutor.ErrorTypes.Timeout), (outcome.Status, outcome.ErrorType));
        Assert.Equal("The task exceeded its time limit of 1 s (the worker's cap, Worker:MaxTimeoutSeconds; the task asked for 900 s).", outcome.ErrorMessage);
    }

    [Fact]
    public async Task ATaskWithinTheCap_TimesOutWithItsOwnLimitOnly()
    {
        var handler = new TestHandler("asks-one-second", TaskLane.Io, BlockUntilCancelled);

        var outcome = await ExecuteAsync(handler, Message(handler.Type, timeoutSeconds: 1));

        Assert.Equal("The task exceeded its time limit of 1 s.", outcome.ErrorMessage);
    }

    [Theory]
    [InlineData(TaskLane.Cpu)]
    [InlineData(TaskLane.Io)]
    public async Task ACancelledTaskWhoseHandlerThrowsSomethingElse_EndsCancelled_AndIsNotRetried(TaskLane lane)
    {
        var handler = new TestHandler("wraps-cancellation", lane, BlockUntilCancelled);
        var id = Guid.NewGuid();

        var execution = NewExecutor(handler).ExecuteAsync(id, Message(handler.Type, timeoutSeconds: 60), CancellationToken.None);
        Assert.True(await EventuallyAsync(() => handler.Started), "the task never ran");
        Assert.True(_running.TryCancel(id, "Cancelled by the test."));
        var outcome = await execution.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal((TaskState.Cancelled, "Cancelled by the test.", false), (outcome.Status, outcome.ErrorMessage, outcome.Retryable));
    }

    [Theory]
    [InlineData(TaskLane.Cpu)]
    [InlineData(TaskLane.Io)]
    public async Task WhenTheWorkerStops_AHandlerThatThrowsSomethingElse_HandsTheMessageBack_InsteadOfRecordingAFailure(TaskLane lane)
    {
        // Only a cancellation of 'stopping' may leave the executor: the consumer then returns the message unrecorded.
        // Before, the wrapped cancellation was recorded as a failure (and, on the last attempt, as the final state).
        var handler = new TestHandler("wraps-cancellation", lane, BlockUntilCancelled);
        using var stopping = new CancellationTokenSource();
        var id = Guid.NewGuid();

        var execution = NewExecutor(handler).ExecuteAsync(id, Message(handler.Type, timeoutSeconds: 60), stopping.Token);
        Assert.True(await EventuallyAsync(() => handler.Started), "the task never ran");
        await stopping.CancelAsync();

        var ex = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => execution.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(stopping.Token, ex.CancellationToken);
    }

    [Fact]
    public async Task WhenTheWorkerHasStopped_AHandlerThatFailsAtOnceOnItsCancelledToken_HandsTheMessageBack()
    {
        // A message taken just before the drain ended: its handler is called with a token already cancelled and
        // fails before its first await. The failure was recorded (final on the last attempt) instead of the task
        // going back to the broker for another worker.
        var handler = new TestHandler("fails-when-cancelled", TaskLane.Io, token => token.IsCancellationRequested
            ? throw new InvalidOperationException("The connection pool is shutting down.")
            : default, inline: true);
        using var stopping = new CancellationTokenSource();
        await stopping.CancelAsync();

        var ex = await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => NewExecutor(handler).ExecuteAsync(Guid.NewGuid(), Message(handler.Type), stopping.Token));
        Assert.Equal(stopping.Token, ex.CancellationToken);
    }

    [Fact]
    public async Task ACpuHandlersOwnCancellationException_KeepsItsTypeAndMessage()
    {
        // HttpClient.Timeout, say: an OperationCanceledException for a token that is not the task's. The I/O lane
        // records it as the handler threw it; the CPU lane recorded a bare "A task was canceled." instead.
        var handler = new TestHandler("cpu-foreign-cancel", TaskLane.Cpu,
            _ => throw new TaskCanceledException("The request was canceled due to the configured HttpClient.Timeout of 100 seconds elapsing."));

        var outcome = await ExecuteAsync(handler, Message(handler.Type));

        Assert.Equal((TaskState.Failed, "System.Threading.Tasks.TaskCanceledException", true), (outcome.Status, outcome.ErrorType, outcome.Retryable));
        Assert.Contains("HttpClient.Timeout", outcome.ErrorMessage, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ATaskClaimedAhead_StartsItsTimeLimitAndWallClockWhenAThreadTakesIt()
    {
        // The one lane thread is busy for 1.5 s; the task queued behind it has a 1 s limit and runs 100 ms. Its limit
        // would have fired in the queue if it started with the claim.
        using var release = new ManualResetEventSlim();
        await OccupyTheLaneThreadAsync(release);
        var handler = new TestHandler("cpu-short", TaskLane.Cpu, _ =>
        {
            Thread.Sleep(100);
            return JsonSerializer.SerializeToElement(new { ok = true });
        });

        var execution = ExecuteAsync(handler, Message(handler.Type, timeoutSeconds: 1));
        await Task.Delay(1_500);
        Assert.False(handler.Started);
        var released = DateTimeOffset.UtcNow;
        release.Set();
        var outcome = await execution;

        Assert.Equal(TaskState.Succeeded, outcome.Status);
        Assert.InRange(outcome.WallMs, 90, 1_000);
        Assert.True(outcome.StartedAt >= released, $"started {outcome.StartedAt:O}, thread free at {released:O}");
    }

    [Fact]
    public async Task ATaskClaimedAhead_ThatFails_SaysItStartedWhenAThreadTookIt_NotAtItsClaim()
    {
        using var release = new ManualResetEventSlim();
        await OccupyTheLaneThreadAsync(release);
        var handler = new TestHandler("cpu-fails", TaskLane.Cpu, _ => throw new InvalidOperationException("bad input"));

        var execution = ExecuteAsync(handler, Message(handler.Type)); // queued behind the busy thread before it returns
        var released = DateTimeOffset.UtcNow;
        release.Set();
        var outcome = await execution;

        Assert.Equal((TaskState.Failed, "System.InvalidOperationException"), (outcome.Status, outcome.ErrorType));
        Assert.True(outcome.StartedAt >= released, $"started {outcome.StartedAt:O}, thread free at {released:O}");
    }

    [Fact]
    public async Task ATaskClaimedAhead_ThatNoThreadTakesInTime_IsWithdrawnUnrun_AndACancelEndsOneWithoutRunningIt()
    {
        using var release = new ManualResetEventSlim();
        var busy = await OccupyTheLaneThreadAsync(release);
        var handler = new TestHandler("cpu-queued", TaskLane.Cpu, _ => JsonSerializer.SerializeToElement(new { ok = true }));

        try
        {
            await Assert.ThrowsAsync<LaneWaitExpiredException>(() =>
                NewExecutor(handler).ExecuteAsync(Guid.NewGuid(), Message(handler.Type), CancellationToken.None, TimeSpan.FromMilliseconds(200)));

            var taskId = Guid.NewGuid();
            var cancelled = NewExecutor(handler).ExecuteAsync(taskId, Message(handler.Type), CancellationToken.None);
            Assert.True(await EventuallyAsync(() => _running.TryCancel(taskId, "operator asked")));
            var outcome = await cancelled.WaitAsync(TimeSpan.FromSeconds(10)); // ended while the thread is still busy
            Assert.Equal((TaskState.Cancelled, TaskExecutor.ErrorTypes.Cancelled), (outcome.Status, outcome.ErrorType));
        }
        finally
        {
            release.Set();
        }

        await busy.Completion.Task;
        Assert.False(handler.Started);
        Assert.Equal(0, _lane.AbandonedThreads);
    }

    /// <summary>Runs a task on the lane's one thread until <paramref name="release"/> is set: what comes next waits, claimed ahead.</summary>
    private async Task<CpuLane.CpuRun> OccupyTheLaneThreadAsync(ManualResetEventSlim release)
    {
        var busy = _lane.Start(_ =>
        {
            release.Wait();
            return default;
        }, CancellationToken.None);
        await busy.Started.Task;
        return busy;
    }

    private static void AssertOwnTimeout(ExecutionOutcome outcome, string message)
    {
        Assert.Equal((TaskState.Failed, "System.TimeoutException", true), (outcome.Status, outcome.ErrorType, outcome.Retryable));
        Assert.Contains(message, outcome.ErrorMessage, StringComparison.Ordinal);
    }

    private static JsonElement BlockUntilCancelled(CancellationToken cancellationToken)
    {
        Task.Delay(Timeout.Infinite, cancellationToken).Wait(CancellationToken.None);
        return default;
    }

    private Task<ExecutionOutcome> ExecuteAsync(ITaskHandler handler, ProcessTask message) =>
        NewExecutor(handler).ExecuteAsync(Guid.NewGuid(), message, CancellationToken.None);

    private TaskExecutor NewExecutor(ITaskHandler handler)
    {
        var registry = new TaskHandlerRegistry([handler]);
        return new(registry, _lane, new ProcessPool(_options, registry, NullLogger<ProcessPool>.Instance), _running, _metrics, _options);
    }

    private static ProcessTask Message(string type, object? payload = null, int timeoutSeconds = 5) => new()
    {
        TaskId = Guid.NewGuid(),
        Type = type,
        Payload = JsonSerializer.SerializeToElement(payload ?? new { }),
        TimeoutSeconds = timeoutSeconds,
    };

    private static async Task<bool> EventuallyAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            await Task.Delay(10);
        }

        return true;
    }

    /// <summary>
    /// A handler made of one function; I/O-lane ones run it on the thread pool, as an async handler would, or
    /// <paramref name="inline"/>, as one that fails before its first await.
    /// </summary>
    private sealed class TestHandler(string type, TaskLane lane, Func<CancellationToken, JsonElement> run, bool inline = false) : ITaskHandler
    {
        private volatile bool _started;

        public string Type => type;

        public TaskLane Lane => lane;

        /// <summary>Whether the function has been called.</summary>
        public bool Started => _started;

        public PreparedTask Prepare(JsonElement payload) => lane == TaskLane.Cpu || inline
            ? cancellationToken => ValueTask.FromResult(Run(cancellationToken))
            : async cancellationToken => await Task.Run(() => Run(cancellationToken), CancellationToken.None).ConfigureAwait(false);

        private JsonElement Run(CancellationToken cancellationToken)
        {
            _started = true;
            return run(cancellationToken);
        }
    }
}
