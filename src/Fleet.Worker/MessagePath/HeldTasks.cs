using System.Collections.Concurrent;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// The tasks whose messages this worker holds, from delivery to acknowledgement: waiting for a CPU-lane thread,
/// running, or committing. The heartbeat writes them to <c>fleet.workers.held_tasks</c>, which is how the
/// reconciler tells a task in a live worker's hands from one whose message is gone. A count per id, because a
/// duplicate delivery of a task may be held beside the first.
/// </summary>
public sealed class HeldTasks
{
    private readonly ConcurrentDictionary<Guid, int> _held = new();

    /// <summary>Holds <paramref name="taskId"/> until the returned handle is disposed.</summary>
    public Handle Hold(Guid taskId)
    {
        _held.AddOrUpdate(taskId, 1, static (_, count) => count + 1);
        return new Handle(this, taskId);
    }

    public bool Contains(Guid taskId) => _held.ContainsKey(taskId);

    /// <summary>The ids held now (a moment's snapshot).</summary>
    public Guid[] Snapshot() => [.. _held.Keys];

    private void Release(Guid taskId)
    {
        while (_held.TryGetValue(taskId, out var count))
        {
            if (count == 1 ? _held.TryRemove(new KeyValuePair<Guid, int>(taskId, 1)) : _held.TryUpdate(taskId, count - 1, count))
            {
                return;
            }
        }
    }

    /// <summary>Releases the hold once; a struct, so holding costs no allocation per message.</summary>
    public readonly struct Handle(HeldTasks owner, Guid taskId) : IDisposable
    {
        public void Dispose() => owner?.Release(taskId);
    }
}
