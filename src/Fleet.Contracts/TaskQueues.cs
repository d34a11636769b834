namespace Fleet.Contracts;

/// <summary>The queues (and the fanout exchanges of the same names) that workers consume.</summary>
public static class TaskQueues
{
    /// <summary>CPU-bound work: sha256, sieve, heat and user CPU types.</summary>
    public const string Cpu = "fleet-cpu";

    /// <summary>I/O-bound work: sleep, http-get, noop and user I/O types.</summary>
    public const string Io = "fleet-io";

    /// <summary>The fanout exchange that broadcasts <see cref="CancelTask"/> to every worker.</summary>
    public const string Control = "fleet-control";

    /// <summary>Both lanes' queues, in the order workers declare them.</summary>
    public static IReadOnlyList<string> All { get; } = [Cpu, Io];

    /// <summary>
    /// What names a lane's dispatch queue: <c>fleet-cpu.dispatch</c> holds the tasks of <c>fleet-cpu</c> that the
    /// dispatcher published (a tenant, a priority, a limited type), a few at a time and in its order. Workers consume
    /// it beside the lane, so such a task never waits behind the lane's own backlog.
    /// </summary>
    public const string DispatchSuffix = ".dispatch";

    /// <summary>The dispatch queue of <paramref name="lane"/>: <c>{lane}.dispatch</c>.</summary>
    public static string DispatchQueueOf(string lane) => lane + DispatchSuffix;

    /// <summary>The lane a queue belongs to: the lane itself, or the lane of a dispatch queue.</summary>
    public static string LaneOf(string queue) =>
        queue.EndsWith(DispatchSuffix, StringComparison.Ordinal) ? queue[..^DispatchSuffix.Length] : queue;
}
