using System.Text.Json;
using Fleet.Contracts;
using Fleet.Persistence.Entities;
using Fleet.Tasks;
using Fleet.Worker;
using Fleet.Worker.MessagePath;
using Fleet.Worker.ProcessLane;
using Fleet.Worker.Telemetry;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>
/// Progress from a handler: the worker's sink keeps only each task's latest report, clamped and storable, and forgets
/// a task whose execution ended; the executor gives every handler its <see cref="TaskContext"/> on the thread that
/// runs it, in the CPU lane and the I/O lane, and takes it away after.
/// </summary>
public sealed class TaskProgressTests : IDisposable
{
    private readonly IOptions<WorkerOptions> _options = Options.Create(new WorkerOptions { CpuConcurrency = 1, HardStopGraceSeconds = 10 });
    private readonly CpuLane _lane;
    private readonly WorkerMetrics _metrics;

    public TaskProgressTests()
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
    public void ManyReports_KeepOnlyTheLatestPerTask_ClampedToZeroToOne_AndNaNIsIgnored()
    {
        var sink = new TaskProgress();
        var a = Guid.NewGuid();
        var b = Guid.NewGuid();
        for (var i = 0; i <= 10_000; i++)
        {
            sink.Report(a, i / 10_000.0, $"step {i}");
        }

        sink.Report(b, 7, "past the end");
        sink.Report(b, double.NaN, "ignored");

        var pending = sink.TakePending().ToDictionary(p => p.TaskId, p => p.Report);
        Assert.Equal(2, pending.Count);
        Assert.Equal((1.0, "step 10000"), (pending[a].Fraction, pending[a].Note));
        Assert.Equal((1.0, "past the end"), (pending[b].Fraction, pending[b].Note));

        sink.Report(a, -0.5, null);
        sink.Report(b, double.NegativeInfinity, null);
        Assert.All(sink.TakePending(), p => Assert.Equal(0.0, p.Report.Fraction));

        // Taken is gone: the next flush writes nothing until a handler reports again.
        Assert.Empty(sink.TakePending());
    }

    [Fact]
    public void ATaskThatEnded_IsForgotten_AndAReportAFlushCouldNotWrite_ComesBackUnlessANewerOneArrived()
    {
        var sink = new TaskProgress();
        var ended = Guid.NewGuid();
        var running = Guid.NewGuid();
        sink.Report(ended, 0.5, null);
        sink.Report(running, 0.2, "old");
        sink.Forget(ended);

        var taken = sink.TakePending();
        Assert.Equal([running], taken.Select(t => t.TaskId));

        sink.Report(running, 0.3, "newer");
        sink.Restore(taken);
        Assert.Equal("newer", Assert.Single(sink.TakePending()).Report.Note);
    }

    [Fact]
    public void ANote_IsStoredAsOneLine_WithoutNul_CutTo200Characters()
    {
        var sink = new TaskProgress();
        var id = Guid.NewGuid();
        sink.Report(id, 0.1, "line one\nline\ttwo\0\u001b[31m");
        Assert.Equal("line one line two  [31m", Assert.Single(sink.TakePending()).Report.Note);

        sink.Report(id, 0.1, new string('x', 5_000) + "\uD800");
        var note = Assert.Single(sink.TakePending()).Report.Note!;
        Assert.Equal(TaskProgress.MaxNoteLength, note.Length);
        Assert.EndsWith("[cut: 5001 characters in all]", note, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(TaskLane.Cpu)]
    [InlineData(TaskLane.Io)]
    public async Task EveryLane_RunsTheHandlerWithItsTaskContext_WhoseReportsReachTheSink_AndTakesItAwayAfter(TaskLane lane)
    {
        var sink = new TaskProgress();
        var handler = new ContextHandler(lane);
        var registry = new TaskHandlerRegistry([handler]);
        var executor = new TaskExecutor(registry, _lane, new ProcessPool(_options, registry, NullLogger<ProcessPool>.Instance), new RunningTasks(), _metrics, _options, sink);
        var message = new ProcessTask
        {
            TaskId = Guid.NewGuid(),
            Type = handler.Type,
            Payload = JsonSerializer.SerializeToElement(new { }),
            BatchId = Guid.NewGuid(),
            AfterTaskId = Guid.NewGuid(),
            AfterBatchId = Guid.NewGuid(),
        };

        var outcome = await executor.ExecuteAsync(message.TaskId, message, CancellationToken.None, attempt: 3);

        Assert.Equal(TaskState.Succeeded, outcome.Status);
        var seen = handler.Seen!;
        Assert.Equal(
            (message.TaskId, handler.Type, 3, message.BatchId, message.AfterTaskId, message.AfterBatchId),
            (seen.TaskId, seen.Type, seen.Attempt, seen.BatchId, seen.AfterTaskId, seen.AfterBatchId));
        Assert.Same(seen, handler.SeenAfterAwait);

        // Reported while it ran, forgotten when it ended: nothing is left to write over the final row.
        Assert.True(handler.Reported);
        Assert.Empty(sink.TakePending());

        // The lane's thread (or the caller's flow) does not keep the context for whatever runs next there.
        Assert.Null(TaskContext.Current);
        if (lane == TaskLane.Cpu)
        {
            var next = _lane.Start(_ => ValueTask.FromResult(JsonSerializer.SerializeToElement(TaskContext.Current is null)), CancellationToken.None);
            Assert.True((await next.Completion.Task).Output.GetBoolean());
        }
    }

    /// <summary>Records the context it runs with, before and after an await, and reports once.</summary>
    private sealed class ContextHandler(TaskLane lane) : ITaskHandler
    {
        public string Type => $"context-{lane}";

        public TaskLane Lane => lane;

        public TaskContext? Seen { get; private set; }

        public TaskContext? SeenAfterAwait { get; private set; }

        public bool Reported { get; private set; }

        public PreparedTask Prepare(JsonElement payload) => async cancellationToken =>
        {
            Seen = TaskContext.Current;
            Seen?.ReportProgress(0.5, "half");
            Reported = Seen is not null;
            await Task.Yield();
            SeenAfterAwait = TaskContext.Current;
            return JsonSerializer.SerializeToElement(new { ok = true });
        };
    }
}
