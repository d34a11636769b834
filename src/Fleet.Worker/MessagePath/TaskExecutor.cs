using System.Diagnostics;
using System.Text.Json;
using Fleet.Contracts;
using Fleet.Persistence.Entities;
using Fleet.Tasks;
using Fleet.Worker.ProcessLane;
using Fleet.Worker.Telemetry;
using Microsoft.Extensions.Options;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// What one execution ended with, ready to be committed. <see cref="Retryable"/> marks failures that another
/// attempt may cure (a handler's exception); validation errors, refusals (<see cref="TaskRefusedException"/>), unknown types, exceptions of <c>Prepare</c>, time
/// limits and cancels are final. <see cref="StartedAt"/> is when a CPU-lane thread took the task (a task claimed ahead
/// waits for one after its claim); null when the execution began with the claim.
/// </summary>
public sealed record ExecutionOutcome(string Status, string? ResultJson, string? ErrorType, string? ErrorMessage, double WallMs, double? CpuMs, bool Retryable = false, DateTimeOffset? StartedAt = null);

/// <summary>
/// A task claimed ahead found no CPU-lane thread within what the broker's <c>consumer_timeout</c> leaves
/// (<see cref="WorkerOptions.LookaheadWaitLimit"/>); it never started, and goes back to its queue.
/// </summary>
public sealed class LaneWaitExpiredException : Exception
{
    public LaneWaitExpiredException(string message)
        : base(message)
    {
    }

    public LaneWaitExpiredException()
    {
    }

    public LaneWaitExpiredException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// Runs one task: finds its handler, validates the payload, runs it in its lane under its time limit, and turns
/// every ending (output, validation error, failure, time limit, cancel) into an <see cref="ExecutionOutcome"/>.
/// Never throws for a task's own problems; only a cancellation of <c>stopping</c> (worker shutdown) escapes, so
/// that the message is handed back rather than recorded, and <see cref="LaneWaitExpiredException"/> for a CPU task
/// that no lane thread took within <c>startWithin</c>.
/// </summary>
public sealed class TaskExecutor(
    TaskHandlerRegistry registry,
    CpuLane cpuLane,
    ProcessPool processes,
    RunningTasks running,
    WorkerMetrics metrics,
    IOptions<WorkerOptions> options,
    TaskProgress? progress = null)
{
    /// <summary>Error types recorded in <c>error_type</c> for failures that are not a handler's exception.</summary>
    public static class ErrorTypes
    {
        public const string Validation = "ValidationError";
        public const string UnknownType = "UnknownTaskType";
        public const string Timeout = "Timeout";
        public const string Cancelled = "Cancelled";
        public const string CrashLoop = "CrashLoop";
    }

    private readonly WorkerOptions _options = options.Value;

    /// <param name="attempt">The execution's number (<c>fleet.task_attempts.attempt</c>), which the handler sees in its <see cref="TaskContext"/>.</param>
    public async Task<ExecutionOutcome> ExecuteAsync(Guid taskId, ProcessTask message, CancellationToken stopping, TimeSpan? startWithin = null, int attempt = 1)
    {
        var clock = Stopwatch.StartNew();
        if (string.IsNullOrWhiteSpace(message.Type))
        {
            return Failed(ErrorTypes.Validation, "The task message has no 'type'.", clock);
        }

        if (!registry.TryGet(message.Type, out var handler))
        {
            return Failed(ErrorTypes.UnknownType,
                $"No handler for task type '{message.Type}' in this worker. Known types: {string.Join(", ", registry.Types)}.", clock);
        }

        PreparedTask prepared;
        bool cpu;
        ChildTiming? child = null;
        var context = new TaskContext(taskId, message.Type, attempt, message.BatchId, message.AfterTaskId, message.AfterBatchId, progress);
        try
        {
            prepared = handler.Prepare(message.Payload);
            cpu = handler.Lane == TaskLane.Cpu;

            // Validated here, run in a child: a payload the handler refuses costs no child. On the CPU queue the task
            // still takes a lane thread, which waits for the child while the child has the core. The child sets the
            // context there and sends its reports back; here the context is only the task's identity.
            if (processes.Runs(message.Type))
            {
                child = new ChildTiming();
                prepared = processes.Prepare(context, message.Payload, child);
            }

            prepared = WithContext(prepared, context);
        }
        catch (TaskValidationException ex)
        {
            return Failed(ErrorTypes.Validation, ex.Message, clock);
        }
        catch (Exception ex)
        {
            // A bug in the handler's own parsing or validation. Prepare reads nothing but the payload, so another
            // attempt would fail the same way: final at once, not retried.
            return Failed(ErrorType(ex), ex.Message, clock);
        }

        // The task's own limit, else its type's default, else the worker's; never above the worker's cap, and the
        // timeout error says when the cap, not the task, set the limit.
        var seconds = message.TimeoutSeconds is > 0 ? message.TimeoutSeconds.Value
            : _options.TypeTimeoutSeconds.TryGetValue(message.Type, out var typeDefault) ? typeDefault
            : _options.DefaultTimeoutSeconds;
        var timeout = TimeSpan.FromSeconds(Math.Min(seconds, _options.MaxTimeoutSeconds));
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        using var tracking = running.Track(taskId, limit);
        // A child is killed at its limit, so for a process-lane task the executor waits for the kill instead.
        var hardStop = timeout + TimeSpan.FromSeconds(child is null ? _options.HardStopGraceSeconds : _options.ProcessOverrunSeconds);
        CpuLane.CpuRun? cpuRun = null;
        Task? handlerTask = null;
        ExecutionOutcome outcome;
        try
        {
            outcome = await RunInLaneAsync().ConfigureAwait(false);
        }
        finally
        {
            // The execution is over: a report still pending must not be written after (or race) the final write. A
            // handler abandoned at its limit that reports later only adds an entry the next flush takes and, the row
            // being final, writes nowhere.
            progress?.Forget(taskId);
        }

        // A CPU task claimed ahead began when a thread took it, however it ended.
        return cpuRun?.Started.Task is { IsCompletedSuccessfully: true } started ? outcome with { StartedAt = started.Result } : outcome;

        async Task<ExecutionOutcome> RunInLaneAsync()
        {
            try
            {
                if (cpu)
                {
                    cpuRun = cpuLane.Start(prepared, limit.Token);
                    handlerTask = cpuRun.Completion.Task;

                    // Claimed ahead, the task may wait for a thread (a cancel reaches it there); its limit starts when one takes it.
                    await WaitForThreadAsync(cpuRun, startWithin ?? Timeout.InfiniteTimeSpan, limit.Token).ConfigureAwait(false);
                    limit.CancelAfter(timeout);
                    clock.Restart();
                    using var busyCpu = metrics.Running(cpu: true);
                    var result = await cpuRun.Completion.Task.WaitAsync(hardStop, stopping).ConfigureAwait(false);
                    return new ExecutionOutcome(TaskState.Succeeded, ToJsonObjectText(result.Output), null, null, result.WallMs, child is null ? result.CpuMs : child.CpuMs);
                }

                limit.CancelAfter(timeout);
                using var busy = metrics.Running(cpu: false);
                var run = prepared(limit.Token).AsTask();
                handlerTask = run;
                var output = await run.WaitAsync(hardStop, stopping).ConfigureAwait(false);
                return new ExecutionOutcome(TaskState.Succeeded, ToJsonObjectText(output), null, null, clock.Elapsed.TotalMilliseconds, child?.CpuMs);
            }
            catch (LaneWaitExpiredException)
            {
                throw;
            }
            catch (Exception ex) when (stopping.IsCancellationRequested && ex is not OperationCanceledException)
            {
                // The worker is stopping: however the handler ended (an exception wrapping its cancellation, say), its
                // message goes back to the broker unrecorded, which only a cancellation of 'stopping' achieves.
                throw new OperationCanceledException("The worker is stopping; the task is handed back unrecorded.", ex, stopping);
            }
            catch (TimeoutException ex) when (!stopping.IsCancellationRequested && IsHardStop(handlerTask, ex))
            {
                // The handler ignored its token: stop waiting for it and give its CPU-lane thread's place to a new one.
                cpuRun?.Abandon();
                metrics.AddAbandoned();
                return new ExecutionOutcome(TaskState.TimedOut, null, ErrorTypes.Timeout,
                    $"The task exceeded its time limit of {LimitText(timeout, seconds)} and ignored cancellation for {_options.HardStopGraceSeconds} s more; it was abandoned.",
                    clock.Elapsed.TotalMilliseconds, null);
            }
            catch (ProcessLaneException ex) when (!stopping.IsCancellationRequested)
            {
                if (ex.KilledAtLimit)
                {
                    // Its child ignored the cancel and was killed: a time limit or a cancel, as for any task.
                    var reason = running.CancelReason(taskId);
                    return reason is not null
                        ? new ExecutionOutcome(TaskState.Cancelled, null, ErrorTypes.Cancelled, $"{reason}; {ex.Message}", clock.Elapsed.TotalMilliseconds, null)
                        : new ExecutionOutcome(TaskState.TimedOut, null, ErrorTypes.Timeout,
                            $"The task exceeded its time limit of {LimitText(timeout, seconds)}; {ex.Message}", clock.Elapsed.TotalMilliseconds, null);
                }

                return Failed(ex.ErrorType, ex.Message, clock, ex.Retryable);
            }
            catch (Exception) when (limit.IsCancellationRequested && !stopping.IsCancellationRequested)
            {
                // The time limit or a cancel fired, and the handler stopped. However it did (its OperationCanceledException,
                // or something wrapping one, such as the AggregateException of a blocking Wait), that is the ending: neither
                // is a failure to retry.
                var reason = running.CancelReason(taskId);
                return reason is not null
                    ? new ExecutionOutcome(TaskState.Cancelled, null, ErrorTypes.Cancelled, reason, clock.Elapsed.TotalMilliseconds, null)
                    : new ExecutionOutcome(TaskState.TimedOut, null, ErrorTypes.Timeout,
                        $"The task exceeded its time limit of {LimitText(timeout, seconds)}.", clock.Elapsed.TotalMilliseconds, null);
            }
            catch (TaskValidationException ex)
            {
                return Failed(ErrorTypes.Validation, ex.Message, clock);
            }
            catch (TaskRefusedException ex)
            {
                return Failed(ex.ErrorType, ex.Message, clock);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !stopping.IsCancellationRequested)
            {
                // Any other exception of the handler, a TimeoutException of its own included (http-get's timeoutMs).
                return Failed(ErrorType(ex), ex.Message, clock, retryable: true);
            }
        }
    }

    /// <summary>
    /// <paramref name="task"/> with <paramref name="context"/> as <see cref="TaskContext.Current"/> while it runs. Set
    /// where the handler is called, on whichever thread that is: a CPU-lane thread takes the task from a queue, and the
    /// ambient context (an AsyncLocal) does not flow there by itself. An async handler keeps it across its awaits,
    /// since its continuations run in the execution context captured at its call.
    /// </summary>
    private static PreparedTask WithContext(PreparedTask task, TaskContext context) =>
        cancellationToken =>
        {
            using var scope = TaskContext.Enter(context);
            return task(cancellationToken);
        };

    /// <summary>
    /// Waits until a lane thread takes <paramref name="run"/>. At <paramref name="within"/>, or when
    /// <paramref name="token"/> (a cancel, the worker stopping) fires first, the run is withdrawn so that it never
    /// starts, unless a thread took it meanwhile.
    /// </summary>
    private static async Task WaitForThreadAsync(CpuLane.CpuRun run, TimeSpan within, CancellationToken token)
    {
        if (within != Timeout.InfiniteTimeSpan && within < TimeSpan.Zero)
        {
            within = TimeSpan.Zero;
        }

        try
        {
            await run.Started.Task.WaitAsync(within, token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            if (!run.TryWithdraw())
            {
                return; // a thread took it meanwhile: it runs
            }

            if (ex is TimeoutException)
            {
                throw new LaneWaitExpiredException($"No CPU-lane thread took the task within {within.TotalSeconds:0} s.");
            }

            throw;
        }
    }

    /// <summary>
    /// Whether <paramref name="ex"/> is the hard stop: <c>WaitAsync</c>'s own TimeoutException, thrown while the
    /// handler still ran. A TimeoutException the handler threw itself is the exception its task ended with.
    /// </summary>
    private static bool IsHardStop(Task? handlerTask, TimeoutException ex) =>
        handlerTask is not null && !(handlerTask.IsFaulted && ReferenceEquals(handlerTask.Exception?.InnerException, ex));

    /// <summary>The time limit as a timeout error states it, saying when the worker's cap cut the task's own.</summary>
    private static string LimitText(TimeSpan timeout, int asked) =>
        asked > timeout.TotalSeconds
            ? $"{timeout.TotalSeconds:0} s (the worker's cap, Worker:MaxTimeoutSeconds; the task asked for {asked} s)"
            : $"{timeout.TotalSeconds:0} s";

    private static string ErrorType(Exception ex) => ex.GetType().FullName ?? ex.GetType().Name;

    private static ExecutionOutcome Failed(string errorType, string message, Stopwatch clock, bool retryable = false) =>
        new(TaskState.Failed, null, errorType, message, clock.Elapsed.TotalMilliseconds, null, retryable);

    /// <summary>Results are stored as JSON objects; a handler returning a bare value is wrapped as <c>{"value": ...}</c>.</summary>
    private static string ToJsonObjectText(JsonElement output) =>
        output.ValueKind == JsonValueKind.Object ? output.GetRawText() : $"{{\"value\":{output.GetRawText()}}}";
}
