using System.Diagnostics;
using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Bench;

/// <summary>
/// The single-task time of a workload on one core: the built-in handler, run in this process on one thread through
/// <see cref="ITaskHandler.Prepare"/>, warmed up until the JIT has optimised it and then at least <c>repeats</c>
/// times and for at least a second; the medians of wall time and of the thread's CPU time.
/// </summary>
internal static class SingleTaskTimer
{
    private const int MinWarmUpRuns = 50;
    private static readonly TimeSpan MinWarmUpTime = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan MinTimedTime = TimeSpan.FromSeconds(1);

    public static SingleTaskTime Measure(string workload, int repeats, CancellationToken cancellationToken)
    {
        using var services = new ServiceCollection().AddLogging().AddFleetTasks().BuildServiceProvider();
        var handler = Handler(services, workload);
        SingleTaskTime? result = null;
        // A thread of its own: the handler runs start to end on it, as on a worker's CPU-lane thread.
        var thread = new Thread(() => result = Run(handler, workload, repeats, cancellationToken)) { IsBackground = true, Name = "bench-single-task" };
        thread.Start();
        thread.Join();
        return result ?? throw new BenchException($"timing '{workload}' failed");
    }

    private static SingleTaskTime Run(ITaskHandler handler, string workload, int repeats, CancellationToken cancellationToken)
    {
        // Warm-up until the JIT has tiered the handler up (at least 50 calls and 2 s): the workers run it optimised
        // after their own warm-up, and a single-task time from unoptimised code would overstate the efficiency.
        var warmUp = Stopwatch.StartNew();
        for (var i = 0; i < MinWarmUpRuns || warmUp.Elapsed < MinWarmUpTime; i++)
        {
            RunOne(handler, workload, i, cancellationToken);
        }

        // At least `repeats` runs and at least a second of them: a few runs of a short task are a thin sample on a
        // machine whose speed moves within minutes.
        var wall = new List<double>();
        var cpu = new List<double>();
        var timed = Stopwatch.StartNew();
        for (var i = 1; i <= repeats || timed.Elapsed < MinTimedTime; i++)
        {
            var clock = Stopwatch.StartNew();
            var cpuStart = ThreadCpuTime.NowMilliseconds();
            RunOne(handler, workload, i, cancellationToken);
            var cpuEnd = ThreadCpuTime.NowMilliseconds();
            clock.Stop();
            wall.Add(clock.Elapsed.TotalMilliseconds);
            if (cpuStart is { } a && cpuEnd is { } b)
            {
                cpu.Add(b - a);
            }
        }

        return new SingleTaskTime(Median(wall), cpu.Count > 0 ? Median(cpu) : null, wall.Count);
    }

    /// <summary>
    /// The machine's own ceiling for a CPU workload, measured in the same invocation as the fleet runs: the handler in
    /// this process under <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/> over
    /// <paramref name="cores"/> threads, with no broker and no database, for about <paramref name="seconds"/>. Its
    /// efficiency uses the same single-task time as the fleet's, so the two compare directly: on a machine whose
    /// cores are slow to share (a busy host, SMT siblings) both fall, and the gap between them is the fleet's own.
    /// </summary>
    public static ParallelForTime MeasureParallelFor(string workload, SingleTaskTime single, int cores, double seconds, CancellationToken cancellationToken)
    {
        using var services = new ServiceCollection().AddLogging().AddFleetTasks().BuildServiceProvider();
        var handler = Handler(services, workload);
        var tasks = (int)Math.Clamp(Math.Round(seconds * cores * 1000 / single.EffectiveMs), cores * 4, 100_000);
        var options = new ParallelOptions { MaxDegreeOfParallelism = cores, CancellationToken = cancellationToken };
        var clock = Stopwatch.StartNew();
        Parallel.For(0, tasks, options, i => RunOne(handler, workload, i, cancellationToken));
        var elapsed = clock.Elapsed.TotalSeconds;
        return new ParallelForTime(tasks, cores, elapsed, tasks / elapsed, single.EffectiveMs / 1000 * tasks / (elapsed * cores));
    }

    private static ITaskHandler Handler(IServiceProvider services, string workload) =>
        services.GetRequiredService<TaskHandlerRegistry>().TryGet(workload, out var handler)
            ? handler
            : throw new BenchException($"no built-in handler for '{workload}'");

    /// <summary>Runs task <paramref name="i"/> of the workload to its end on the calling thread, as a lane thread does.</summary>
    private static void RunOne(ITaskHandler handler, string workload, int i, CancellationToken cancellationToken)
    {
        var task = handler.Prepare(StandardWorkloads.Payload(workload, i))(cancellationToken);
        _ = task.IsCompleted ? task.Result : task.AsTask().GetAwaiter().GetResult();
    }

    internal static double Median(IReadOnlyCollection<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}

/// <summary>Median wall and thread-CPU milliseconds of one task run alone on one thread.</summary>
internal sealed record SingleTaskTime(double WallMs, double? CpuMs, int Repeats)
{
    /// <summary>The same handler under Parallel.For on this machine, measured right after (null when not measured).</summary>
    public ParallelForTime? ParallelFor { get; init; }

    /// <summary>
    /// The time used for parallel efficiency: the smaller of the two medians. On a shared machine the wall time of
    /// the lone run includes waits for a core, which would flatter the efficiency; the CPU time cannot.
    /// </summary>
    public double EffectiveMs => CpuMs is { } c && c > 0 ? Math.Min(WallMs, c) : WallMs;
}

/// <summary>One Parallel.For run of a CPU workload in the bench process: its rate and parallel efficiency.</summary>
internal sealed record ParallelForTime(int Tasks, int Threads, double Seconds, double TasksPerSecond, double Efficiency);
