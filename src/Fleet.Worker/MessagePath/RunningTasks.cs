using System.Collections.Concurrent;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// The tasks this worker is executing, by id, with the token source that cancels each. A <c>CancelTask</c>
/// broadcast reaches every worker; only the one holding the task finds it here.
/// </summary>
public sealed class RunningTasks
{
    private readonly ConcurrentDictionary<Guid, Entry> _running = new();

    /// <summary>Tracks <paramref name="taskId"/> until the returned handle is disposed.</summary>
    public IDisposable Track(Guid taskId, CancellationTokenSource cancellation)
    {
        var entry = new Entry(cancellation);
        _running[taskId] = entry;
        return new Registration(this, taskId, entry);
    }

    /// <summary>Cancels the task if it runs here; returns whether it did.</summary>
    public bool TryCancel(Guid taskId, string reason)
    {
        if (!_running.TryGetValue(taskId, out var entry))
        {
            return false;
        }

        entry.Reason = reason;
        try
        {
            entry.Cancellation.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The task ended between the lookup and the cancel.
            return false;
        }

        return true;
    }

    /// <summary>The reason given when the task was cancelled by request, or null when it was not.</summary>
    public string? CancelReason(Guid taskId) => _running.TryGetValue(taskId, out var entry) ? entry.Reason : null;

    private sealed class Entry(CancellationTokenSource cancellation)
    {
        public CancellationTokenSource Cancellation { get; } = cancellation;

        public volatile string? Reason;
    }

    private sealed class Registration(RunningTasks owner, Guid taskId, Entry entry) : IDisposable
    {
        public void Dispose() => owner._running.TryRemove(new KeyValuePair<Guid, Entry>(taskId, entry));
    }
}
