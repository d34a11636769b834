namespace Fleet.Tasks;

/// <summary>
/// What a handler may know about the task it runs, and its one way to talk back while it runs (progress). The
/// worker sets <see cref="Current"/> around each handler call, in whichever lane runs it; outside a handler it is
/// null. Handlers keep their <see cref="PreparedTask"/> signature: a handler that needs none of this ignores it.
/// </summary>
public sealed class TaskContext
{
    private static readonly AsyncLocal<TaskContext?> Ambient = new();
    private readonly ITaskProgressSink? _progress;

    public TaskContext(Guid taskId, string type, int attempt, Guid? batchId = null, Guid? afterTaskId = null, Guid? afterBatchId = null, ITaskProgressSink? progress = null)
    {
        TaskId = taskId;
        Type = type;
        Attempt = attempt;
        BatchId = batchId;
        AfterTaskId = afterTaskId;
        AfterBatchId = afterBatchId;
        _progress = progress;
    }

    /// <summary>The context of the handler running on this flow of execution; null outside a handler.</summary>
    public static TaskContext? Current => Ambient.Value;

    public Guid TaskId { get; }

    public string Type { get; }

    /// <summary>1 for the first execution, then 2, 3, ... (<c>fleet.task_attempts.attempt</c>).</summary>
    public int Attempt { get; }

    public Guid? BatchId { get; }

    /// <summary>For a later step of a chain: the step before it, which succeeded; its result is in <c>fleet.tasks</c>.</summary>
    public Guid? AfterTaskId { get; }

    /// <summary>For a batch's <c>onComplete</c> task: the batch, whose tasks are all final.</summary>
    public Guid? AfterBatchId { get; }

    /// <summary>
    /// Reports how far the task is, <paramref name="fraction"/> from 0 to 1, with an optional short note. Cheap to
    /// call often: the worker keeps only the latest report of each task and writes it now and then.
    /// </summary>
    public void ReportProgress(double fraction, string? note = null) => _progress?.Report(TaskId, fraction, note);

    /// <summary>Makes <paramref name="context"/> <see cref="Current"/> until the returned scope is disposed.</summary>
    public static Scope Enter(TaskContext? context)
    {
        var previous = Ambient.Value;
        Ambient.Value = context;
        return new Scope(previous);
    }

    /// <summary>Restores the context that was current before <see cref="Enter"/>.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly TaskContext? _previous;

        internal Scope(TaskContext? previous) => _previous = previous;

        public void Dispose() => Ambient.Value = _previous;
    }
}

/// <summary>Where a worker takes the progress its handlers report (<see cref="TaskContext.ReportProgress"/>).</summary>
public interface ITaskProgressSink
{
    void Report(Guid taskId, double fraction, string? note);
}
