using System.Collections.Concurrent;
using Fleet.Client;
using Fleet.Contracts;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// The lane (<c>cpu</c> or <c>io</c>) of each queue this worker consumes, as <c>fleet.queues</c> said when
/// <see cref="LanePauses"/> first connected it: its endpoint's concurrency and where its tasks run (the CPU lane's
/// threads, or concurrently as async work) follow it. The built-in lanes are known from the start. A lane changed
/// later in the table takes effect at the worker's next start: an endpoint's concurrency is fixed when it connects.
/// </summary>
public sealed class ServedQueues
{
    private readonly ConcurrentDictionary<string, string> _lanes = new(StringComparer.Ordinal)
    {
        [TaskQueues.Cpu] = QueueCatalog.CpuLane,
        [TaskQueues.Io] = QueueCatalog.IoLane,
    };

    /// <summary>Records the lane of <paramref name="queue"/> unless it is known already.</summary>
    public void Add(string queue, string lane) => _lanes.TryAdd(queue, lane);

    /// <summary>True when the tasks of <paramref name="queue"/> (or of the queue whose dispatch queue it is) run on the CPU lane.</summary>
    public bool IsCpu(string queue) => _lanes.TryGetValue(TaskQueues.LaneOf(queue), out var lane) && lane == QueueCatalog.CpuLane;
}
