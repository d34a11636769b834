using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// One test run's private PostgreSQL and RabbitMQ, run by <c>infra/local/services.sh</c> (the same script as
/// <c>make up</c>) in a folder of the run's own, with ports picked here, a node name of its own, its own epmd,
/// and <c>FLEET_THROWAWAY=1</c> (no fsync, a superuser login, an administrator on the broker). This class only
/// calls the script and reads back the <c>env</c> file it writes.
/// </summary>
internal sealed class LocalServers
{
    public const string DatabaseName = "fleet_test";
    public const string VirtualHost = "fleet";
    public const string User = "fleet";

    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(3);
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(90);

    // The fixed ports of the other local fleets (make up, the CI demo, fleet-sim: 55432, 55600.., 55700..) sit in
    // the range the system hands out; never take one of them, or a later `make up` would find it busy.
    private static readonly (int From, int To) FleetPostgresPorts = (55400, 55999);

    private readonly Dictionary<string, string> _environment;
    private readonly FixtureLog _log;
    private readonly ExtraListenAddress? _alsoListenOn;

    public LocalServers(string home, string postgresBin, FixtureLog log, ExtraListenAddress? alsoListenOn, IReadOnlyDictionary<string, string>? scriptSettings = null)
    {
        Home = home;
        _log = log;
        _alsoListenOn = alsoListenOn;

        // A developer's shell may hold FLEET_* settings of their own fleet (ports, passwords): none may reach the script.
        _environment = Environment.GetEnvironmentVariables().Keys.OfType<string>()
            .Where(key => key.StartsWith("FLEET_", StringComparison.Ordinal))
            .ToDictionary(key => key, _ => string.Empty);
        _environment["FLEET_HOME"] = home;
        _environment["FLEET_SKIP_INSTALL"] = "1";
        _environment["FLEET_THROWAWAY"] = "1";
        _environment["FLEET_PG_BIN"] = postgresBin;
        _environment["FLEET_RABBITMQ_NODE"] = "fleettest" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)) + "@localhost";

        // The broker's definitions declare the lanes with the type every component of the run declares them with.
        _environment["FLEET_QUEUE_TYPE"] = Fleet.Client.QueueTopology.DefaultQueueType.ToString().ToLowerInvariant();

        // And one worker group's queue, as an operator declares it (WorkerGroupTests).
        _environment["FLEET_QUEUES"] = "reports=cpu";
        if (alsoListenOn is { } extra)
        {
            _environment["FLEET_LISTEN_EXTRA"] = $"{extra.Address}/{extra.Clients.PrefixLength.ToString(CultureInfo.InvariantCulture)}";
        }

        foreach (var (key, value) in scriptSettings ?? new Dictionary<string, string>())
        {
            _environment[key] = value;
        }

        ChoosePorts();
        Postgres = new Server(this, "postgresql", "PostgreSQL");
        RabbitMq = new Server(this, "rabbitmq", "RabbitMQ");
    }

    public static string Script => Repository.PathTo("infra", "local", "services.sh");

    /// <summary>The script's FLEET_HOME: settings, secrets, env, logs and data.</summary>
    public string Home { get; }

    public IOwnedServer Postgres { get; }

    public IOwnedServer RabbitMq { get; }

    public string NodeName => _environment["FLEET_RABBITMQ_NODE"];

    public string PostgresConnectionString { get; private set; } = "";

    public Uri AmqpUri { get; private set; } = null!;

    public Uri ManagementUri { get; private set; } = null!;

    /// <summary>The components' own logins, as <c>services.sh</c> created them (the <c>env</c> file's per-component variables).</summary>
    public ComponentLogins Logins { get; private set; } = null!;

    /// <summary>Ports and node as the log line shows them.</summary>
    public string Describe() =>
        $"PostgreSQL on 127.0.0.1:{_environment["FLEET_PG_PORT"]}, RabbitMQ node {NodeName} on 127.0.0.1:{_environment["FLEET_AMQP_PORT"]} (AMQP), " +
        $"{_environment["FLEET_AMQP_MGMT_PORT"]} (management), {_environment["FLEET_AMQP_DIST_PORT"]} (distribution), {_environment["FLEET_EPMD_PORT"]} (own epmd)" +
        (_alsoListenOn is null ? "" : $", also listening on {_alsoListenOn.Address}");

    /// <summary>Starts both servers (one script call: RabbitMQ boots while PostgreSQL starts) and creates the test database.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var result = await RunAsync(["start"], cancellationToken).ConfigureAwait(false);
            if (result.ExitCode == 0)
            {
                break;
            }

            // A port picked as free was taken before the server bound it: clean up and try fresh ports.
            var portTaken = result.Output.Contains("in use", StringComparison.Ordinal) || result.Output.Contains("eaddrinuse", StringComparison.Ordinal);
            if (attempt >= 3 || !portTaken)
            {
                throw Failure("start", result);
            }

            _log.Info($"a port was taken meanwhile, attempt {attempt}; retrying with new ports");
            await RunAsync(["kill"], cancellationToken).ConfigureAwait(false);
            ChoosePorts();
        }

        ReadEnv();
        var admin = new NpgsqlConnectionStringBuilder(PostgresConnectionString) { Database = "postgres", Pooling = false };
        await using (var connection = new NpgsqlConnection(admin.ConnectionString))
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using var command = new NpgsqlCommand($"CREATE DATABASE {DatabaseName}", connection);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await WaitForRabbitMqAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The pid of a running server from <c>services.sh status</c>, or null when it is stopped.</summary>
    public async Task<int?> PidAsync(string server)
    {
        var result = await RunAsync(["status", server], CancellationToken.None).ConfigureAwait(false);
        var words = result.Output.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        var at = Array.IndexOf(words, "pid");
        return result.ExitCode == 0 && at >= 0 && at + 1 < words.Length && int.TryParse(words[at + 1], CultureInfo.InvariantCulture, out var pid) ? pid : null;
    }

    /// <summary>An HttpClient for the management API: base address without credentials, basic auth from the URI's user info.</summary>
    public static HttpClient CreateManagementClient(Uri managementUri)
    {
        var builder = new UriBuilder(managementUri) { UserName = string.Empty, Password = string.Empty };
        var client = new HttpClient { BaseAddress = builder.Uri, Timeout = TimeSpan.FromSeconds(10) };
        if (!string.IsNullOrEmpty(managementUri.UserInfo))
        {
            var credentials = Uri.UnescapeDataString(managementUri.UserInfo);
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(credentials)));
        }

        return client;
    }

    private void ChoosePorts()
    {
        foreach (var name in new[] { "FLEET_PG_PORT", "FLEET_AMQP_PORT", "FLEET_AMQP_DIST_PORT", "FLEET_AMQP_MGMT_PORT", "FLEET_AMQP_PROMETHEUS_PORT", "FLEET_EPMD_PORT" })
        {
            int port;
            do
            {
                port = ProcessTools.GetFreeLoopbackPort();
            }
            while (port >= FleetPostgresPorts.From && port <= FleetPostgresPorts.To);
            _environment[name] = port.ToString(CultureInfo.InvariantCulture);
        }
    }

    /// <summary>Reads the connection settings from the <c>env</c> file the script wrote (lines <c>export KEY='value'</c>).</summary>
    private void ReadEnv()
    {
        var values = new Dictionary<string, string>();
        foreach (var line in File.ReadLines(Path.Combine(Home, "env")))
        {
            const string export = "export ";
            var equals = line.IndexOf('=', StringComparison.Ordinal);
            if (line.StartsWith(export, StringComparison.Ordinal) && equals > export.Length)
            {
                var value = line[(equals + 1)..];
                if (value.Length >= 2 && value[0] == '\'' && value[^1] == '\'')
                {
                    value = value[1..^1].Replace("'\\''", "'", StringComparison.Ordinal);
                }

                values[line[export.Length..equals]] = value;
            }
        }

        string Value(string key) => values.TryGetValue(key, out var value) ? value : throw new InvalidOperationException($"{Home}/env has no {key}.");
        PostgresConnectionString = new NpgsqlConnectionStringBuilder(Value("FLEET_PG_SUPERUSER_CONNECTION")) { Database = DatabaseName }.ConnectionString;
        AmqpUri = new Uri(Value("FLEET_AMQP_URL"));
        ManagementUri = new Uri(Value("FLEET_RABBITMQ_MANAGEMENT_URL"));
        static NpgsqlConnectionStringBuilder Login(string connectionString) => new(connectionString);
        var worker = Login(Value("FLEET_WORKER_PG_CONNECTION"));
        var api = Login(Value("FLEET_API_PG_CONNECTION"));
        var owner = Login(Value("ConnectionStrings__fleetdb"));
        Logins = new ComponentLogins(
            new ComponentLogin(worker.Username!, worker.Password!, new Uri(Value("FLEET_WORKER_AMQP_URL"))),
            new ComponentLogin(api.Username!, api.Password!, new Uri(Value("FLEET_API_AMQP_URL")), new Uri(Value("FLEET_API_RABBITMQ_MANAGEMENT_URL"))),
            new Uri(Value("FLEET_PRODUCER_AMQP_URL")),
            new ComponentLogin(owner.Username!, owner.Password!, AmqpUri, ManagementUri),
            System.Text.RegularExpressions.Regex.Match(Value("FLEET_PG_READONLY_DSN"), "password=([^ ]+)").Groups[1].Value);
    }

    /// <summary>The script returns once the AMQP port answers; the tests also need logins and the management API.</summary>
    private async Task WaitForRabbitMqAsync(CancellationToken cancellationToken)
    {
        try
        {
            await Readiness.WaitForAmqpAsync(AmqpUri, ReadyTimeout, cancellationToken).ConfigureAwait(false);
            await Readiness.WaitForManagementAsync(ManagementUri, ReadyTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException exception)
        {
            var log = Path.Combine(Home, "rabbitmq", "log", NodeName + ".log");
            throw new InvalidOperationException($"{exception.Message}{Environment.NewLine}--- {log} ---{Environment.NewLine}{ProcessTools.Tail(log, 40)}", exception);
        }
    }

    private Task<ProcessTools.CommandResult> RunAsync(string[] arguments, CancellationToken cancellationToken) =>
        ProcessTools.RunAsync(Script, arguments, CommandTimeout, _environment, cancellationToken: cancellationToken);

    private async Task RunCheckedAsync(string[] arguments, CancellationToken cancellationToken)
    {
        var result = await RunAsync(arguments, cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw Failure(string.Join(' ', arguments), result);
        }
    }

    private InvalidOperationException Failure(string command, ProcessTools.CommandResult result) =>
        new($"services.sh {command} (FLEET_HOME={Home}) exited with {result.ExitCode}:{Environment.NewLine}{result.Output}");

    /// <summary>One of the two servers, as the fixture's fault tests stop, kill and start it.</summary>
    private sealed class Server(LocalServers servers, string script, string name) : IOwnedServer
    {
        private readonly SemaphoreSlim _gate = new(1, 1);

        public string Name => name;

        public async Task StartAsync(CancellationToken cancellationToken) => await RestartStoppedAsync(cancellationToken).ConfigureAwait(false);

        public Task StopAsync(CancellationToken cancellationToken) => GatedAsync(() => servers.RunCheckedAsync(["stop", script], cancellationToken), cancellationToken);

        public Task KillAsync(CancellationToken cancellationToken) => GatedAsync(
            async () =>
            {
                if (await servers.PidAsync(script).ConfigureAwait(false) is null)
                {
                    throw new InvalidOperationException($"{name} is not running.");
                }

                await servers.RunCheckedAsync(["kill", script], cancellationToken).ConfigureAwait(false);
            },
            cancellationToken);

        public Task RestartStoppedAsync(CancellationToken cancellationToken) => GatedAsync(
            async () =>
            {
                if (await servers.PidAsync(script).ConfigureAwait(false) is { } pid)
                {
                    throw new InvalidOperationException($"{name} is already running (pid {pid}): stop or kill it first.");
                }

                await servers.RunCheckedAsync(["start", script], cancellationToken).ConfigureAwait(false);
                if (script == "rabbitmq")
                {
                    await servers.WaitForRabbitMqAsync(cancellationToken).ConfigureAwait(false);
                }
            },
            cancellationToken);

        public async ValueTask DisposeAsync()
        {
            // The data is thrown away: a crash is enough (the script also removes PostgreSQL's shared memory). Kept
            // for inspection (FLEET_TEST_KEEP=1), a graceful stop flushes the logs.
            var command = LocalWorkspace.Keep ? "stop" : "kill";
            await GatedAsync(() => servers.RunCheckedAsync([command, script], CancellationToken.None), CancellationToken.None).ConfigureAwait(false);
        }

        public void EmergencyStop() =>
            ProcessTools.RunQuietly(Script, ["kill", script], TimeSpan.FromSeconds(15), servers._environment);

        private async Task GatedAsync(Func<Task> operation, CancellationToken cancellationToken)
        {
            await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await operation().ConfigureAwait(false);
            }
            finally
            {
                _gate.Release();
            }
        }
    }
}
