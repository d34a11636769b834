using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Fleet.Client;
using Fleet.Client.Tls;
using Fleet.IntegrationTests.Support;
using Fleet.Messaging;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Fleet.IntegrationTests.Tls;

/// <summary>
/// Every connection to the broker and the database checks the server's certificate (chain and host name) unless a
/// documented opt-out says otherwise, against real TLS listeners with a test CA's certificate (<see cref="TlsFixture"/>).
/// A refusal stops a worker at start with exit code 78 and one message that names the server and the fault.
/// </summary>
[Collection(TlsCollection.Name)]
public sealed class TlsTests(TlsFixture tls)
{
    private static readonly TimeSpan TaskWait = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan ExitWait = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task TrustedCa_TheWorkerApiAndClientConnectWithTls_AndTasksRunEndToEnd()
    {
        var postgres = tls.VerifiedPostgres(tls.CaFile);
        var caSetting = new Dictionary<string, string?> { ["Tls:RabbitMqCaFile"] = tls.CaFile };
        await using var worker = WorkerProcess.Start(TlsFixture.WorkerSettings("tls-trusted", postgres, tls.Amqps(), caSetting));
        await using var client = Client(postgres, tls.Amqps(), o => o.Tls.RabbitMqCaFile = tls.CaFile);

        var id = await client.SubmitAsync(TaskRequest.Create("noop", new { }));
        Assert.Equal("succeeded", (await client.WaitAsync(id, TaskWait))?.Status);

        var apiSettings = ApiHost.DefaultSettings(postgres, tls.Amqps(), null);
        await using (var api = await ApiHost.StartAsync(apiSettings, caSetting))
        {
            using var http = api.CreateClient();
            using var response = await http.PostAsJsonAsync("tasks", new { type = "noop", payload = new { } });
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
            var apiTask = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
            Assert.Equal("succeeded", (await client.WaitAsync(apiTask, TaskWait))?.Status);
        }

        // The worker's consuming connection (MassTransit) is the TLS one, and so are its database sessions.
        Assert.True(await WorkerConnectionUsesTlsAsync($"fleet-worker tls-trusted:{worker.Pid}"), worker.Output);
        await using var probe = new NpgsqlConnection(postgres);
        await probe.OpenAsync();
        await using var ssl = new NpgsqlCommand("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", probe);
        Assert.True((bool)(await ssl.ExecuteScalarAsync())!);
        Assert.False(worker.HasExited, worker.Output);
    }

    [Fact]
    public async Task UntrustedBrokerCertificate_TheWorkerRefusesAtStart_SayingWhichServerAndWhy()
    {
        // The reported hole: no CA setting, so the system trust store, which does not know the test CA. MassTransit's
        // UseSsl defaults took such a certificate for the worker's consuming connection.
        await using var systemStore = WorkerProcess.Start(TlsFixture.WorkerSettings("tls-system-store", tls.PlainPostgres, tls.Amqps()));
        var output = await ExitedWithTlsErrorAsync(systemStore);
        Assert.Contains($"RabbitMQ at 127.0.0.1:{tls.AmqpTlsPort} refused", output, StringComparison.Ordinal);
        Assert.Contains("is not trusted", output, StringComparison.Ordinal);
        Assert.Contains("system trust store", output, StringComparison.Ordinal);

        await using var otherCa = WorkerProcess.Start(TlsFixture.WorkerSettings(
            "tls-other-ca", tls.PlainPostgres, tls.Amqps(), new Dictionary<string, string?> { ["Tls:RabbitMqCaFile"] = tls.OtherCaFile }));
        output = await ExitedWithTlsErrorAsync(otherCa);
        Assert.Contains($"is not trusted: its chain does not end in Tls:RabbitMqCaFile ({tls.OtherCaFile})", output, StringComparison.Ordinal);

        // A producer: the client stores the task, then refuses to send it over that connection.
        await using var client = Client(tls.PlainPostgres, tls.Amqps(), o => o.Tls.RabbitMqCaFile = tls.OtherCaFile);
        var ex = await Assert.ThrowsAsync<TaskPublishException>(() => client.SubmitAsync(TaskRequest.Create("noop", new { })));
        Assert.Contains("is not trusted", ServerCertificateException.FindIn(ex)?.Message ?? ex.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheWorkersMassTransitBus_RefusesAnUntrustedBroker_EvenWithoutTheStartCheck()
    {
        // The bus alone, as the worker configures it (UseFleetHost), without the start-time probe in front of it.
        var logs = new CapturingLoggerProvider();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddProvider(logs).SetMinimumLevel(LogLevel.Debug));
        var broker = RabbitMqAddress.Parse(tls.Amqps());
        services.AddMassTransit(x =>
        {
            x.DisableUsageTelemetry();
            x.UsingRabbitMq((_, cfg) => cfg.UseFleetHost(broker, "fleet-tls-test-bus"));
        });
        await using var provider = services.BuildServiceProvider();
        var bus = provider.GetRequiredService<IBusControl>();

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var ex = await Record.ExceptionAsync(() => bus.StartAsync(timeout.Token));

        Assert.NotNull(ex);
        Assert.Contains(logs.Lines, line => line.Contains($"RabbitMQ at 127.0.0.1:{tls.AmqpTlsPort} refused", StringComparison.Ordinal) && line.Contains("is not trusted", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AHostNameTheCertificateDoesNotName_IsRefused()
    {
        // The certificate names 127.0.0.1 only; "localhost" reaches the same listener under another name.
        var settings = TlsFixture.WorkerSettings("tls-wrong-name", tls.PlainPostgres, tls.Amqps("localhost"), new Dictionary<string, string?> { ["Tls:RabbitMqCaFile"] = tls.CaFile });
        await using var worker = WorkerProcess.Start(settings);
        var output = await ExitedWithTlsErrorAsync(worker);
        Assert.Contains($"RabbitMQ at localhost:{tls.AmqpTlsPort} refused", output, StringComparison.Ordinal);
        Assert.Contains("does not name this host (it names 127.0.0.1)", output, StringComparison.Ordinal);
        Assert.DoesNotContain("is not trusted", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AmqpsToThePlainListener_StopsTheWorker_SayingTheHandshakeFailed()
    {
        var plainPort = new UriBuilder(tls.Amqps()) { Port = tls.Servers.RabbitMqUri.Port }.Uri.ToString();
        await using var worker = WorkerProcess.Start(TlsFixture.WorkerSettings("tls-plain-port", tls.PlainPostgres, plainPort));
        var output = await ExitedWithTlsErrorAsync(worker);
        Assert.Contains($"RabbitMQ at 127.0.0.1:{tls.Servers.RabbitMqUri.Port}: the TLS handshake failed", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AllowUntrusted_Connects_AndTheWorkerWarnsAtStart()
    {
        var optOut = new Dictionary<string, string?> { ["Tls:RabbitMqAllowUntrusted"] = "true" };
        await using var worker = WorkerProcess.Start(TlsFixture.WorkerSettings("tls-opt-out", tls.PlainPostgres, tls.Amqps(), optOut));
        await using var client = Client(tls.PlainPostgres, tls.Amqps(), o => o.Tls.RabbitMqAllowUntrusted = true);

        var id = await client.SubmitAsync(TaskRequest.Create("noop", new { }));

        Assert.Equal("succeeded", (await client.WaitAsync(id, TaskWait))?.Status);
        Assert.Contains($"Tls:RabbitMqAllowUntrusted is on: the certificate of RabbitMQ at 127.0.0.1:{tls.AmqpTlsPort} is not checked", worker.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostgresVerifyFull_RefusesACertificateOfAnotherCa_AndTheWorkerSaysSoAtStart()
    {
        await using (var trusted = new NpgsqlConnection(tls.VerifiedPostgres(tls.CaFile)))
        {
            await trusted.OpenAsync();
        }

        await using (var untrusted = new NpgsqlConnection(tls.VerifiedPostgres(tls.OtherCaFile)))
        {
            await Assert.ThrowsAnyAsync<NpgsqlException>(() => untrusted.OpenAsync());
        }

        await using var worker = WorkerProcess.Start(TlsFixture.WorkerSettings("tls-pg-other-ca", tls.VerifiedPostgres(tls.OtherCaFile), tls.Amqp));
        var output = await ExitedWithTlsErrorAsync(worker);
        Assert.Contains($"PostgreSQL at 127.0.0.1:{new NpgsqlConnectionStringBuilder(tls.PlainPostgres).Port} refused: its certificate does not verify", output, StringComparison.Ordinal);
        Assert.Contains(tls.OtherCaFile, output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ADatabaseOffThisMachineWithoutVerification_IsRefusedAtStart()
    {
        // 192.0.2.1 (TEST-NET-1) is never dialled: the connection string alone is refused.
        var postgres = new NpgsqlConnectionStringBuilder(tls.PlainPostgres) { Host = "192.0.2.1", SslMode = SslMode.Require }.ConnectionString;
        await using var worker = WorkerProcess.Start(TlsFixture.WorkerSettings("tls-pg-require", postgres, tls.Amqp));
        var output = await ExitedWithTlsErrorAsync(worker);
        Assert.Contains("connects to '192.0.2.1' with SSL Mode=Require, which does not verify the server's certificate", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheApisManagementClient_ReadsQueueDepthsOverVerifiedHttps_AndNamesARefusedCertificate()
    {
        var settings = ApiHost.DefaultSettings(tls.PlainPostgres, tls.Amqp, tls.ManagementHttps);
        await using (var trusted = await ApiHost.StartAsync(settings, new Dictionary<string, string?> { ["Tls:RabbitMqCaFile"] = tls.CaFile }))
        {
            var stats = await StatsAsync(trusted);
            Assert.True(stats.GetProperty("queuesError").ValueKind == JsonValueKind.Null, stats.ToString());
        }

        settings = ApiHost.DefaultSettings(tls.PlainPostgres, tls.Amqp, tls.ManagementHttps);
        await using var untrusted = await ApiHost.StartAsync(settings, new Dictionary<string, string?> { ["Tls:RabbitMqCaFile"] = tls.OtherCaFile });
        var error = (await StatsAsync(untrusted)).GetProperty("queuesError").GetString();
        Assert.StartsWith("The RabbitMQ management API refused: the certificate CN=fleet-tls-test-server", error, StringComparison.Ordinal);
        Assert.Contains("is not trusted", error, StringComparison.Ordinal);

        static async Task<JsonElement> StatsAsync(ApiHost api)
        {
            using var http = api.CreateClient();
            return await http.GetFromJsonAsync<JsonElement>("stats");
        }
    }

    [Fact]
    public async Task TheCli_SubmitsOverVerifiedTls_AndRefusesAnUntrustedBrokerOrAnUnverifiedDatabase_InOneLine()
    {
        var trusted = await FleetCliAsync(tls.PlainPostgres, tls.Amqps(), tls.CaFile, "submit", "noop");
        Assert.True(trusted.ExitCode == 0, trusted.Output);
        Assert.True(Guid.TryParse(trusted.Output.Trim(), out _), trusted.Output);

        var untrusted = await FleetCliAsync(tls.PlainPostgres, tls.Amqps(), tls.OtherCaFile, "submit", "noop");
        Assert.Equal(2, untrusted.ExitCode);
        Assert.StartsWith($"fleet: RabbitMQ at 127.0.0.1:{tls.AmqpTlsPort} refused: the certificate CN=fleet-tls-test-server", untrusted.Output, StringComparison.Ordinal);
        Assert.Contains("is not trusted", untrusted.Output, StringComparison.Ordinal);

        var remote = new NpgsqlConnectionStringBuilder(tls.PlainPostgres) { Host = "192.0.2.1" }.ConnectionString;
        var unverified = await FleetCliAsync(remote, tls.Amqp, null, "workers");
        Assert.Equal(2, unverified.ExitCode);
        Assert.Contains("fleet: ConnectionStrings:fleetdb connects to '192.0.2.1' with SSL Mode=Prefer", unverified.Output, StringComparison.Ordinal);
    }

    /// <summary>Runs the CLI's build output (<c>fleet.dll</c>, with its own dependencies) with these settings.</summary>
    private static Task<ProcessTools.CommandResult> FleetCliAsync(string postgres, string rabbitMq, string? caFile, params string[] arguments)
    {
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        var dll = Repository.PathTo("src", "Fleet.Cli", "bin", configuration, "net10.0", "fleet.dll");
        var environment = new Dictionary<string, string>
        {
            ["ConnectionStrings__fleetdb"] = postgres,
            ["ConnectionStrings__rabbitmq"] = rabbitMq,
            ["Tls__RabbitMqCaFile"] = caFile ?? "",
        };
        return ProcessTools.RunAsync("dotnet", [dll, .. arguments], TimeSpan.FromMinutes(2), environment);
    }

    private static FleetClient Client(string postgres, string rabbitMq, Action<FleetClientOptions> configure)
    {
        var options = new FleetClientOptions { PostgresConnectionString = postgres, RabbitMqUri = rabbitMq };
        configure(options);
        return new FleetClient(options);
    }

    private static async Task<string> ExitedWithTlsErrorAsync(WorkerProcess worker)
    {
        using var timeout = new CancellationTokenSource(ExitWait);
        await worker.WaitForExitAsync(timeout.Token);

        Assert.True(worker.ExitCode == FleetTlsException.ExitCode, $"exit code {worker.ExitCode}:\n{worker.Output}");
        return worker.Output;
    }

    /// <summary>True once the management API lists the named connection with TLS on.</summary>
    private async Task<bool> WorkerConnectionUsesTlsAsync(string name)
    {
        using var management = tls.Servers.CreateRabbitMqManagementClient();
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var connections = await management.GetFromJsonAsync<JsonElement>("api/connections?columns=user_provided_name,ssl");
            foreach (var connection in connections.EnumerateArray())
            {
                if (connection.TryGetProperty("user_provided_name", out var provided) && provided.GetString() == name)
                {
                    return connection.GetProperty("ssl").GetBoolean();
                }
            }

            await Task.Delay(200);
        }

        return false;
    }
}
