using System.Globalization;
using System.Security.Cryptography;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// The temp dir of one test run's own servers (<c>/tmp/fleet-test-XXXXXXXX</c>) and the safety nets around it:
/// an <c>owner</c> file (pid and start time of the test process), a detached watchdog that kills the servers if the
/// test process dies without cleaning up (even by SIGKILL), and a sweep of dirs that dead runs left behind.
/// The servers' data and settings are in <see cref="ServersHome"/> (the FLEET_HOME of infra/local/services.sh), which
/// signals only pids read from there, and only when their command line names that dir.
/// </summary>
internal sealed class LocalWorkspace
{
    public const string Prefix = "fleet-test-";

    private const string WatchdogScript = """
        #!/bin/bash
        # Written by FleetServersFixture. Kills one test run's private servers when the test process is gone without
        # having stopped them (crash, SIGKILL, hang-timeout). Usage: watchdog.sh OWNER_PID|now DIR SERVICES_SH KEEP
        owner="$1"; dir="$2"; services="$3"; keep="$4"
        if [ "$owner" != now ]; then
          echo $$ > "$dir/watchdog.pid"
          while [ -d "$dir" ] && [ ! -e "$dir/stopped" ] && kill -0 "$owner" 2>/dev/null; do sleep 1; done
          { [ ! -d "$dir" ] || [ -e "$dir/stopped" ]; } && exit 0
        fi
        # By pid, from the servers' own pid files (services.sh kill checks each against its command line).
        FLEET_HOME="$dir/servers" "$services" kill >>"$dir/watchdog.log" 2>&1
        touch "$dir/stopped"
        [ "$keep" = 1 ] || rm -rf "$dir"
        """;

    private LocalWorkspace(string root, FixtureLog log)
    {
        Root = root;
        Log = log;
    }

    public string Root { get; }

    /// <summary>The FLEET_HOME given to infra/local/services.sh.</summary>
    public string ServersHome => Path.Combine(Root, "servers");

    private FixtureLog Log { get; }

    public static bool Keep => Environment.GetEnvironmentVariable("FLEET_TEST_KEEP") == "1";

    public static LocalWorkspace Create(FixtureLog log)
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("Local test servers need Linux.");
        }

        var root = Path.Combine(Path.GetTempPath(), Prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)));
        Directory.CreateDirectory(root);

        // rwxr-xr-x: the postgres user must be able to reach its data dir inside.
        File.SetUnixFileMode(
            root,
            UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
            UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        var self = Environment.ProcessId;
        File.WriteAllText(
            Path.Combine(root, "owner"),
            string.Create(CultureInfo.InvariantCulture, $"{self} {ProcessTools.StartTime(self)}\n"));
        File.WriteAllText(Path.Combine(root, "watchdog.sh"), WatchdogScript.ReplaceLineEndings("\n") + "\n");
        var workspace = new LocalWorkspace(root, log);
        log.WriteAlsoTo(Path.Combine(root, "fixture.log"));
        return workspace;
    }

    /// <summary>Starts the detached watchdog (own session, so it outlives the test process and its process group).</summary>
    public async Task StartWatchdogAsync()
    {
        var arguments = new[]
        {
            "-c", "setsid /bin/bash \"$0\" \"$@\" </dev/null >/dev/null 2>&1 &",
            Path.Combine(Root, "watchdog.sh"),
            Environment.ProcessId.ToString(CultureInfo.InvariantCulture),
            Root,
            LocalServers.Script,
            Keep ? "1" : "0",
        };
        await ProcessTools.RunCheckedAsync("/bin/sh", arguments, TimeSpan.FromSeconds(10)).ConfigureAwait(false);
    }

    /// <summary>Marks the servers as stopped (the watchdog then exits by itself) and removes the dir unless FLEET_TEST_KEEP=1.</summary>
    public void Finish()
    {
        try
        {
            File.WriteAllText(Path.Combine(Root, "stopped"), string.Empty);
            if (Keep)
            {
                Log.Info($"FLEET_TEST_KEEP=1: keeping {Root}");
                return;
            }

            Directory.Delete(Root, recursive: true);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            Log.Info($"could not remove {Root}: {exception.Message}");
        }
    }

    /// <summary>
    /// Stops the servers of earlier runs whose test process died and whose watchdog did not get to clean up
    /// (for example when both were killed), then removes their dirs. Runs whose owner still lives are left alone.
    /// </summary>
    public static async Task SweepStaleAsync(FixtureLog log)
    {
        IEnumerable<string> candidates;
        try
        {
            candidates = Directory.EnumerateDirectories(Path.GetTempPath(), Prefix + "*").ToList();
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return;
        }

        foreach (var directory in candidates)
        {
            try
            {
                var ownerFile = Path.Combine(directory, "owner");
                var script = Path.Combine(directory, "watchdog.sh");
                if (!File.Exists(ownerFile) || !File.Exists(script) || File.Exists(Path.Combine(directory, "stopped")))
                {
                    continue;
                }

                var owner = File.ReadAllText(ownerFile).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                if (owner.Length < 2 || !int.TryParse(owner[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ownerPid))
                {
                    continue;
                }

                var ownerAlive = ProcessTools.IsAlive(ownerPid) && ProcessTools.StartTime(ownerPid)?.ToString(CultureInfo.InvariantCulture) == owner[1];
                var watchdog = ProcessTools.ReadPidFile(Path.Combine(directory, "watchdog.pid"));
                if (ownerAlive || (watchdog is { } watchdogPid && ProcessTools.IsOurs(watchdogPid, directory)))
                {
                    continue;
                }

                log.Info($"sweeping {directory}: left by test process {ownerPid}, which is gone");
                await ProcessTools.RunAsync("/bin/bash", [script, "now", directory, LocalServers.Script, Keep ? "1" : "0"], TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or TimeoutException or InvalidOperationException)
            {
                log.Info($"could not sweep {directory}: {exception.Message}");
            }
        }
    }
}
