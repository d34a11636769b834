using System.Diagnostics;
using System.Text.RegularExpressions;
using Fleet.Client;
using YamlDotNet.RepresentationModel;

namespace Fleet.UnitTests.Deployment;

/// <summary>
/// docker-compose.yml against the code and the Dockerfiles. No Docker engine runs here: Debian's docker-compose
/// validates the file (<c>config -q</c>), and these tests check what it cannot know.
/// </summary>
public sealed partial class ComposeTests
{
    private const string File = "docker-compose.yml";

    private static readonly YamlMappingNode Compose = DeploymentFiles.LoadYaml(File).Single();

    /// <summary>What a .env would set: the secrets compose requires (<c>${X:?...}</c>), with values that validate.</summary>
    private static readonly Dictionary<string, string> Secrets = new(StringComparer.Ordinal)
    {
        ["FLEET_PG_ADMIN_PASSWORD"] = "adminpass0123456789",
        ["FLEET_PG_PASSWORD"] = "fleetpass0123456789",
        ["FLEET_PG_READONLY_PASSWORD"] = "readonlypass0123456789",
        ["FLEET_AMQP_PASSWORD"] = "amqppass0123456789",
        ["FLEET_PG_WORKER_PASSWORD"] = "workerpass0123456789",
        ["FLEET_PG_API_PASSWORD"] = "apipass0123456789",
        ["FLEET_AMQP_WORKER_PASSWORD"] = "amqpworkerpass0123456789",
        ["FLEET_AMQP_API_PASSWORD"] = "amqpapipass0123456789",
        ["FLEET_AMQP_PRODUCER_PASSWORD"] = "amqpproducerpass0123456789",
        ["FLEET_API_KEY"] = "fleet_test_api_key_0123456789",
        ["FLEET_API_READ_KEY"] = "fleet_test_read_key_0123456789",
        ["FLEET_API_ADMIN_KEY"] = "fleet_test_admin_key_0123456789",
    };

    [Fact]
    public async Task DockerCompose_AcceptsTheFile_WithTheSecretsSet()
    {
        var (exitCode, output) = await ComposeConfigAsync(Secrets);

        Assert.True(exitCode == 0, $"docker-compose config -q exited {exitCode}: {output}");
    }

    [Theory]
    [InlineData("FLEET_PG_PASSWORD")]
    [InlineData("FLEET_AMQP_PASSWORD")]
    [InlineData("FLEET_API_KEY")]
    [InlineData("FLEET_API_READ_KEY")]
    [InlineData("FLEET_API_ADMIN_KEY")]
    [InlineData("FLEET_PG_ADMIN_PASSWORD")]
    [InlineData("FLEET_PG_WORKER_PASSWORD")]
    [InlineData("FLEET_PG_API_PASSWORD")]
    [InlineData("FLEET_AMQP_WORKER_PASSWORD")]
    [InlineData("FLEET_AMQP_API_PASSWORD")]
    [InlineData("FLEET_AMQP_PRODUCER_PASSWORD")]
    public async Task DockerCompose_RefusesToStart_WithoutASecret_NamingIt(string missing)
    {
        var (exitCode, output) = await ComposeConfigAsync(Secrets.Where(s => s.Key != missing).ToDictionary());

        Assert.NotEqual(0, exitCode);
        Assert.Contains($"set {missing} in .env", output, StringComparison.Ordinal);
    }

    /// <summary>
    /// <c>docker-compose config -q</c> with exactly <paramref name="variables"/> for the file's variables: an empty
    /// env file, so that a developer's own .env does not count, and the secrets removed from the inherited environment.
    /// </summary>
    private static async Task<(int ExitCode, string Output)> ComposeConfigAsync(IReadOnlyDictionary<string, string> variables)
    {
        // infra/local/install.sh installs Debian's docker-compose (1.29), as `make test` runs it first.
        var emptyEnvFile = Path.GetTempFileName();
        try
        {
            var start = new ProcessStartInfo("docker-compose", ["-f", File, "--env-file", emptyEnvFile, "config", "-q"])
            {
                WorkingDirectory = DeploymentFiles.Root,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (var name in Secrets.Keys)
            {
                start.Environment.Remove(name);
            }

            foreach (var (name, value) in variables)
            {
                start.Environment[name] = value;
            }

            Process process;
            try
            {
                process = Process.Start(start)!;
            }
            catch (System.ComponentModel.Win32Exception ex)
            {
                throw new Xunit.Sdk.XunitException($"docker-compose is not installed ({ex.Message}); run infra/local/install.sh");
            }

            using (process)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
                var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
                await process.WaitForExitAsync(timeout.Token);
                return (process.ExitCode, await stderr + await stdout);
            }
        }
        finally
        {
            System.IO.File.Delete(emptyEnvFile);
        }
    }

    [Theory]
    [InlineData("postgres", @"^postgres:15\.\d+$")]
    [InlineData("rabbitmq", @"^rabbitmq:3\.\d+\.\d+-management$")]
    public void TheServers_ArePinned_AndHaveHealthChecks(string service, string image)
    {
        Assert.Matches(image, Service(service).Text("image"));
        Assert.NotEmpty(Service(service).Items("healthcheck", "test"));
    }

    [Fact]
    public void RabbitMq_LoadsFleetsConfiguration_ThenTheContainerLogging()
    {
        var mounts = BindMounts("rabbitmq");

        Assert.Equal("/etc/rabbitmq/conf.d/20-fleet.conf", mounts["infra/rabbitmq/rabbitmq.conf"]);
        Assert.Equal("/etc/rabbitmq/conf.d/90-container.conf", mounts["infra/rabbitmq/container.conf"]);
        Assert.Contains("consumer_timeout", DeploymentFiles.Read("infra/rabbitmq/rabbitmq.conf"), StringComparison.Ordinal);
    }

    [Fact]
    public void Postgres_RunsTheBootstrap_WithThePasswordsItsInitScriptRequires()
    {
        var mounts = BindMounts("postgres");
        Assert.Equal("/fleet/bootstrap.sql", mounts["infra/postgres/bootstrap.sql"]);
        Assert.Equal("/docker-entrypoint-initdb.d", mounts["infra/postgres/initdb"]);

        var environment = EnvironmentOf("postgres");
        var required = RequiredVariable().Matches(DeploymentFiles.Read("infra/postgres/initdb/10-fleet-roles.sh")).Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(required);
        Assert.All(required, variable => Assert.False(string.IsNullOrEmpty(environment.GetValueOrDefault(variable)), $"postgres: {variable} is not set"));
    }

    [Theory]
    [InlineData("api")]
    [InlineData("worker")]
    [InlineData("migrator")]
    public void EveryApp_IsBuiltFromItsDockerfile_WithTheRepositoryAsContext(string name)
    {
        var app = FleetApp.Named(name);
        var service = Service(app.ComposeService);

        Assert.Equal(".", service.Text("build", "context"));
        Assert.Equal(app.Dockerfile, service.Text("build", "dockerfile"));
        Assert.Equal(app.Image, Interpolate(service.Text("image")!).Split(':')[0]);
    }

    [Theory]
    [InlineData("api")]
    [InlineData("worker")]
    public void ApiAndWorkers_StartAfterTheMigratorSucceeded_AndTheServersAreHealthy(string name)
    {
        var dependsOn = Service(name).Map("depends_on");

        Assert.Equal("service_completed_successfully", dependsOn.Text("migrator", "condition"));
        Assert.Equal("service_healthy", dependsOn.Text("postgres", "condition"));
        Assert.Equal("service_healthy", dependsOn.Text("rabbitmq", "condition"));
    }

    [Fact]
    public void TheMigrator_WaitsForAHealthyDatabase_AndRunsOnce()
    {
        var migrator = Service("migrator");

        Assert.Equal("service_healthy", migrator.Text("depends_on", "postgres", "condition"));
        Assert.Equal("no", migrator.Text("restart"));
        Assert.Equal("migrate", migrator.Items("command").Cast<YamlScalarNode>().First().Value);
    }

    [Fact]
    public void Workers_Scale_WithoutContainerNamesOrHostPorts_AndGetTimeToDrain()
    {
        var worker = Service("worker");

        // No service pins its container name: `--scale` needs it on workers, and a pinned name on any service
        // also makes two checkouts of the project on one engine collide.
        Assert.All(Compose.Map("services").Children, s => Assert.Null(s.Value.Get("container_name")));
        Assert.Null(worker.Get("ports"));
        Assert.Null(worker.Get("hostname"));

        // Docker's default stop timeout (10 s) would kill a draining worker; the host stops within ShutdownTimeout.
        var (options, shutdown) = AppEnvironment.Worker(EnvironmentOf("worker"), "compose worker");
        var grace = Duration(worker.Text("stop_grace_period")!);
        Assert.True(grace > shutdown, $"stop_grace_period {grace} must exceed the worker's shutdown timeout {shutdown} (DrainSeconds {options.DrainSeconds} + 15 s)");
    }

    [Fact]
    public void TheApi_IsPublishedOnLoopback_OnThePortItListensOn()
    {
        var port = FleetApp.Api.ListenPort(EnvironmentOf("api"));

        var mapping = Interpolate(Assert.Single(Service("api").Items("ports")).ToString());
        Assert.Matches($@"^127\.0\.0\.1:\d+:{port}$", mapping);
        Assert.All(Compose.Map("services").Children.Values.SelectMany(s => s.Items("ports")), p => Assert.StartsWith("127.0.0.1:", Interpolate(p.ToString()), StringComparison.Ordinal));
    }

    [Fact]
    public void TheAppsSettings_AreRealSettings_AndValidate()
    {
        var worker = AppEnvironment.Worker(EnvironmentOf("worker"), "compose worker").Worker;
        var api = AppEnvironment.Api(EnvironmentOf("api"), "compose api");
        var migrator = AppEnvironment.Migrator(EnvironmentOf("migrator"), "compose migrator");

        Assert.True(worker.CpuConcurrency >= 1);
        Assert.NotEmpty(api.ApiKeys);

        // Reads need a key, and there is a key for each scope: read-only, read-write, admin.
        Assert.True(api.ReadsRequireKey);
        Assert.NotEmpty(api.ReadKeys);
        Assert.NotEmpty(api.AdminKeys);
        Assert.Equal("fleet", migrator.Database);
    }

    /// <summary>Each app logs in as its own component: the migrator as the owner, the API and the workers with their own role and user.</summary>
    [Theory]
    [InlineData("api", "fleet_api", "FLEET_PG_API_PASSWORD", "FLEET_AMQP_API_PASSWORD")]
    [InlineData("worker", "fleet_worker", "FLEET_PG_WORKER_PASSWORD", "FLEET_AMQP_WORKER_PASSWORD")]
    [InlineData("migrator", "fleet", "FLEET_PG_PASSWORD", null)]
    public void TheConnectionStrings_PointAtTheComposeServers_WithTheComponentsOwnCredentials(string name, string login, string pgPassword, string? amqpPassword)
    {
        var environment = EnvironmentOf(name);
        var postgres = EnvironmentOf("postgres");
        var rabbitmq = EnvironmentOf("rabbitmq");

        var database = new Npgsql.NpgsqlConnectionStringBuilder(environment["ConnectionStrings__fleetdb"]);
        Assert.Equal(("postgres", 5432, "fleet", login, postgres[pgPassword]), (database.Host, database.Port, database.Database, database.Username, database.Password));
        if (amqpPassword is null)
        {
            Assert.False(environment.ContainsKey("ConnectionStrings__rabbitmq"));
            return;
        }

        var broker = RabbitMqAddress.Parse(environment["ConnectionStrings__rabbitmq"]);
        Assert.Equal(("rabbitmq", 5672, "fleet", login, rabbitmq[amqpPassword]), (broker.Host, broker.Port, broker.VirtualHost, broker.UserName, broker.Password));
    }

    /// <summary>
    /// The broker refuses a declare whose arguments differ from the queue's, so the broker's definitions (rendered by the
    /// rabbitmq service's entrypoint from FLEET_QUEUE_TYPE), the API and the workers take the type from one variable.
    /// </summary>
    [Fact]
    public void TheLanes_AreQuorumQueues_ForTheBrokerTheApiAndTheWorkers_FromOneVariable()
    {
        const string OneVariable = "${FLEET_QUEUE_TYPE:-quorum}";
        Assert.Equal(OneVariable, Service("rabbitmq").Map("environment").Scalars()["FLEET_QUEUE_TYPE"]);
        Assert.Contains("render-definitions.sh", Service("rabbitmq").Items("entrypoint").Last().ToString(), StringComparison.Ordinal);
        foreach (var app in new[] { "api", "worker" })
        {
            Assert.Equal(OneVariable, Service(app).Map("environment").Scalars()["RabbitMq__QueueType"]);
            Assert.Equal(BrokerQueueType.Quorum, AppEnvironment.QueueType(EnvironmentOf(app)));
        }

        // The migrator only touches PostgreSQL: it declares no queue and reads no queue type.
        Assert.DoesNotContain("RabbitMq__QueueType", EnvironmentOf("migrator").Keys);
    }

    /// <summary>The broker's definitions declare the worker groups' queues of FLEET_QUEUES (none unless set).</summary>
    [Fact]
    public void TheBroker_DeclaresTheWorkerGroupsOfFleetQueues()
    {
        Assert.Equal("${FLEET_QUEUES:-}", Service("rabbitmq").Map("environment").Scalars()["FLEET_QUEUES"]);
        Assert.Equal("", EnvironmentOf("rabbitmq")["FLEET_QUEUES"]);
    }

    [Fact]
    public void EverySecret_ComesFromAVariable_NeverFromTheFileAlone()
    {
        foreach (var (service, environment) in Compose.Map("services").Children.Select(s => (s.Key.ToString(), s.Value.Get("environment") as YamlMappingNode)))
        {
            foreach (var (key, raw) in environment?.Scalars() ?? [])
            {
                var secret = key.Contains("PASS", StringComparison.Ordinal) || key.Contains("Keys__", StringComparison.Ordinal);
                if (secret)
                {
                    Assert.Matches(@"^\$\{[A-Z_]+:\?[^}]+\}$", raw); // required: no default anyone could know
                }

                if (key.StartsWith("ConnectionStrings__", StringComparison.Ordinal))
                {
                    Assert.Matches(@"(Password=|:)\$\{FLEET_[A-Z_]+PASSWORD:\?[^}]+\}", raw);
                }
            }
        }
    }

    private static YamlMappingNode Service(string name) => Compose.Map("services", name);

    /// <summary>A service's environment as compose interpolates it (<see cref="Interpolate"/>).</summary>
    private static Dictionary<string, string> EnvironmentOf(string service) =>
        Service(service).Map("environment").Scalars().ToDictionary(e => e.Key, e => Interpolate(e.Value), StringComparer.Ordinal);

    /// <summary>Host path (repository-relative) to container path, for the <c>./x:/y[:ro]</c> volumes; every host path must exist.</summary>
    private static Dictionary<string, string> BindMounts(string service)
    {
        var mounts = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var volume in Service(service).Items("volumes").Select(v => v.ToString()).Where(v => v.StartsWith("./", StringComparison.Ordinal)))
        {
            var parts = volume.Split(':');
            var host = parts[0][2..];
            Assert.True(DeploymentFiles.Exists(host), $"{service}: {host} does not exist");
            mounts[host] = parts[1];
        }

        return mounts;
    }

    /// <summary>Compose's interpolation: a default for <c>${X:-default}</c>, the test's <see cref="Secrets"/> for a required <c>${X:?...}</c>.</summary>
    private static string Interpolate(string value) =>
        Variable().Replace(value, m => m.Groups["default"].Success ? m.Groups["default"].Value : Secrets.GetValueOrDefault(m.Groups["name"].Value, ""));

    private static TimeSpan Duration(string value)
    {
        var match = Regex.Match(value, @"^(\d+)(s|m)$");
        Assert.True(match.Success, $"unexpected duration '{value}'");
        var number = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        return match.Groups[2].Value == "m" ? TimeSpan.FromMinutes(number) : TimeSpan.FromSeconds(number);
    }

    [GeneratedRegex(@"\$\{(?<name>[A-Za-z_][A-Za-z0-9_]*)(:-(?<default>[^}]*)|:\?[^}]*)?\}")]
    private static partial Regex Variable();

    // `: "${NAME:?...}"` in a shell script: a variable it refuses to run without.
    [GeneratedRegex(@"\$\{([A-Z_]+):\?")]
    private static partial Regex RequiredVariable();
}
