namespace Fleet.Bench;

/// <summary>The processes of one component (workers, RabbitMQ, PostgreSQL) whose CPU time the bench adds up.</summary>
internal sealed record ComponentProcesses(string Name, IReadOnlyList<int> Pids, bool IncludeChildren)
{
    /// <summary>
    /// CPU seconds of the component now: each listed process (with the CPU of its reaped children) plus, when
    /// <see cref="IncludeChildren"/>, its live children (PostgreSQL backends, Erlang helpers). A child that exits
    /// between two readings moves from its own count into its parent's reaped-children count, so the difference of
    /// two readings stays right.
    /// </summary>
    public double CpuSeconds()
    {
        double total = 0;
        foreach (var pid in Pids)
        {
            total += ProcessStats.CpuSeconds(pid, withReapedChildren: IncludeChildren) ?? 0;
            if (IncludeChildren)
            {
                foreach (var child in ProcessStats.Children(pid))
                {
                    total += ProcessStats.CpuSeconds(child) ?? 0;
                }
            }
        }

        return total;
    }
}
