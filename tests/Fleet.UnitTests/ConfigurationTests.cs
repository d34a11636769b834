using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.Worker;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>Options are bound and validated the way a worker starts; nothing here connects to a server.</summary>
public sealed class ConfigurationTests
{
    [Fact]
    public void WorkerOptions_DefaultToBothQueuesAndTheProcessorCount()
    {
        var options = BuildWorkerOptions([]);

        Assert.Equal(TaskQueues.All, options.Queues);
        Assert.Equal(Environment.ProcessorCount, options.CpuConcurrency);
        Assert.Equal(256, options.IoConcurrency);
    }

    [Fact]
    public void WorkerQueues_FromConfiguration_ReplaceTheDefault()
    {
        var options = BuildWorkerOptions(new() { ["Worker:Queues:0"] = "fleet-cpu", ["Worker:CpuConcurrency"] = "3" });

        Assert.Equal(["fleet-cpu"], options.Queues);
        Assert.Equal(3, options.CpuConcurrency);
    }

    [Theory]
    [InlineData("Worker:CpuConcurrency", "0", "CpuConcurrency")]
    [InlineData("Worker:IoConcurrency", "-1", "IoConcurrency")]
    [InlineData("Worker:DefaultTimeoutSeconds", "7200", "DefaultTimeoutSeconds")]
    [InlineData("Worker:HostName", " ", "HostName")]
    [InlineData("Worker:ConsumerTimeoutSeconds", "600", "ConsumerTimeoutSeconds")]
    [InlineData("Worker:CrashLoopDeaths", "0", "CrashLoopDeaths")]
    [InlineData("Worker:ReconcileAfterSeconds", "0", "ReconcileAfterSeconds")]
    [InlineData("Worker:PauseCheckSeconds", "0", "PauseCheckSeconds")]
    public void InvalidWorkerOptions_FailValidation_NamingTheSetting(string key, string value, string named)
    {
        var ex = Assert.Throws<OptionsValidationException>(() => BuildWorkerOptions(new() { [key] = value }));

        Assert.Contains(named, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheLookaheadWait_IsWhatTheConsumerTimeoutLeavesAfterTheLongestRun()
    {
        var options = BuildWorkerOptions(new() { ["Worker:ConsumerTimeoutSeconds"] = "1800", ["Worker:MaxTimeoutSeconds"] = "1500" });

        Assert.Equal(TimeSpan.FromSeconds(1800 - 1500 - 5 - 60), options.LookaheadWaitLimit);
    }

    [Fact]
    public void AQueueListedTwice_FailsValidation()
    {
        var ex = Assert.Throws<OptionsValidationException>(() =>
            BuildWorkerOptions(new() { ["Worker:Queues:0"] = "fleet-io", ["Worker:Queues:1"] = "fleet-io" }));

        Assert.Contains("twice", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingConnectionString_FailsAtStart_NamingTheEnvironmentVariable()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });

        var ex = Assert.Throws<InvalidOperationException>(() => builder.AddFleetWorker());

        Assert.Contains("ConnectionStrings__rabbitmq", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RabbitMqAddress_ReadsUserPasswordPortAndVhost_AndHidesThePassword()
    {
        var address = RabbitMqAddress.Parse("amqp://fleet:p%40ss%3Aword@127.0.0.1:5673/fleet");

        Assert.Equal(("127.0.0.1", 5673, "fleet", "fleet", "p@ss:word", false),
            (address.Host, address.Port, address.VirtualHost, address.UserName, address.Password, address.UseTls));
        Assert.DoesNotContain("p@ss", address.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("amqp://localhost", "/", 5672, false)]
    [InlineData("amqps://u:p@broker/%2F", "/", 5671, true)]
    [InlineData("amqp://u:p@broker:1234/prod", "prod", 1234, false)]
    public void RabbitMqAddress_AppliesTheUriSpecDefaults(string uri, string vhost, int port, bool tls)
    {
        var address = RabbitMqAddress.Parse(uri);

        Assert.Equal((vhost, port, tls), (address.VirtualHost, address.Port, address.UseTls));
    }

    [Fact]
    public void TlsSettings_ForBothConnections_AreCarriedIntoTheWorker()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:fleetdb"] = "Host=db.internal;Database=fleet;Username=fleet;Password=x;SSL Mode=VerifyFull;Root Certificate=/etc/fleet/ca.pem",
            ["ConnectionStrings:rabbitmq"] = "amqps://fleet:x@mq.internal/fleet",
        });
        builder.AddFleetWorker();
        using var host = builder.Build();

        var database = new Npgsql.NpgsqlConnectionStringBuilder(host.Services.GetRequiredService<Npgsql.NpgsqlDataSource>().ConnectionString);
        var broker = host.Services.GetRequiredService<RabbitMqAddress>();
        Assert.Equal((Npgsql.SslMode.VerifyFull, "/etc/fleet/ca.pem"), (database.SslMode, database.RootCertificate));
        Assert.Equal((true, 5671, "mq.internal"), (broker.UseTls, broker.Port, broker.Host));
    }

    [Fact]
    public void RabbitMqAddress_ReadsHeartbeatAndConnectionTimeout_FromTheUriQuery()
    {
        var tuned = RabbitMqAddress.Parse("amqp://u:p@broker:5672/fleet?heartbeat=4&connection_timeout=2500");
        var plain = RabbitMqAddress.Parse("amqp://u:p@broker:5672/fleet");

        Assert.Equal((TimeSpan.FromSeconds(4), TimeSpan.FromMilliseconds(2500), "fleet"), (tuned.Heartbeat, tuned.ConnectionTimeout, tuned.VirtualHost));
        Assert.Equal((RabbitMqAddress.DefaultHeartbeat, RabbitMqAddress.DefaultConnectionTimeout), (plain.Heartbeat, plain.ConnectionTimeout));
    }

    [Theory]
    [InlineData("amqp://u:p@broker/fleet?heartbeat=0", "heartbeat")]
    [InlineData("amqp://u:p@broker/fleet?heartbeat=5s", "heartbeat")]
    [InlineData("amqp://u:p@broker/fleet?connection_timeout=-1", "connection_timeout")]
    [InlineData("amqp://u:p@broker/fleet?heartbeats=5", "heartbeats")]
    public void RabbitMqAddress_RejectsABadOrUnknownQueryParameter_NamingIt(string uri, string key)
    {
        var ex = Assert.Throws<FormatException>(() => RabbitMqAddress.Parse(uri));

        Assert.Contains($"'{key}'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RabbitMqAddress_RejectsSomethingThatIsNotAnAmqpUri() =>
        Assert.Throws<FormatException>(() => RabbitMqAddress.Parse("Host=localhost;Port=5672"));

    [Fact]
    public void PlainJsonExample_FromTheDesign_ReadsAsProcessTask()
    {
        const string body = """
            { "taskId": "7f0c8a55-1d6b-4b0e-9a43-0c1e2d3f4a5b", "type": "sha256", "payload": { "size_kb": 1024, "rounds": 32, "seed": 7 },
              "priority": 0, "timeoutSeconds": 300, "maxAttempts": 3, "batchId": null, "submittedAt": "2026-11-28T12:00:00Z" }
            """;

        var message = JsonSerializer.Deserialize<ProcessTask>(body, new JsonSerializerOptions(JsonSerializerDefaults.Web))!;

        Assert.Equal(Guid.Parse("7f0c8a55-1d6b-4b0e-9a43-0c1e2d3f4a5b"), message.TaskId);
        Assert.Equal("sha256", message.Type);
        Assert.Equal(7, message.Payload.GetProperty("seed").GetInt32());
        Assert.Equal(300, message.TimeoutSeconds);
        Assert.Equal(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero), message.SubmittedAt);
    }

    [Fact]
    public void JsonSchema_RequiresTypeAndPayload_AndDescribesEveryContractProperty()
    {
        using var schema = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "task-message.schema.json")));

        var required = schema.RootElement.GetProperty("required").EnumerateArray().Select(e => e.GetString()!).ToArray();
        var described = schema.RootElement.GetProperty("properties").EnumerateObject().Select(p => p.Name).Order().ToArray();
        var contract = typeof(ProcessTask).GetProperties().Select(p => JsonNamingPolicy.CamelCase.ConvertName(p.Name)).Order().ToArray();

        Assert.Equal(["type", "payload"], required);
        Assert.Equal(contract, described);
    }

    [Theory]
    [InlineData("Worker:HttpGet:DeniedNetworks:0", "10.0.0.0/33", "10.0.0.0/33")]
    [InlineData("Worker:HttpGet:DeniedNetworks:0", "link-local,intranet", "intranet")]
    [InlineData("Worker:HttpGet:AllowedNetworks:0", "10.1.2.3/8", "10.1.2.3/8")]
    public void InvalidHttpGetNetworks_FailValidation_NamingTheSettingAndTheEntry(string key, string value, string entry)
    {
        var ex = Assert.Throws<OptionsValidationException>(() => BuildOptions<Fleet.Tasks.BuiltIn.HttpGetOptions>(new() { [key] = value }));

        Assert.Contains(key[..key.LastIndexOf(':')], ex.Message, StringComparison.Ordinal);
        Assert.Contains($"'{entry}'", ex.Message, StringComparison.Ordinal);
    }

    private static WorkerOptions BuildWorkerOptions(Dictionary<string, string?> settings) => BuildOptions<WorkerOptions>(settings);

    private static T BuildOptions<T>(Dictionary<string, string?> settings)
        where T : class
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:fleetdb"] = "Host=127.0.0.1;Database=unused",
            ["ConnectionStrings:rabbitmq"] = "amqp://u:p@127.0.0.1:1/unused",
        });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.AddFleetWorker();
        using var host = builder.Build();
        return host.Services.GetRequiredService<IOptions<T>>().Value;
    }
}

/// <summary>The hosts' PostgreSQL pool prepares its hot statements unless the connection string decides.</summary>
public sealed class DataSourceTests
{
    [Theory]
    [InlineData("Host=db;Username=fleet", 32)]
    [InlineData("Host=db;Username=fleet;Max Auto Prepare=0", 0)]
    [InlineData("Host=db;Username=fleet;maxautoprepare=5", 5)]
    public void MaxAutoPrepare_DefaultsTo32_AndAnExplicitValueWins(string connectionString, int expected)
    {
        using var dataSource = Fleet.Persistence.FleetDatabaseExtensions.CreateDataSource(connectionString);

        Assert.Equal(expected, new Npgsql.NpgsqlConnectionStringBuilder(dataSource.ConnectionString).MaxAutoPrepare);
    }

    [Theory]
    [InlineData("Host=db;Username=fleet", "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c enable_material=off")]
    [InlineData("Host=db;Username=fleet;Options=-c search_path=fleet", "-c search_path=fleet -c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c enable_material=off")]
    [InlineData("Host=db;Username=fleet;Options=-c plan_cache_mode=auto", "-c plan_cache_mode=auto -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c enable_material=off")]
    [InlineData("Host=db;Username=fleet;Options=-c enable_hashjoin=on", "-c enable_hashjoin=on -c plan_cache_mode=force_generic_plan")]
    public void LedgerPool_PlansGenerically_SkipsTheReset_AndStillPrepares(string connectionString, string expectedOptions)
    {
        using var dataSource = Fleet.Persistence.FleetDatabaseExtensions.CreateLedgerDataSource(connectionString);

        var settings = new Npgsql.NpgsqlConnectionStringBuilder(dataSource.ConnectionString);
        Assert.Equal(expectedOptions, settings.Options);
        Assert.True(settings.NoResetOnClose);
        Assert.Equal(32, settings.MaxAutoPrepare);
    }

    [Theory]
    [InlineData("Host=db;Username=fleet", "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c enable_material=off", 16, true)]
    [InlineData("Host=db;Username=fleet;Options=-c enable_seqscan=on", "-c enable_seqscan=on -c plan_cache_mode=force_generic_plan", 16, true)]
    [InlineData("Host=db;Username=fleet;Options=-c plan_cache_mode=auto;Max Auto Prepare=0;No Reset On Close=false", "-c plan_cache_mode=auto -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c enable_material=off", 0, false)]
    public void ClientPool_PlansOnceWithTheLedgersSettings_AndExplicitSettingsWin(string connectionString, string expectedOptions, int maxAutoPrepare, bool noReset)
    {
        using var dataSource = Fleet.Client.FleetClient.CreateDataSource(connectionString);

        var settings = new Npgsql.NpgsqlConnectionStringBuilder(dataSource.ConnectionString);
        Assert.Equal(expectedOptions, settings.Options);
        Assert.Equal(maxAutoPrepare, settings.MaxAutoPrepare);
        Assert.Equal(noReset, settings.NoResetOnClose);
    }
}
