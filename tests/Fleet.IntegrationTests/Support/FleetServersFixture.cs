using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.Support;

/// <summary>Where the fixture's servers come from.</summary>
public enum FleetServerSource
{
    /// <summary>FLEET_TEST_POSTGRES and FLEET_TEST_RABBITMQ: someone else's servers, used as they are (never stopped).</summary>
    Environment,

    /// <summary>Testcontainers with pinned images, because a Docker engine answered.</summary>
    Testcontainers,

    /// <summary>Private PostgreSQL and RabbitMQ processes from the installed binaries, owned by this test run.</summary>
    LocalProcesses,
}

/// <summary>The xunit collection that shares one <see cref="FleetServersFixture"/>: put <c>[Collection(FleetServersCollection.Name)]</c> on a test class.</summary>
[CollectionDefinition(Name)]
public sealed class FleetServersCollection : ICollectionFixture<FleetServersFixture>
{
    public const string Name = "fleet-servers";
}

/// <summary>
/// Real PostgreSQL and RabbitMQ servers for integration tests, chosen in this order:
/// <list type="number">
/// <item>FLEET_TEST_POSTGRES (Npgsql connection string) and FLEET_TEST_RABBITMQ (amqp://user:pass@host:port/vhost),
/// optionally FLEET_TEST_RABBITMQ_MANAGEMENT (http://user:pass@host:port/): used as they are, not owned;</item>
/// <item>Testcontainers (postgres:15-alpine, rabbitmq:3.10-management) when a Docker engine answers within 2 s;</item>
/// <item>private servers from the installed binaries, run by infra/local/services.sh (<see cref="LocalServers"/>) on free
/// 127.0.0.1 ports, data in /tmp/fleet-test-XXXXXXXX, stopped and removed at the end (kept with FLEET_TEST_KEEP=1).</item>
/// </list>
/// FLEET_TEST_SERVERS=local or =testcontainers skips the detection (for example where Docker runs but cannot pull).
/// Owned servers can be stopped, killed and started again on the same port with the same data (fault tests).
/// Note for restarts: pooled Npgsql connections to a restarted PostgreSQL are broken; clear the pool
/// (<c>NpgsqlConnection.ClearAllPools()</c>) or expect one failure per pooled connection.
/// Created with an <see cref="ExtraListenAddress"/> (the multi-host tests), it always starts private servers that
/// listen on that address too: servers from the environment or a container would not be reachable there.
/// </summary>
public sealed class FleetServersFixture : IAsyncLifetime
{
    private readonly FixtureLog _log;
    private readonly ExtraListenAddress? _alsoListenOn;
    private readonly IReadOnlyDictionary<string, string>? _scriptSettings;
    private IOwnedServer? _postgres;
    private IOwnedServer? _rabbitMq;
    private LocalWorkspace? _workspace;
    private string? _postgresConnectionString;
    private Uri? _rabbitMqUri;
    private int _finished;

    public FleetServersFixture(IMessageSink diagnosticMessageSink)
    {
        _log = new FixtureLog(diagnosticMessageSink);
    }

    /// <summary>
    /// Private servers that also listen on <paramref name="alsoListenOn"/> (same ports). Internal: xunit requires a
    /// collection fixture to have a single public constructor.
    /// </summary>
    internal FleetServersFixture(IMessageSink diagnosticMessageSink, ExtraListenAddress alsoListenOn)
        : this(diagnosticMessageSink)
    {
        _alsoListenOn = alsoListenOn;
    }

    /// <summary>
    /// Private servers started with these extra <c>services.sh</c> settings (the TLS tests' FLEET_TLS_CERT_FILE and
    /// friends): always local processes, since only those take them.
    /// </summary>
    internal FleetServersFixture(IMessageSink diagnosticMessageSink, IReadOnlyDictionary<string, string> scriptSettings)
        : this(diagnosticMessageSink)
    {
        _scriptSettings = scriptSettings;
    }

    /// <summary>Where the servers came from.</summary>
    public FleetServerSource Source { get; private set; }

    /// <summary>True when this test run started the servers, so it may stop, kill and restart them.</summary>
    public bool OwnsServers => _postgres is not null && _rabbitMq is not null;

    /// <summary>Npgsql connection string of the test database (<c>fleet_test</c> on owned servers).</summary>
    public string PostgresConnectionString => _postgresConnectionString ?? throw NotInitialized();

    /// <summary>amqp://user:pass@host:port/vhost (vhost <c>fleet</c>, user <c>fleet</c> on owned servers).</summary>
    public Uri RabbitMqUri => _rabbitMqUri ?? throw NotInitialized();

    /// <summary>
    /// The least-privilege logins the worker, the API and producers use (<c>services.sh</c> creates them); null for
    /// servers from the environment or containers, whose components then run with the setup's own credentials.
    /// </summary>
    public ComponentLogins? Logins { get; private set; }

    /// <summary>http://user:pass@host:port/ of the RabbitMQ management API; null when the environment did not give one.</summary>
    public Uri? RabbitMqManagementUri { get; private set; }

    /// <summary>The temp dir of <see cref="FleetServerSource.LocalProcesses"/> (logs are there), else null.</summary>
    public string? WorkDirectory => _workspace?.Root;

    /// <summary>How long <see cref="InitializeAsync"/> took.</summary>
    public TimeSpan StartupTime { get; private set; }

    /// <summary>An HttpClient for the management API (base address set, basic auth from <see cref="RabbitMqManagementUri"/>). Dispose it.</summary>
    public HttpClient CreateRabbitMqManagementClient() =>
        LocalServers.CreateManagementClient(RabbitMqManagementUri ?? throw new InvalidOperationException(
            "No RabbitMQ management API: with FLEET_TEST_RABBITMQ also set FLEET_TEST_RABBITMQ_MANAGEMENT=http://user:pass@host:port/."));

    /// <summary>Hard crash of RabbitMQ (SIGKILL of the node; a docker stop for Testcontainers). Data stays.</summary>
    public Task KillRabbitMqAsync(CancellationToken cancellationToken = default) => ControlAsync(Owned(_rabbitMq), "kill", s => s.KillAsync(cancellationToken));

    /// <summary>Graceful stop of RabbitMQ (takes about 5 s). Data stays.</summary>
    public Task StopRabbitMqAsync(CancellationToken cancellationToken = default) => ControlAsync(Owned(_rabbitMq), "stop", s => s.StopAsync(cancellationToken));

    /// <summary>Starts the stopped or killed RabbitMQ again, same port, same data; returns when AMQP logins and the management API work.</summary>
    public Task StartRabbitMqAsync(CancellationToken cancellationToken = default) => ControlAsync(Owned(_rabbitMq), "start", s => s.RestartStoppedAsync(cancellationToken));

    /// <summary>Graceful stop, then start.</summary>
    public async Task RestartRabbitMqAsync(CancellationToken cancellationToken = default)
    {
        await StopRabbitMqAsync(cancellationToken).ConfigureAwait(false);
        await StartRabbitMqAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Hard crash of PostgreSQL (SIGKILL of the postmaster and its backends; a docker stop for Testcontainers). Committed data stays (crash recovery on start).</summary>
    public Task KillPostgresAsync(CancellationToken cancellationToken = default) => ControlAsync(Owned(_postgres), "kill", s => s.KillAsync(cancellationToken));

    /// <summary>Fast shutdown of PostgreSQL (pg_ctl stop -m fast). Data stays.</summary>
    public Task StopPostgresAsync(CancellationToken cancellationToken = default) => ControlAsync(Owned(_postgres), "stop", s => s.StopAsync(cancellationToken));

    /// <summary>Starts the stopped or killed PostgreSQL again, same port, same data.</summary>
    public Task StartPostgresAsync(CancellationToken cancellationToken = default) => ControlAsync(Owned(_postgres), "start", s => s.RestartStoppedAsync(cancellationToken));

    /// <summary>Fast stop, then start.</summary>
    public async Task RestartPostgresAsync(CancellationToken cancellationToken = default)
    {
        await StopPostgresAsync(cancellationToken).ConfigureAwait(false);
        await StartPostgresAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task InitializeAsync()
    {
        var stopwatch = Stopwatch.StartNew();
        var mode = _alsoListenOn is null && _scriptSettings is null ? (System.Environment.GetEnvironmentVariable("FLEET_TEST_SERVERS") ?? "auto").Trim().ToLowerInvariant() : "local";
        if (mode is not ("auto" or "" or "environment" or "testcontainers" or "local"))
        {
            throw new InvalidOperationException($"FLEET_TEST_SERVERS={mode}: use auto, environment, testcontainers or local.");
        }

        if (mode is "auto" or "" or "environment")
        {
            if (UseEnvironment(mode == "environment"))
            {
                Finish(stopwatch);
                return;
            }
        }

        if (mode is "auto" or "" or "testcontainers")
        {
            var docker = await DockerProbe.ProbeAsync().ConfigureAwait(false);
            _log.Info($"Docker: {docker.Detail} ({stopwatch.Elapsed.TotalSeconds:0.00} s)");
            if (docker.Available || mode == "testcontainers")
            {
                try
                {
                    await StartContainersAsync(docker.IsLocal).ConfigureAwait(false);
                    Finish(stopwatch);
                    return;
                }
                catch (Exception exception) when (mode != "testcontainers" && exception is not OutOfMemoryException)
                {
                    _log.Info($"Testcontainers failed ({exception.GetType().Name}: {exception.Message}); falling back to local processes");
                    await StopOwnedAsync().ConfigureAwait(false);
                    _postgres = null;
                    _rabbitMq = null;
                }
            }
        }

        await StartLocalProcessesAsync().ConfigureAwait(false);
        Finish(stopwatch);
    }

    public async Task DisposeAsync()
    {
        if (Interlocked.Exchange(ref _finished, 1) == 1)
        {
            return;
        }

        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        if (!OwnsServers)
        {
            return;
        }

        var stopwatch = Stopwatch.StartNew();
        await StopOwnedAsync().ConfigureAwait(false);
        _workspace?.Finish();
        _log.Info($"stopped {Source} servers in {stopwatch.Elapsed.TotalSeconds:0.00} s");
    }

    private bool UseEnvironment(bool required)
    {
        var postgres = System.Environment.GetEnvironmentVariable("FLEET_TEST_POSTGRES");
        var rabbitMq = System.Environment.GetEnvironmentVariable("FLEET_TEST_RABBITMQ");
        var management = System.Environment.GetEnvironmentVariable("FLEET_TEST_RABBITMQ_MANAGEMENT");
        var hasPostgres = !string.IsNullOrWhiteSpace(postgres);
        var hasRabbitMq = !string.IsNullOrWhiteSpace(rabbitMq);
        if (!hasPostgres && !hasRabbitMq && !required)
        {
            return false;
        }

        if (!hasPostgres || !hasRabbitMq)
        {
            throw new InvalidOperationException(
                "Set both FLEET_TEST_POSTGRES (Npgsql connection string) and FLEET_TEST_RABBITMQ (amqp://user:pass@host:port/vhost), or neither.");
        }

        if (!Uri.TryCreate(rabbitMq, UriKind.Absolute, out var amqp) || (amqp.Scheme != "amqp" && amqp.Scheme != "amqps"))
        {
            throw new InvalidOperationException("FLEET_TEST_RABBITMQ must be an amqp:// or amqps:// URI.");
        }

        Source = FleetServerSource.Environment;
        _postgresConnectionString = postgres;
        _rabbitMqUri = amqp;
        RabbitMqManagementUri = string.IsNullOrWhiteSpace(management) ? null : new Uri(management);
        return true;
    }

    private async Task StartContainersAsync(bool localEngine)
    {
        Source = FleetServerSource.Testcontainers;
        var postgres = new ContainerPostgresServer(localEngine);
        var rabbitMq = new ContainerRabbitMqServer(localEngine);
        _postgres = postgres;
        _rabbitMq = rabbitMq;
        _log.Info($"starting {ContainerImages.Postgres} on port {postgres.Port} and {ContainerImages.RabbitMq} on ports {rabbitMq.AmqpPort} (AMQP), {rabbitMq.ManagementPort} (management)");
        await StartBothAsync().ConfigureAwait(false);
        _postgresConnectionString = postgres.ConnectionString;
        _rabbitMqUri = rabbitMq.AmqpUri;
        RabbitMqManagementUri = rabbitMq.ManagementUri;
    }

    private async Task StartLocalProcessesAsync()
    {
        Source = FleetServerSource.LocalProcesses;
        var postgresBin = FindPostgresBin();
        var missing = new List<string>();
        if (postgresBin is null)
        {
            missing.Add("PostgreSQL (no /usr/lib/postgresql/*/bin with initdb and pg_ctl)");
        }

        if (!File.Exists("/usr/lib/rabbitmq/bin/rabbitmq-server") || ProcessTools.FindOnPath("epmd") is null)
        {
            missing.Add("RabbitMQ (no /usr/lib/rabbitmq/bin/rabbitmq-server or no epmd)");
        }

        if (System.Environment.IsPrivilegedProcess && !File.ReadLines("/etc/passwd").Any(line => line.StartsWith("postgres:", StringComparison.Ordinal)))
        {
            missing.Add("the 'postgres' user (initdb refuses to run as root)");
        }

        if (missing.Count > 0)
        {
            throw new InvalidOperationException(
                "Integration tests need real servers and found no FLEET_TEST_POSTGRES/FLEET_TEST_RABBITMQ, no Docker engine, and " +
                $"not these installed binaries: {string.Join("; ", missing)}. Run `infra/local/install.sh` as root " +
                "(it installs postgresql and rabbitmq-server), or set FLEET_TEST_POSTGRES and FLEET_TEST_RABBITMQ.");
        }

        await LocalWorkspace.SweepStaleAsync(_log).ConfigureAwait(false);
        _workspace = LocalWorkspace.Create(_log);
        var local = new LocalServers(_workspace.ServersHome, postgresBin!, _log, _alsoListenOn, _scriptSettings);
        _postgres = local.Postgres;
        _rabbitMq = local.RabbitMq;
        AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
        await _workspace.StartWatchdogAsync().ConfigureAwait(false);
        _log.Info($"starting local servers in {_workspace.Root} ({postgresBin}): {local.Describe()}");
        try
        {
            using var cancellation = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            await local.StartAsync(cancellation.Token).ConfigureAwait(false);
        }
        catch
        {
            await StopOwnedAsync().ConfigureAwait(false);
            _postgres = null;
            _rabbitMq = null;
            _workspace.Finish();
            AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
            throw;
        }

        _postgresConnectionString = local.PostgresConnectionString;
        _rabbitMqUri = local.AmqpUri;
        RabbitMqManagementUri = local.ManagementUri;
        Logins = local.Logins;
        _log.Info($"PostgreSQL postmaster pid {await local.PidAsync("postgresql").ConfigureAwait(false)}, RabbitMQ node pid {await local.PidAsync("rabbitmq").ConfigureAwait(false)}");
    }

    /// <summary>The bin dir of the highest PostgreSQL under /usr/lib/postgresql (or FLEET_TEST_PG_BIN), or null.</summary>
    private static string? FindPostgresBin()
    {
        var overridden = System.Environment.GetEnvironmentVariable("FLEET_TEST_PG_BIN");
        if (!string.IsNullOrWhiteSpace(overridden))
        {
            return HasTools(overridden) ? overridden : null;
        }

        const string root = "/usr/lib/postgresql";
        return !Directory.Exists(root)
            ? null
            : Directory.EnumerateDirectories(root)
                .Select(directory => (Directory: directory, Version: decimal.TryParse(Path.GetFileName(directory), NumberStyles.Number, CultureInfo.InvariantCulture, out var version) ? version : -1m))
                .Where(candidate => candidate.Version >= 0 && HasTools(Path.Combine(candidate.Directory, "bin")))
                .OrderByDescending(candidate => candidate.Version)
                .Select(candidate => Path.Combine(candidate.Directory, "bin"))
                .FirstOrDefault();

        static bool HasTools(string bin) => File.Exists(Path.Combine(bin, "initdb")) && File.Exists(Path.Combine(bin, "pg_ctl"));
    }

    /// <summary>PostgreSQL and RabbitMQ start in parallel (the containers); each one's time is logged.</summary>
    private async Task StartBothAsync()
    {
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var servers = new[] { _postgres!, _rabbitMq! };
        var starts = servers.Select(async server =>
        {
            var stopwatch = Stopwatch.StartNew();
            await server.StartAsync(cancellation.Token).ConfigureAwait(false);
            _log.Info($"{server.Name} ready in {stopwatch.Elapsed.TotalSeconds:0.00} s");
        }).ToList();
        try
        {
            await Task.WhenAll(starts).ConfigureAwait(false);
        }
        catch
        {
            var errors = starts.Where(start => start.IsFaulted).SelectMany(start => start.Exception!.InnerExceptions).ToList();
            if (errors.Count > 1)
            {
                throw new AggregateException("Both servers failed to start.", errors);
            }

            throw;
        }
    }

    private async Task StopOwnedAsync()
    {
        var servers = new[] { _rabbitMq, _postgres }.OfType<IOwnedServer>().ToList();
        await Task.WhenAll(servers.Select(async server =>
        {
            try
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is not OutOfMemoryException)
            {
                _log.Info($"stopping {server.Name} failed: {exception.Message}");
            }
        })).ConfigureAwait(false);
    }

    private void OnProcessExit(object? sender, EventArgs e)
    {
        if (Interlocked.Exchange(ref _finished, 1) == 1)
        {
            return;
        }

        // The test host is exiting without DisposeAsync: stop the servers quickly (no graceful shutdowns here).
        _log.Info("the test process is exiting without DisposeAsync: stopping the servers");
        _rabbitMq?.EmergencyStop();
        _postgres?.EmergencyStop();
        _workspace?.Finish();
    }

    private void Finish(Stopwatch stopwatch)
    {
        StartupTime = stopwatch.Elapsed;
        _log.Info(string.Create(
            CultureInfo.InvariantCulture,
            $"source {Source} ready in {StartupTime.TotalSeconds:0.00} s: PostgreSQL {FixtureLog.Redact(PostgresConnectionString)}; " +
            $"RabbitMQ {FixtureLog.Redact(RabbitMqUri.ToString())}; management {(RabbitMqManagementUri is null ? "none" : FixtureLog.Redact(RabbitMqManagementUri.ToString()))}"));
    }

    private IOwnedServer Owned(IOwnedServer? server) =>
        server ?? throw new InvalidOperationException(
            $"The servers come from {Source} and are not owned by this test run: they cannot be stopped, killed or restarted. " +
            "Check FleetServersFixture.OwnsServers and skip the fault test when it is false.");

    private async Task ControlAsync(IOwnedServer server, string action, Func<IOwnedServer, Task> operation)
    {
        var stopwatch = Stopwatch.StartNew();
        await operation(server).ConfigureAwait(false);
        _log.Info($"{action} {server.Name}: {stopwatch.Elapsed.TotalSeconds:0.00} s");
    }

    private static InvalidOperationException NotInitialized() => new("FleetServersFixture is not initialised yet.");
}
