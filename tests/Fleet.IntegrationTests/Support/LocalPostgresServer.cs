using System.Globalization;
using Npgsql;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// A private PostgreSQL cluster for one test run: initdb into the run's temp dir, pg_ctl on a free 127.0.0.1 port,
/// unix socket inside the data dir, trust auth for user <c>postgres</c>, database <c>fleet_test</c>.
/// fsync and full_page_writes are off (they only protect against an OS crash; this data is thrown away at the end
/// of the run). synchronous_commit stays on: with it off, a killed server loses commits it had already confirmed,
/// which would make the fault tests (kill PostgreSQL, check nothing committed was lost) fail for the wrong reason.
/// With an <see cref="ExtraListenAddress"/> it also listens there and trusts that subnet (the multi-host tests'
/// simulated servers), with TCP keepalives that end the backends of clients whose link was cut.
/// </summary>
internal sealed class LocalPostgresServer : IOwnedServer
{
    public const string DatabaseName = "fleet_test";

    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(90);

    private readonly string _binDirectory;
    private readonly string _dataDirectory;
    private readonly string _logFile;
    private readonly FixtureLog _log;
    private readonly bool _runAsPostgresUser;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ExtraListenAddress? _alsoListenOn;
    private bool _running;

    public LocalPostgresServer(string binDirectory, string workDirectory, FixtureLog log, ExtraListenAddress? alsoListenOn = null)
    {
        _alsoListenOn = alsoListenOn;
        _binDirectory = binDirectory;
        _dataDirectory = Path.Combine(workDirectory, "postgres");
        _logFile = Path.Combine(_dataDirectory, "server.log");
        _log = log;
        _runAsPostgresUser = Environment.IsPrivilegedProcess;
        Port = ProcessTools.GetFreeLoopbackPort();
    }

    public string Name => "PostgreSQL";

    public int Port { get; private set; }

    public string DataDirectory => _dataDirectory;

    public string ConnectionString => ConnectionStringFor(DatabaseName);

    private string ConnectionStringFor(string database) =>
        new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = Port, Username = "postgres", Database = database }.ConnectionString;

    /// <summary>The bin dir of the highest PostgreSQL under /usr/lib/postgresql (or FLEET_TEST_PG_BIN), or null.</summary>
    public static string? FindBinDirectory()
    {
        var overridden = Environment.GetEnvironmentVariable("FLEET_TEST_PG_BIN");
        if (!string.IsNullOrWhiteSpace(overridden))
        {
            return HasTools(overridden) ? overridden : null;
        }

        const string root = "/usr/lib/postgresql";
        if (!Directory.Exists(root))
        {
            return null;
        }

        return Directory.EnumerateDirectories(root)
            .Select(directory => (Directory: directory, Version: decimal.TryParse(Path.GetFileName(directory), NumberStyles.Number, CultureInfo.InvariantCulture, out var version) ? version : -1m))
            .Where(candidate => candidate.Version >= 0 && HasTools(Path.Combine(candidate.Directory, "bin")))
            .OrderByDescending(candidate => candidate.Version)
            .Select(candidate => Path.Combine(candidate.Directory, "bin"))
            .FirstOrDefault();

        static bool HasTools(string bin) => File.Exists(Path.Combine(bin, "initdb")) && File.Exists(Path.Combine(bin, "pg_ctl"));
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Directory.CreateDirectory(_dataDirectory);
            if (_runAsPostgresUser)
            {
                // initdb refuses root: the cluster belongs to the postgres user, which needs its own data dir.
                await ProcessTools.RunCheckedAsync("chown", ["postgres:postgres", _dataDirectory], CommandTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            if (OperatingSystem.IsWindows())
            {
                throw new PlatformNotSupportedException("Local test servers need Linux.");
            }

            File.SetUnixFileMode(_dataDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            await PgToolAsync(
                "initdb",
                ["-D", _dataDirectory, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                cancellationToken).ConfigureAwait(false);
            if (_alsoListenOn is { } extra)
            {
                // initdb trusts loopback only; the simulated servers connect from their own subnet.
                await File.AppendAllTextAsync(
                    Path.Combine(_dataDirectory, "pg_hba.conf"),
                    $"host all all {extra.Clients} trust\n",
                    cancellationToken).ConfigureAwait(false);
            }

            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await PgCtlStartAsync(cancellationToken).ConfigureAwait(false);
                    break;
                }
                catch (InvalidOperationException exception) when (attempt < 3 && exception.Message.Contains("Address already in use", StringComparison.Ordinal))
                {
                    // The port picked as free was taken before the postmaster bound it: try another.
                    _log.Info($"PostgreSQL: port {Port} was taken meanwhile, attempt {attempt}; retrying with a new port");
                    Port = ProcessTools.GetFreeLoopbackPort();
                }
            }

            var admin = new NpgsqlConnectionStringBuilder(ConnectionStringFor("postgres")) { Pooling = false }.ConnectionString;
            await using var connection = new NpgsqlConnection(admin);
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using var command = new NpgsqlCommand($"CREATE DATABASE {DatabaseName}", connection);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!_running)
            {
                return;
            }

            await PgToolAsync("pg_ctl", ["stop", "-D", _dataDirectory, "-m", "fast", "-w", "-t", "60"], cancellationToken).ConfigureAwait(false);
            _running = false;
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task KillAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var pid = PostmasterPid();
            if (pid is null)
            {
                throw new InvalidOperationException("PostgreSQL is not running (no live postmaster in postmaster.pid).");
            }

            // A hard crash: the postmaster and every backend at once, no shutdown checkpoint.
            ProcessTools.KillHardWithChildren(pid.Value);
            _running = false;
            await WaitForPostmasterExitAsync(pid.Value).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task RestartStoppedAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_running && PostmasterPid() is not null)
            {
                throw new InvalidOperationException("PostgreSQL is already running: stop or kill it first.");
            }

            await PgCtlStartAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            var pid = PostmasterPid();
            if (pid is null)
            {
                return;
            }

            // The data is thrown away: an immediate shutdown is enough (and leaves no shared memory behind, unlike SIGKILL).
            var result = await ProcessTools.RunAsync(PgToolPath("pg_ctl"), PgToolArguments("pg_ctl", ["stop", "-D", _dataDirectory, "-m", "immediate", "-w", "-t", "20"]), TimeSpan.FromSeconds(30))
                .ConfigureAwait(false);
            if (result.ExitCode != 0 && ProcessTools.IsOurs(pid.Value, _dataDirectory))
            {
                _log.Info($"pg_ctl stop failed ({result.Output}); killing postmaster {pid}");
                ProcessTools.KillHardWithChildren(pid.Value);
            }

            _running = false;
        }
        finally
        {
            _gate.Release();
        }
    }

    public void EmergencyStop()
    {
        var pid = PostmasterPid();
        if (pid is null)
        {
            return;
        }

        // SIGQUIT is PostgreSQL's immediate shutdown; SIGKILL if it is still there shortly after.
        ProcessTools.RunQuietly("kill", ["-s", "QUIT", pid.Value.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(2));
        for (var i = 0; i < 30 && ProcessTools.IsAlive(pid.Value); i++)
        {
            Thread.Sleep(100);
        }

        if (ProcessTools.IsOurs(pid.Value, _dataDirectory))
        {
            ProcessTools.KillHardWithChildren(pid.Value);
        }
    }

    /// <summary>The live postmaster's pid from postmaster.pid, checked against its command line.</summary>
    public int? PostmasterPid()
    {
        var pid = ProcessTools.ReadPidFile(Path.Combine(_dataDirectory, "postmaster.pid"));
        return pid is { } value && ProcessTools.IsOurs(value, _dataDirectory) ? value : null;
    }

    private async Task PgCtlStartAsync(CancellationToken cancellationToken)
    {
        var options = string.Join(
            ' ',
            "-p", Port.ToString(CultureInfo.InvariantCulture),
            "-k", _dataDirectory,
            "-c", _alsoListenOn is { } extra ? $"listen_addresses=127.0.0.1,{extra.Address}" : "listen_addresses=127.0.0.1",
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=300");
        if (_alsoListenOn is not null)
        {
            // A client whose link is cut sends no FIN: probe idle connections so that their backends end (about 20 s).
            options += " -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3";
        }

        await PgToolAsync("pg_ctl", ["start", "-D", _dataDirectory, "-o", options, "-l", _logFile, "-w", "-t", "60"], cancellationToken).ConfigureAwait(false);
        _running = true;
    }

    private async Task WaitForPostmasterExitAsync(int pid)
    {
        // PostgreSQL refuses to start while the old pid still exists, and a zombie counts. Some sandboxes' init
        // reaps orphans only now and then, so wait; if only a zombie is left, the lock file is stale: remove it.
        if (await ProcessTools.WaitGoneAsync(pid, TimeSpan.FromSeconds(10)).ConfigureAwait(false))
        {
            return;
        }

        if (!ProcessTools.IsAlive(pid))
        {
            _log.Info($"postmaster {pid} is a zombie that nobody reaps; removing its stale postmaster.pid");
            File.Delete(Path.Combine(_dataDirectory, "postmaster.pid"));
            return;
        }

        throw new InvalidOperationException($"PostgreSQL postmaster {pid} survived SIGKILL for 10 s.");
    }

    private async Task PgToolAsync(string tool, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        var result = await ProcessTools.RunAsync(PgToolPath(tool), PgToolArguments(tool, arguments), CommandTimeout, cancellationToken: cancellationToken)
            .ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{tool} {string.Join(' ', arguments)} exited with {result.ExitCode}:{Environment.NewLine}{result.Output}{Environment.NewLine}" +
                $"--- {_logFile} ---{Environment.NewLine}{ProcessTools.Tail(_logFile)}");
        }
    }

    private string PgToolPath(string tool) => _runAsPostgresUser ? "runuser" : Path.Combine(_binDirectory, tool);

    private List<string> PgToolArguments(string tool, IEnumerable<string> arguments) =>
        _runAsPostgresUser ? ["-u", "postgres", "--", Path.Combine(_binDirectory, tool), .. arguments] : [.. arguments];
}
