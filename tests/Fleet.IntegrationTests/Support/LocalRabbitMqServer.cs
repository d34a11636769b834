using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// A private RabbitMQ node for one test run, started from the installed server with its own node name, ports
/// (AMQP, management, distribution and a private epmd), cookie, data and logs in the run's temp dir, all on 127.0.0.1.
/// The vhost <c>fleet</c> and the administrator user <c>fleet</c> come from a definitions file loaded at boot,
/// so they exist before the AMQP listener opens and no rabbitmqctl call is needed; the node has no guest user.
/// With an <see cref="ExtraListenAddress"/> the AMQP listener opens on that address too (same port).
/// </summary>
internal sealed class LocalRabbitMqServer : IOwnedServer
{
    public const string User = "fleet";
    public const string VirtualHost = "fleet";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(30);

    private readonly string _serverScript;
    private readonly string _epmd;
    private readonly string _directory;
    private readonly string _pidFile;
    private readonly string _launchLog;
    private readonly FixtureLog _log;
    private readonly string _password;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ExtraListenAddress? _alsoListenOn;

    public LocalRabbitMqServer(string serverScript, string epmd, string workDirectory, FixtureLog log, ExtraListenAddress? alsoListenOn = null)
    {
        _alsoListenOn = alsoListenOn;
        _serverScript = serverScript;
        _epmd = epmd;
        _directory = Path.Combine(workDirectory, "rabbitmq");
        _pidFile = Path.Combine(_directory, "rabbitmq.pid");
        _launchLog = Path.Combine(_directory, "launch.log");
        _log = log;
        _password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        NodeName = "fleettest" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)) + "@localhost";
        ChoosePorts();
    }

    public string Name => "RabbitMQ";

    public string NodeName { get; }

    public int AmqpPort { get; private set; }

    public int ManagementPort { get; private set; }

    public int DistributionPort { get; private set; }

    public int EpmdPort { get; private set; }

    public string Directory => _directory;

    public string EpmdPath => _epmd;

    private string NodeLog => Path.Combine(_directory, "log", NodeName + ".log");

    public Uri AmqpUri => new($"amqp://{User}:{_password}@127.0.0.1:{AmqpPort.ToString(CultureInfo.InvariantCulture)}/{VirtualHost}");

    public Uri ManagementUri => new($"http://{User}:{_password}@127.0.0.1:{ManagementPort.ToString(CultureInfo.InvariantCulture)}/");

    /// <summary>/usr/lib/rabbitmq/bin/rabbitmq-server (or FLEET_TEST_RABBITMQ_SERVER), not the /usr/sbin wrapper that su's to user rabbitmq.</summary>
    public static string? FindServerScript()
    {
        var overridden = Environment.GetEnvironmentVariable("FLEET_TEST_RABBITMQ_SERVER");
        if (!string.IsNullOrWhiteSpace(overridden))
        {
            return File.Exists(overridden) ? overridden : null;
        }

        const string script = "/usr/lib/rabbitmq/bin/rabbitmq-server";
        return File.Exists(script) ? script : null;
    }

    /// <summary>epmd from PATH or from the Erlang runtime, or null.</summary>
    public static string? FindEpmd()
    {
        var onPath = ProcessTools.FindOnPath("epmd");
        if (onPath is not null)
        {
            return onPath;
        }

        const string erlang = "/usr/lib/erlang";
        return System.IO.Directory.Exists(erlang)
            ? System.IO.Directory.EnumerateFiles(erlang, "epmd", SearchOption.AllDirectories).FirstOrDefault()
            : null;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            for (var attempt = 1; ; attempt++)
            {
                WriteFiles();
                try
                {
                    await LaunchAndWaitAsync(cancellationToken).ConfigureAwait(false);
                    return;
                }
                catch (InvalidOperationException) when (attempt < 3 && LogsMention("eaddrinuse"))
                {
                    // A port picked as free was taken before the node bound it: clean up and try fresh ports.
                    _log.Info($"RabbitMQ: a port was taken meanwhile (eaddrinuse), attempt {attempt}; retrying with new ports");
                    await AbandonAttemptAsync().ConfigureAwait(false);
                    ChoosePorts();
                }
            }
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
            var pid = NodePid() ?? throw new InvalidOperationException("RabbitMQ is not running.");

            // SIGTERM is RabbitMQ's graceful shutdown (same as `rabbitmqctl stop`, without booting a CLI node).
            await ProcessTools.SignalAsync(pid, "TERM").ConfigureAwait(false);
            if (!await ProcessTools.WaitGoneAsync(pid, StopTimeout, zombieCounts: false).ConfigureAwait(false))
            {
                _log.Info($"RabbitMQ {pid} still running {StopTimeout.TotalSeconds:0} s after SIGTERM; killing it");
                ProcessTools.KillHardWithChildren(pid);
                await ProcessTools.WaitGoneAsync(pid, TimeSpan.FromSeconds(10), zombieCounts: false).ConfigureAwait(false);
            }
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
            var pid = NodePid() ?? throw new InvalidOperationException("RabbitMQ is not running.");
            ProcessTools.KillHardWithChildren(pid);
            if (!await ProcessTools.WaitGoneAsync(pid, TimeSpan.FromSeconds(10), zombieCounts: false).ConfigureAwait(false))
            {
                throw new InvalidOperationException($"RabbitMQ node {pid} survived SIGKILL for 10 s.");
            }
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
            if (NodePid() is { } pid)
            {
                throw new InvalidOperationException($"RabbitMQ is already running (pid {pid}): stop or kill it first.");
            }

            await LaunchAndWaitAsync(cancellationToken).ConfigureAwait(false);
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
            if (NodePid() is { } pid)
            {
                if (Environment.GetEnvironmentVariable("FLEET_TEST_KEEP") == "1")
                {
                    // Kept for inspection: a graceful stop flushes the logs.
                    await ProcessTools.SignalAsync(pid, "TERM").ConfigureAwait(false);
                    await ProcessTools.WaitGoneAsync(pid, StopTimeout, zombieCounts: false).ConfigureAwait(false);
                }

                // The data is thrown away, so a graceful stop (about 5 s: the management plugin's stats shutdown) buys nothing.
                if (ProcessTools.IsOurs(pid, _directory))
                {
                    ProcessTools.KillHardWithChildren(pid);
                    await ProcessTools.WaitGoneAsync(pid, TimeSpan.FromSeconds(10), zombieCounts: false).ConfigureAwait(false);
                }
            }

            await StopEpmdAsync().ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    public void EmergencyStop()
    {
        if (NodePid() is { } pid)
        {
            ProcessTools.KillHardWithChildren(pid);
        }

        ProcessTools.RunQuietly("/bin/sh", ["-c", EpmdKillLoop, _epmd, EpmdPort.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(6), NodeEnvironment());
    }

    /// <summary>Retries `epmd -kill` while epmd still lists the node it has not yet seen die ("Killing not allowed - living nodes").</summary>
    private const string EpmdKillLoop =
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do " +
        "out=$(\"$0\" -port \"$1\" -kill 2>&1); case \"$out\" in *living*) sleep 0.25;; *) exit 0;; esac; done";

    /// <summary>Stops this node's private epmd (the node must be down: epmd refuses while it lists a living node).</summary>
    private async Task StopEpmdAsync()
    {
        var port = EpmdPort.ToString(CultureInfo.InvariantCulture);
        var stopwatch = Stopwatch.StartNew();
        while (true)
        {
            var result = await ProcessTools.RunAsync(_epmd, ["-port", port, "-kill"], TimeSpan.FromSeconds(10), NodeEnvironment()).ConfigureAwait(false);
            if (!result.Output.Contains("living nodes", StringComparison.Ordinal))
            {
                return; // "Killed", or "Cannot connect": not running
            }

            if (stopwatch.Elapsed > TimeSpan.FromSeconds(5))
            {
                _log.Info($"epmd on port {port} still lists a node after 5 s; left running: {result.Output}");
                return;
            }

            await Task.Delay(200).ConfigureAwait(false);
        }
    }

    /// <summary>The live node's pid from its pid file, checked against its command line (which names our directory).</summary>
    public int? NodePid()
    {
        var pid = ProcessTools.ReadPidFile(_pidFile);
        return pid is { } value && ProcessTools.IsOurs(value, _directory) ? value : null;
    }

    private void ChoosePorts()
    {
        AmqpPort = ProcessTools.GetFreeLoopbackPort();
        ManagementPort = ProcessTools.GetFreeLoopbackPort();
        DistributionPort = ProcessTools.GetFreeLoopbackPort(); // the default (AMQP port + 20000) collides with other nodes
        EpmdPort = ProcessTools.GetFreeLoopbackPort();
    }

    private Dictionary<string, string> NodeEnvironment()
    {
        var environment = BaseEnvironment();
        if (_alsoListenOn is null)
        {
            environment["RABBITMQ_NODE_IP_ADDRESS"] = "127.0.0.1";
            environment["RABBITMQ_NODE_PORT"] = AmqpPort.ToString(CultureInfo.InvariantCulture);
        }

        return environment;
    }

    private Dictionary<string, string> BaseEnvironment() => new()
    {
        ["HOME"] = Path.Combine(_directory, "home"), // the Erlang cookie lives here, not in the real HOME
        ["RABBITMQ_NODENAME"] = NodeName,
        ["RABBITMQ_DIST_PORT"] = DistributionPort.ToString(CultureInfo.InvariantCulture),
        ["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = "-kernel inet_dist_use_interface {127,0,0,1}",
        ["ERL_EPMD_PORT"] = EpmdPort.ToString(CultureInfo.InvariantCulture), // own epmd: ours to stop, no clash with a system node
        ["ERL_EPMD_ADDRESS"] = "127.0.0.1",
        ["ERL_CRASH_DUMP"] = Path.Combine(_directory, "erl_crash.dump"),
        ["RABBITMQ_MNESIA_BASE"] = Path.Combine(_directory, "mnesia"),
        ["RABBITMQ_LOG_BASE"] = Path.Combine(_directory, "log"),
        ["RABBITMQ_ENABLED_PLUGINS_FILE"] = Path.Combine(_directory, "enabled_plugins"),
        ["RABBITMQ_CONFIG_FILE"] = Path.Combine(_directory, "rabbitmq"), // without .conf
        ["RABBITMQ_ADVANCED_CONFIG_FILE"] = Path.Combine(_directory, "advanced.config"), // absent: ignore /etc/rabbitmq's
        ["RABBITMQ_CONF_ENV_FILE"] = Path.Combine(_directory, "rabbitmq-env.conf"), // empty: ignore /etc/rabbitmq's
        ["RABBITMQ_PID_FILE"] = _pidFile,
    };

    private void WriteFiles()
    {
        foreach (var name in new[] { "home", "mnesia", "log" })
        {
            System.IO.Directory.CreateDirectory(Path.Combine(_directory, name));
        }

        File.WriteAllText(Path.Combine(_directory, "epmd.port"), EpmdPort.ToString(CultureInfo.InvariantCulture)); // for the watchdog
        File.WriteAllText(Path.Combine(_directory, "enabled_plugins"), "[rabbitmq_management].\n");
        File.WriteAllText(Path.Combine(_directory, "rabbitmq-env.conf"), "# empty on purpose: every setting comes from the environment\n");
        var definitions = Path.Combine(_directory, "definitions.json");
        File.WriteAllText(definitions, Definitions().ToJsonString());

        // Without an extra address no listeners.tcp here: RABBITMQ_NODE_IP_ADDRESS/PORT set it, and both together
        // bind twice (eaddrinuse). With one, the two listeners come from here and those variables are not set.
        var port = AmqpPort.ToString(CultureInfo.InvariantCulture);
        string[] listeners = _alsoListenOn is { } extra ? [$"listeners.tcp.1 = 127.0.0.1:{port}", $"listeners.tcp.2 = {extra.Address}:{port}"] : [];
        File.WriteAllText(
            Path.Combine(_directory, "rabbitmq.conf"),
            string.Join(
                '\n',
                [
                    $"management.tcp.port = {ManagementPort.ToString(CultureInfo.InvariantCulture)}",
                    "management.tcp.ip = 127.0.0.1",
                    $"load_definitions = {definitions}",
                    "log.console = false",
                    .. listeners,
                    string.Empty,
                ]));
    }

    private JsonObject Definitions()
    {
        // rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password)) with a 4-byte salt.
        var salt = RandomNumberGenerator.GetBytes(4);
        var hash = SHA256.HashData([.. salt, .. Encoding.UTF8.GetBytes(_password)]);
        var everything = new JsonObject { ["configure"] = ".*", ["write"] = ".*", ["read"] = ".*" };
        JsonObject Permission(string vhost)
        {
            var permission = (JsonObject)everything.DeepClone();
            permission["user"] = User;
            permission["vhost"] = vhost;
            return permission;
        }

        return new JsonObject
        {
            ["users"] = new JsonArray(new JsonObject
            {
                ["name"] = User,
                ["password_hash"] = Convert.ToBase64String([.. salt, .. hash]),
                ["hashing_algorithm"] = "rabbit_password_hashing_sha256",
                ["tags"] = new JsonArray("administrator"),
            }),
            ["vhosts"] = new JsonArray(new JsonObject { ["name"] = VirtualHost }, new JsonObject { ["name"] = "/" }),
            ["permissions"] = new JsonArray(Permission(VirtualHost), Permission("/")),
        };
    }

    private async Task LaunchAndWaitAsync(CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        File.Delete(_pidFile);

        // -detached daemonizes; its output goes to a file so no daemon keeps our pipes open.
        var launch = await ProcessTools.RunAsync(
                "/bin/sh",
                ["-c", "exec \"$0\" -detached </dev/null >>\"$1\" 2>&1", _serverScript, _launchLog],
                TimeSpan.FromSeconds(60),
                NodeEnvironment(),
                _directory,
                cancellationToken)
            .ConfigureAwait(false);
        if (launch.ExitCode != 0)
        {
            throw StartFailure($"{_serverScript} -detached exited with {launch.ExitCode}");
        }

        // `rabbitmqctl await_startup` fails when called before the node registers: poll the AMQP port instead,
        // checking before each try that the node is still alive (a node that lost a port race dies with eaddrinuse).
        void EnsureNodeAlive()
        {
            var pid = ProcessTools.ReadPidFile(_pidFile);
            if (pid is { } started && !ProcessTools.IsAlive(started))
            {
                throw StartFailure($"RabbitMQ node {started} died during boot");
            }

            if (pid is null && stopwatch.Elapsed > TimeSpan.FromSeconds(5) && ProcessTools.FindByCommandLine(_directory, "beam").Count == 0)
            {
                throw StartFailure("RabbitMQ node died during boot (no beam process left)");
            }

            if (stopwatch.Elapsed > StartTimeout)
            {
                throw StartFailure($"RabbitMQ did not serve on 127.0.0.1:{AmqpPort} within {StartTimeout.TotalSeconds:0} s");
            }
        }

        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            EnsureNodeAlive();
            if (await ProcessTools.CanConnectAsync(AmqpPort, TimeSpan.FromSeconds(1)).ConfigureAwait(false))
            {
                break;
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }

        try
        {
            await Readiness.WaitForAmqpAsync(AmqpUri, StartTimeout - stopwatch.Elapsed, cancellationToken, EnsureNodeAlive).ConfigureAwait(false);
            await Readiness.WaitForManagementAsync(ManagementUri, StartTimeout - stopwatch.Elapsed, cancellationToken, EnsureNodeAlive).ConfigureAwait(false);
        }
        catch (TimeoutException exception)
        {
            throw StartFailure(exception.Message);
        }
    }

    private bool LogsMention(string text) =>
        new[] { NodeLog, _launchLog }.Any(file =>
        {
            try
            {
                return File.Exists(file) && File.ReadAllText(file).Contains(text, StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false;
            }
        });

    private async Task AbandonAttemptAsync()
    {
        foreach (var pid in ProcessTools.FindByCommandLine(_directory, "beam"))
        {
            ProcessTools.KillHardWithChildren(pid);
            await ProcessTools.WaitGoneAsync(pid, TimeSpan.FromSeconds(10), zombieCounts: false).ConfigureAwait(false);
        }

        await StopEpmdAsync().ConfigureAwait(false);
        foreach (var name in new[] { "mnesia", "log" })
        {
            System.IO.Directory.Delete(Path.Combine(_directory, name), recursive: true);
        }

        File.Delete(_launchLog);
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

    private InvalidOperationException StartFailure(string what)
    {
        var nodeLog = NodeLog;
        return new InvalidOperationException(
            $"{what}.{Environment.NewLine}--- {_launchLog} ---{Environment.NewLine}{ProcessTools.Tail(_launchLog)}" +
            $"{Environment.NewLine}--- {nodeLog} ---{Environment.NewLine}{ProcessTools.Tail(nodeLog, 40)}");
    }
}
