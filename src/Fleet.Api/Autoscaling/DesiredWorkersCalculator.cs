namespace Fleet.Api.Autoscaling;

/// <summary>
/// One lane's load at a sample: its queue's <paramref name="Ready"/> and <paramref name="Unacked"/> messages (unacked:
/// delivered to a worker, running or prefetched), the lane's slots per worker (<paramref name="WorkerCapacity"/>, its
/// concurrency; 0 when no worker was ever seen), the live workers with a task of this lane running
/// (<paramref name="BusyWorkers"/>), and the measured completions per worker and second
/// (<paramref name="CompletionsPerWorkerPerSecond"/>; null when nothing finished in the window).
/// </summary>
public sealed record LaneLoad(
    string Lane,
    long Ready,
    long Unacked,
    double WorkerCapacity,
    int BusyWorkers,
    double? CompletionsPerWorkerPerSecond);

/// <summary>The desired worker count for the whole fleet (<see cref="Total"/>) and for each lane alone.</summary>
public sealed record DesiredWorkers(int Total, IReadOnlyDictionary<string, int> ByLane);

/// <summary>
/// How many workers the fleet should have. Pure: the inputs are a sample, the options the policy. Per lane, with
/// W = ready + unacked (unacked counts: prefetched work is work), C = slots per worker, r = completions per worker
/// and second, T = <see cref="AutoscaleOptions.TargetDrainSeconds"/>:
/// <code>
/// perWorker = max(r * T, C)                 tasks one worker gets through within T (C alone until r is measured)
/// need      = max(ceil(W / perWorker),      enough workers to drain the backlog within T
///                 ceil(unacked / C),        never fewer than it takes to hold the work in flight
///                 busy workers of the lane) never fewer than are running this lane's tasks
/// </code>
/// <c>max(r*T, C)</c>: a worker never takes fewer than C tasks at once, so asking for more than one slot per
/// outstanding task helps nothing (tasks longer than T, or a rate measured while workers were half idle).
/// A lane with work but no known capacity (no worker seen yet) needs 1, after which its size is known.
/// The fleet's total is the largest lane's need (a worker serves both lanes at once, from separate slots), at least
/// the number of busy workers, clamped to [Min, Max]; each lane's own figure is clamped the same way, for fleets
/// that deploy one worker set per lane.
/// </summary>
public sealed class DesiredWorkersCalculator(AutoscaleOptions options)
{
    public DesiredWorkers Calculate(IReadOnlyList<LaneLoad> lanes, int busyWorkers)
    {
        ArgumentNullException.ThrowIfNull(lanes);
        var byLane = new Dictionary<string, int>(StringComparer.Ordinal);
        var need = busyWorkers;
        foreach (var lane in lanes)
        {
            var laneNeed = Math.Max(LaneNeed(lane, options.TargetDrainSeconds), lane.BusyWorkers);
            byLane[lane.Lane] = Clamp(laneNeed);
            need = Math.Max(need, laneNeed);
        }

        return new DesiredWorkers(Clamp(need), byLane);
    }

    /// <summary>Workers this lane's outstanding work needs, before busy workers and clamps.</summary>
    public static int LaneNeed(LaneLoad lane, double targetDrainSeconds)
    {
        ArgumentNullException.ThrowIfNull(lane);
        var ready = Math.Max(0, lane.Ready);
        var unacked = Math.Max(0, lane.Unacked);
        var outstanding = ready + unacked;
        if (outstanding == 0)
        {
            return 0;
        }

        var capacity = lane.WorkerCapacity;
        if (capacity <= 0)
        {
            return 1;
        }

        var rate = Math.Max(0, lane.CompletionsPerWorkerPerSecond ?? 0);
        var perWorker = Math.Max(rate * targetDrainSeconds, capacity);
        var toDrain = CeilingToInt(outstanding / perWorker);
        var toHold = CeilingToInt(unacked / capacity);
        return Math.Max(toDrain, toHold);
    }

    private int Clamp(long workers) => (int)Math.Clamp(workers, options.MinWorkers, options.MaxWorkers);

    // The epsilon keeps a quotient like 60 / 30.000000001 from rounding up to one worker more than it means.
    private static int CeilingToInt(double value) => value >= int.MaxValue ? int.MaxValue : (int)Math.Ceiling(value - 1e-9);
}
