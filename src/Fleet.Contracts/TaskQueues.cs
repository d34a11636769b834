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
}
