using System.Globalization;

namespace Fleet.Bench;

/// <summary>
/// Linux <c>/proc</c> readings for the benchmark: CPU seconds (utime+stime) and peak RSS (VmHWM) of a process, and
/// the process that listens on a loopback TCP port (how the bench finds the PostgreSQL and RabbitMQ servers of
/// the fleet it measures, and never anyone else's). Every reading returns null or empty when /proc cannot tell.
/// </summary>
internal static class ProcessStats
{
    /// <summary>Clock ticks per second of /proc/*/stat times; 100 on every Linux build that matters.</summary>
    private const double TicksPerSecond = 100.0;

    /// <summary>CPU seconds of the process: utime+stime, plus cutime+cstime when <paramref name="withReapedChildren"/>.</summary>
    public static double? CpuSeconds(int pid, bool withReapedChildren = false)
    {
        var fields = StatFields(pid);
        if (fields is null)
        {
            return null;
        }

        // Fields after "pid (comm)": [0]=state ... [11]=utime [12]=stime [13]=cutime [14]=cstime.
        var ticks = Long(fields[11]) + Long(fields[12]);
        if (withReapedChildren)
        {
            ticks += Long(fields[13]) + Long(fields[14]);
        }

        return ticks / TicksPerSecond;
    }

    /// <summary>Parent pid of <paramref name="pid"/>, or null.</summary>
    public static int? ParentPid(int pid)
    {
        var fields = StatFields(pid);
        return fields is null ? null : (int)Long(fields[1]);
    }

    /// <summary>VmHWM (peak resident set size) in bytes, or null.</summary>
    public static long? PeakRssBytes(int pid) => StatusKb(pid, "VmHWM:") * 1024;

    /// <summary>VmRSS (current resident set size) in bytes, or null.</summary>
    public static long? RssBytes(int pid) => StatusKb(pid, "VmRSS:") * 1024;

    /// <summary>
    /// Resets the peak RSS of <paramref name="pid"/> to its current RSS (<c>echo 5 &gt; /proc/PID/clear_refs</c>), so that
    /// VmHWM afterwards is the peak of the run. False when not permitted (then VmHWM is the peak since process start).
    /// </summary>
    public static bool TryResetPeakRss(int pid)
    {
        try
        {
            File.WriteAllText($"/proc/{pid}/clear_refs", "5");
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    public static string? CommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Live pids whose parent is <paramref name="parent"/>.</summary>
    public static IReadOnlyList<int> Children(int parent)
    {
        var result = new List<int>();
        foreach (var pid in AllPids())
        {
            if (ParentPid(pid) == parent)
            {
                result.Add(pid);
            }
        }

        return result;
    }

    /// <summary>The pid of the process that listens on TCP <paramref name="port"/> (IPv4 or IPv6), or null.</summary>
    public static int? ListenerPid(int port)
    {
        var inodes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            string[] lines;
            try
            {
                lines = File.ReadAllLines(table);
            }
            catch (IOException)
            {
                continue;
            }

            foreach (var line in lines.Skip(1))
            {
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                // sl local_address rem_address st ... inode(9)
                if (parts.Length < 10 || parts[3] != "0A")
                {
                    continue;
                }

                var colon = parts[1].LastIndexOf(':');
                if (colon > 0 && int.TryParse(parts[1].AsSpan(colon + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var p) && p == port)
                {
                    inodes.Add($"socket:[{parts[9]}]");
                }
            }
        }

        if (inodes.Count == 0)
        {
            return null;
        }

        foreach (var pid in AllPids())
        {
            string[] fds;
            try
            {
                fds = Directory.GetFiles($"/proc/{pid}/fd");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            foreach (var fd in fds)
            {
                try
                {
                    if (new FileInfo(fd).LinkTarget is { } target && inodes.Contains(target))
                    {
                        return pid;
                    }
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    // The fd closed meanwhile.
                }
            }
        }

        return null;
    }

    private static IEnumerable<int> AllPids()
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                yield return pid;
            }
        }
    }

    private static string[]? StatFields(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        // The command name may contain spaces and parentheses: split after the last ')'.
        var close = text.LastIndexOf(')');
        return close < 0 ? null : text[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    private static long? StatusKb(int pid, string key)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith(key, StringComparison.Ordinal))
                {
                    var value = line[key.Length..].Trim().Split(' ')[0];
                    return long.Parse(value, CultureInfo.InvariantCulture);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        return null;
    }

    private static long Long(string s) => long.Parse(s, CultureInfo.InvariantCulture);
}
