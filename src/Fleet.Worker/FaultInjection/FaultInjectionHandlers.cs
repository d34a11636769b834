using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Fleet.Tasks;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Worker.FaultInjection;

/// <summary>
/// Task types that misbehave on purpose, for the fault-injection tests and <c>make chaos</c>. Registered only when
/// <c>Worker:FaultInjection</c> is true (never by default): a payload must not be able to kill a production worker.
/// </summary>
public static class FaultInjectionHandlers
{
    public static IServiceCollection AddFaultInjectionHandlers(this IServiceCollection services)
    {
        services.AddTaskHandler<FlakyHandler>();
        services.AddTaskHandler<HangHandler>();
        services.AddTaskHandler<ExitHandler>();
        services.AddTaskHandler<CommitThenExitHandler>();
        services.AddTaskHandler<PrepareBugHandler>();
        services.AddTaskHandler<TimeoutHandler>();
        services.AddTaskHandler<SpinHandler>();
        services.AddTaskHandler<LeakHandler>();
        services.AddTaskHandler<FailFastHandler>();
        services.AddTaskHandler<PidHandler>();
        services.AddTaskHandler<ContextHandler>();
        return services;
    }

    public sealed record FlakyInput
    {
        /// <summary>Identifies the task across its executions (this process only).</summary>
        [JsonPropertyName("key")]
        public required string Key { get; init; }

        /// <summary>How many executions fail before one succeeds.</summary>
        [JsonPropertyName("failTimes")]
        public required int FailTimes { get; init; }
    }

    public sealed record HangInput
    {
        [JsonPropertyName("seconds")]
        public required int Seconds { get; init; }
    }

    public sealed record LeakInput
    {
        /// <summary>How many MB each execution allocates and keeps.</summary>
        [JsonPropertyName("megabytes")]
        public required int Megabytes { get; init; }

        /// <summary>How long it then keeps running (it honours cancellation), as a task that goes on working with its leak.</summary>
        [JsonPropertyName("seconds")]
        public double Seconds { get; init; }
    }

    public sealed record FailFastInput
    {
        [JsonPropertyName("message")]
        public string? Message { get; init; }
    }

    public sealed record PidOutput
    {
        [JsonPropertyName("pid")]
        public required int Pid { get; init; }
    }

    public sealed record ContextOutput
    {
        [JsonPropertyName("taskId")]
        public Guid? TaskId { get; init; }

        [JsonPropertyName("attempt")]
        public int? Attempt { get; init; }

        [JsonPropertyName("afterTaskId")]
        public Guid? AfterTaskId { get; init; }

        [JsonPropertyName("afterBatchId")]
        public Guid? AfterBatchId { get; init; }

        [JsonPropertyName("batchId")]
        public Guid? BatchId { get; init; }
    }

    /// <summary><c>fault-context</c>: returns what <see cref="TaskContext.Current"/> told the handler (all null without one).</summary>
    public sealed class ContextHandler : TaskHandler<Empty, ContextOutput>
    {
        public override string Type => "fault-context";

        public override TaskLane Lane => TaskLane.Io;

        protected override ValueTask<ContextOutput> ExecuteAsync(Empty input, CancellationToken cancellationToken)
        {
            var context = TaskContext.Current;
            return ValueTask.FromResult(new ContextOutput
            {
                TaskId = context?.TaskId,
                Attempt = context?.Attempt,
                AfterTaskId = context?.AfterTaskId,
                AfterBatchId = context?.AfterBatchId,
                BatchId = context?.BatchId,
            });
        }
    }

    /// <summary><c>fault-flaky</c>: throws on the first <c>failTimes</c> executions of a key in this process, then succeeds.</summary>
    public sealed class FlakyHandler : TaskHandler<FlakyInput, Empty>
    {
        private static readonly ConcurrentDictionary<string, int> Executions = new(StringComparer.Ordinal);

        public override string Type => "fault-flaky";

        public override TaskLane Lane => TaskLane.Io;

        protected override ValueTask<Empty> ExecuteAsync(FlakyInput input, CancellationToken cancellationToken)
        {
            var execution = Executions.AddOrUpdate(input.Key, 1, (_, n) => n + 1);
            return execution <= input.FailTimes
                ? throw new InvalidOperationException($"Injected failure {execution} of {input.FailTimes} for '{input.Key}'.")
                : ValueTask.FromResult(Empty.Instance);
        }
    }

    /// <summary><c>fault-hang</c>: occupies its CPU-lane thread for <c>seconds</c> and ignores cancellation.</summary>
    public sealed class HangHandler : CpuTaskHandler<HangInput, Empty>
    {
        public override string Type => "fault-hang";

        protected override Empty Execute(HangInput input, CancellationToken cancellationToken)
        {
            Thread.Sleep(TimeSpan.FromSeconds(input.Seconds));
            return Empty.Instance;
        }
    }

    /// <summary>
    /// <c>fault-commit-exit</c>: succeeds; the consumer then kills the process after the result is committed and
    /// before the message is acknowledged (the window that makes at-least-once delivery redeliver a finished task).
    /// </summary>
    public sealed class CommitThenExitHandler : TaskHandler<Empty, Empty>
    {
        public const string TypeName = "fault-commit-exit";

        public override string Type => TypeName;

        public override TaskLane Lane => TaskLane.Io;

        protected override ValueTask<Empty> ExecuteAsync(Empty input, CancellationToken cancellationToken) => ValueTask.FromResult(input);
    }

    /// <summary><c>fault-exit</c>: kills the whole worker process, as a native crash or stack overflow would.</summary>
    public sealed class ExitHandler : CpuTaskHandler<Empty, Empty>
    {
        public override string Type => "fault-exit";

        protected override Empty Execute(Empty input, CancellationToken cancellationToken)
        {
            Environment.FailFast("fault-exit: injected process crash");
            return input;
        }
    }

    /// <summary>
    /// <c>fault-prepare-bug</c>: its <c>Prepare</c> throws a <see cref="FormatException"/>, not a
    /// <see cref="TaskValidationException"/>, as a custom handler with a bug in its parsing would.
    /// </summary>
    public sealed class PrepareBugHandler : ITaskHandler
    {
        public const string TypeName = "fault-prepare-bug";

        public string Type => TypeName;

        public TaskLane Lane => TaskLane.Io;

        public PreparedTask Prepare(JsonElement payload) =>
            throw new FormatException("Injected parsing bug: the handler could not read its own payload.");
    }

    /// <summary>
    /// <c>fault-timeout</c>: throws a <see cref="TimeoutException"/> of its own at once, as <c>http-get</c> does when
    /// its server does not answer within <c>timeoutMs</c>, long before the task's time limit.
    /// </summary>
    public sealed class TimeoutHandler : TaskHandler<Empty, Empty>
    {
        public const string TypeName = "fault-timeout";

        public override string Type => TypeName;

        public override TaskLane Lane => TaskLane.Io;

        protected override ValueTask<Empty> ExecuteAsync(Empty input, CancellationToken cancellationToken) =>
            throw new TimeoutException("Injected: the downstream service did not answer within the handler's own timeout.");
    }

    /// <summary><c>fault-spin</c>: keeps its CPU-lane thread busy, burning a core, for <c>seconds</c> and ignores cancellation.</summary>
    public sealed class SpinHandler : CpuTaskHandler<HangInput, Empty>
    {
        public const string TypeName = "fault-spin";

        public override string Type => TypeName;

        protected override Empty Execute(HangInput input, CancellationToken cancellationToken)
        {
            var start = Stopwatch.GetTimestamp();
            while (Stopwatch.GetElapsedTime(start) < TimeSpan.FromSeconds(input.Seconds))
            {
                Thread.SpinWait(1000);
            }

            return Empty.Instance;
        }
    }

    /// <summary>
    /// <c>fault-leak</c>: allocates <c>megabytes</c> MB, keeps it for the rest of the process's life, then succeeds after
    /// <c>seconds</c>. Each execution leaks again, so a process that runs it keeps growing.
    /// </summary>
    public sealed class LeakHandler : CpuTaskHandler<LeakInput, Empty>
    {
        public const string TypeName = "fault-leak";

        private const int Chunk = 1024 * 1024;

        private static readonly ConcurrentQueue<byte[]> Leaked = new();

        public override string Type => TypeName;

        protected override void Validate(LeakInput input) =>
            TaskValidationException.ThrowIfOutOfRange(input.Megabytes, 1, 65_536, "megabytes");

        protected override Empty Execute(LeakInput input, CancellationToken cancellationToken)
        {
            for (var i = 0; i < input.Megabytes; i++)
            {
                // Fresh pages of a large array are mapped but not resident until written: one write per page makes the
                // leak show in RSS, which is what a memory limit watches.
                var chunk = GC.AllocateUninitializedArray<byte>(Chunk);
                for (var page = 0; page < chunk.Length; page += Environment.SystemPageSize)
                {
                    chunk[page] = 1;
                }

                Leaked.Enqueue(chunk);
            }

            if (input.Seconds > 0)
            {
                cancellationToken.WaitHandle.WaitOne(TimeSpan.FromSeconds(input.Seconds));
                cancellationToken.ThrowIfCancellationRequested();
            }

            return Empty.Instance;
        }
    }

    /// <summary>
    /// <c>fault-failfast</c>: ends its process with <see cref="Environment.FailFast(string)"/> (SIGABRT on Linux), as a
    /// native crash would; in the process lane, only its child dies.
    /// </summary>
    public sealed class FailFastHandler : CpuTaskHandler<FailFastInput, Empty>
    {
        public const string TypeName = "fault-failfast";

        public override string Type => TypeName;

        protected override Empty Execute(FailFastInput input, CancellationToken cancellationToken)
        {
            Environment.FailFast(input.Message ?? "fault-failfast: injected crash");
            return Empty.Instance;
        }
    }

    /// <summary><c>fault-pid</c>: returns the id of the process that ran it, to tell a process-lane child from its worker or the next child.</summary>
    public sealed class PidHandler : CpuTaskHandler<Empty, PidOutput>
    {
        public const string TypeName = "fault-pid";

        public override string Type => TypeName;

        protected override PidOutput Execute(Empty input, CancellationToken cancellationToken) => new() { Pid = Environment.ProcessId };
    }
}
