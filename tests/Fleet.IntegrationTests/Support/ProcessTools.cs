using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Fleet.IntegrationTests.Support;

/// <summary>Small process, port and /proc helpers for the servers a test run owns (Linux only).</summary>
internal static class ProcessTools
{
    private static readonly HashSet<int> HandedOutPorts = [];
    private static readonly Lock PortLock = new();

    internal sealed record CommandResult(int ExitCode, string Output);

    /// <summary>A free TCP port on 127.0.0.1 (bind to port 0, read it, release it); never the same one twice per process.</summary>
    public static int GetFreeLoopbackPort()
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            lock (PortLock)
            {
                if (HandedOutPorts.Add(port))
                {
                    return port;
                }
            }
        }

        throw new InvalidOperationException("Could not find a free TCP port on 127.0.0.1.");
    }

    /// <summary>Runs a short command to its end and returns its exit code and combined output. Never hangs past <paramref name="timeout"/>.</summary>
    public static async Task<CommandResult> RunAsync(
        string fileName,
        IEnumerable<string> arguments,
        TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null,
        CancellationToken cancellationToken = default)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Path.GetTempPath(),
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        if (environment is not null)
        {
            foreach (var (key, value) in environment)
            {
                startInfo.Environment[key] = value;
            }
        }

        var commandLine = fileName + " " + string.Join(' ', startInfo.ArgumentList);
        using var process = Process.Start(startInfo) ?? throw new InvalidOperationException($"Could not start {commandLine}");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);

        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(timeoutSource.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            TryKillStartedProcess(process);
            cancellationToken.ThrowIfCancellationRequested();
            throw new TimeoutException($"'{commandLine}' did not finish within {timeout.TotalSeconds:0} s and was killed.");
        }

        // A daemon that inherited the pipes could keep them open: never wait long for the rest of the output.
        var output = new StringBuilder();
        foreach (var stream in new[] { stdout, stderr })
        {
            try
            {
                output.Append(await stream.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false));
            }
            catch (TimeoutException)
            {
                output.Append("[output still open after exit; not read]");
            }
        }

        return new CommandResult(process.ExitCode, output.ToString().Trim());
    }

    /// <summary>Runs a command and throws with its output if it fails.</summary>
    public static async Task<string> RunCheckedAsync(
        string fileName,
        IEnumerable<string> arguments,
        TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null,
        CancellationToken cancellationToken = default)
    {
        var argumentList = arguments.ToList();
        var result = await RunAsync(fileName, argumentList, timeout, environment, workingDirectory, cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"'{fileName} {string.Join(' ', argumentList)}' exited with {result.ExitCode}:{Environment.NewLine}{result.Output}");
        }

        return result.Output;
    }

    /// <summary>Synchronous variant for the ProcessExit handler (no async there).</summary>
    public static void RunQuietly(string fileName, IEnumerable<string> arguments, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null)
    {
        try
        {
            var startInfo = new ProcessStartInfo(fileName)
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = Path.GetTempPath(),
            };
            foreach (var argument in arguments)
            {
                startInfo.ArgumentList.Add(argument);
            }

            if (environment is not null)
            {
                foreach (var (key, value) in environment)
                {
                    startInfo.Environment[key] = value;
                }
            }

            using var process = Process.Start(startInfo);
            if (process is null)
            {
                return;
            }

            process.StandardInput.Close();
            if (!process.WaitForExit(timeout))
            {
                TryKillStartedProcess(process);
            }
        }
        catch (Exception exception) when (exception is InvalidOperationException or System.ComponentModel.Win32Exception or IOException)
        {
            // Best effort during shutdown.
        }
    }

    private static void TryKillStartedProcess(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    /// <summary>Whether <paramref name="pid"/> exists and is not a zombie.</summary>
    public static bool IsAlive(int pid)
    {
        var state = ReadState(pid);
        return state is not null && state != 'Z' && state != 'X';
    }

    private static char? ReadState(int pid)
    {
        var stat = ReadStat(pid);
        if (stat is null)
        {
            return null;
        }

        // Format: "pid (comm) S ppid ...": the comm may contain spaces or parentheses, so parse after the last ')'.
        var afterComm = stat[(stat.LastIndexOf(')') + 1)..].TrimStart();
        return afterComm.Length > 0 ? afterComm[0] : null;
    }

    private static string? ReadStat(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), to tell a reused pid apart.</summary>
    public static long? StartTime(int pid)
    {
        var stat = ReadStat(pid);
        if (stat is null)
        {
            return null;
        }

        var fields = stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);

        // fields[0] is field 3 (state), so field 22 is fields[19].
        return fields.Length > 19 && long.TryParse(fields[19], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ticks) ? ticks : null;
    }

    /// <summary>The fields of /proc/PID/stat after the command name: index 0 is field 3 (state), so field N is index N - 3.</summary>
    private static string[]? StatFields(int pid)
    {
        var stat = ReadStat(pid);
        return stat is null ? null : stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    private static long? StatField(int pid, int field) =>
        StatFields(pid) is { } fields && fields.Length > field - 3
        && long.TryParse(fields[field - 3], NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) ? value : null;

    /// <summary>The parent pid of <paramref name="pid"/> (field 4 of /proc/PID/stat), or null when it is gone.</summary>
    public static int? ParentOf(int pid) => StatField(pid, 4) is { } ppid ? (int)ppid : null;

    /// <summary>The live (not zombie) processes whose parent is <paramref name="pid"/>.</summary>
    public static List<int> ChildrenOf(int pid) => [.. AllChildrenOf(pid).Where(IsAlive)];

    /// <summary>The children of <paramref name="pid"/> that have exited and were not reaped: a parent that never waits for them leaks these.</summary>
    public static List<int> ZombieChildrenOf(int pid) => [.. AllChildrenOf(pid).Where(child => ReadState(child) == 'Z')];

    private static IEnumerable<int> AllChildrenOf(int pid)
    {
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var candidate)
                && ParentOf(candidate) == pid)
            {
                yield return candidate;
            }
        }
    }

    /// <summary>
    /// The live processes whose environment holds <paramref name="entry"/> (<c>NAME=value</c>), among those this user
    /// may read: finds what a process started, wherever it was re-parented since.
    /// </summary>
    public static List<int> WithEnvironment(string entry)
    {
        var found = new List<int>();
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var candidate))
            {
                continue;
            }

            try
            {
                if (File.ReadAllText(Path.Combine(directory, "environ")).Split('\0').Contains(entry, StringComparer.Ordinal) && IsAlive(candidate))
                {
                    found.Add(candidate);
                }
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
            {
                // Gone meanwhile, or another user's.
            }
        }

        return found;
    }

    /// <summary>The CPU time <paramref name="pid"/> used so far, user and system (fields 14 and 15), or null when it is gone.</summary>
    public static TimeSpan? CpuTime(int pid) =>
        StatFields(pid) is { Length: > 12 } fields
        && long.TryParse(fields[11], NumberStyles.Integer, CultureInfo.InvariantCulture, out var user)
        && long.TryParse(fields[12], NumberStyles.Integer, CultureInfo.InvariantCulture, out var system)
            ? TimeSpan.FromSeconds((user + system) / 100.0) // /proc counts in USER_HZ, which is 100 on Linux
            : null;

    /// <summary>The threads of <paramref name="pid"/> (field 20 of /proc/PID/stat); 0 when it is gone.</summary>
    public static int ThreadCount(int pid) => (int)(StatField(pid, 20) ?? 0);

    /// <summary>The command line of <paramref name="pid"/>, arguments joined by spaces, or null.</summary>
    public static string? CommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/cmdline").Replace('\0', ' ');
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>True when <paramref name="pid"/> is alive and its command line mentions <paramref name="marker"/> (our temp dir), so a reused pid is never killed.</summary>
    public static bool IsOurs(int pid, string marker) =>
        pid > 1 && IsAlive(pid) && CommandLine(pid) is { } commandLine && commandLine.Contains(marker, StringComparison.Ordinal);

    /// <summary>Reads the first integer line of a pid file, or null.</summary>
    public static int? ReadPidFile(string path)
    {
        try
        {
            var firstLine = File.ReadLines(path).FirstOrDefault();
            return int.TryParse(firstLine?.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The last lines of a log file, for error messages.</summary>
    public static string Tail(string path, int lines = 30)
    {
        try
        {
            return File.Exists(path) ? string.Join(Environment.NewLine, File.ReadLines(path).TakeLast(lines)) : $"({path} does not exist)";
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return $"({path} unreadable: {exception.Message})";
        }
    }

    /// <summary>Full path of an executable on PATH, or null.</summary>
    public static string? FindOnPath(string name)
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(directory, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
