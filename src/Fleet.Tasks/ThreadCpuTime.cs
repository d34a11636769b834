using System.Runtime.InteropServices;

namespace Fleet.Tasks;

/// <summary>
/// CPU time of the calling thread, for the worker's <c>task_attempts.cpu_ms</c> and the benchmark's single-task time (a CPU task runs start to end on
/// one dedicated thread, so the difference of two readings is the task's own CPU time). Linux only; elsewhere null.
/// </summary>
public static partial class ThreadCpuTime
{
    private const int ClockThreadCpuTimeId = 3;

    public static double? NowMilliseconds()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        return ClockGetTime(ClockThreadCpuTimeId, out var ts) == 0 ? (ts.Seconds * 1000.0) + (ts.Nanoseconds / 1_000_000.0) : null;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clockId, out TimeSpec timeSpec);
}
