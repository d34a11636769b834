using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Fleet.IntegrationTests.Support;
using Npgsql;
using RabbitMQ.Client;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// Checks of the test servers themselves: both answer, the management API sees queue depths, and owned servers
/// can be stopped, killed and started again on the same address without losing committed data.
/// The restart checks return early (pass) on servers the run does not own.
/// </summary>
[Collection(FleetServersCollection.Name)]
public sealed class FleetServersFixtureTests(FleetServersFixture servers, ITestOutputHelper output)
{
    [Fact]
    public async Task Postgres_answers_select_version()
    {
        await using var connection = new NpgsqlConnection(servers.PostgresConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("select version()", connection);
        var version = (string?)await command.ExecuteScalarAsync();
        output.WriteLine($"{servers.Source}, started in {servers.StartupTime.TotalSeconds:0.00} s: {version}");
        Assert.StartsWith("PostgreSQL ", version, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RabbitMq_declares_publishes_and_gets()
    {
        var factory = new ConnectionFactory { Uri = servers.RabbitMqUri };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var queue = "fixture-check-" + Guid.NewGuid().ToString("N");
        await channel.QueueDeclareAsync(queue, durable: false, exclusive: false, autoDelete: false);
        try
        {
            await channel.BasicPublishAsync(string.Empty, queue, Encoding.UTF8.GetBytes("hello"));
            var result = await GetWithRetryAsync(channel, queue);
            Assert.Equal("hello", Encoding.UTF8.GetString(result.Body.Span));
        }
        finally
        {
            await channel.QueueDeleteAsync(queue);
        }
    }

    [Fact]
    public async Task Management_api_reports_queue_depth()
    {
        if (servers.RabbitMqManagementUri is null)
        {
            output.WriteLine("no management API given (FLEET_TEST_RABBITMQ_MANAGEMENT): nothing to check");
            return;
        }

        var factory = new ConnectionFactory { Uri = servers.RabbitMqUri };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var queue = "fixture-depth-" + Guid.NewGuid().ToString("N");
        await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false);
        try
        {
            for (var i = 0; i < 3; i++)
            {
                await channel.BasicPublishAsync(string.Empty, queue, Encoding.UTF8.GetBytes("m" + i));
            }

            using var http = servers.CreateRabbitMqManagementClient();
            var vhost = Uri.EscapeDataString(Uri.UnescapeDataString(servers.RabbitMqUri.AbsolutePath.TrimStart('/')) is { Length: > 0 } name ? name : "/");
            var depth = -1;
            var stopwatch = Stopwatch.StartNew();

            // The management API refreshes its counters every 5 s by default (every second on the servers
            // services.sh starts for the tests: FLEET_THROWAWAY).
            while (depth != 3 && stopwatch.Elapsed < TimeSpan.FromSeconds(30))
            {
                using var json = JsonDocument.Parse(await http.GetStringAsync(new Uri($"api/queues/{vhost}/{queue}", UriKind.Relative)));
                depth = json.RootElement.TryGetProperty("messages", out var messages) && messages.ValueKind == JsonValueKind.Number ? messages.GetInt32() : -1;
                if (depth != 3)
                {
                    await Task.Delay(250);
                }
            }

            output.WriteLine($"management API saw depth {depth} after {stopwatch.Elapsed.TotalSeconds:0.0} s");
            Assert.Equal(3, depth);
        }
        finally
        {
            await channel.QueueDeleteAsync(queue);
        }
    }

    [Fact]
    public async Task Owned_RabbitMq_stops_and_starts_on_the_same_port_keeping_durable_messages()
    {
        if (!servers.OwnsServers)
        {
            output.WriteLine($"servers from {servers.Source} are not owned: nothing to check");
            return;
        }

        var before = servers.RabbitMqUri;
        var queue = "fixture-restart-" + Guid.NewGuid().ToString("N");
        var factory = new ConnectionFactory { Uri = before };
        await using (var connection = await factory.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true)))
        {
            await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false);
            await channel.BasicPublishAsync(string.Empty, queue, mandatory: true, new BasicProperties { Persistent = true }, Encoding.UTF8.GetBytes("survives"));
        }

        var stopwatch = Stopwatch.StartNew();
        await servers.StopRabbitMqAsync();
        output.WriteLine($"stop: {stopwatch.Elapsed.TotalSeconds:0.00} s");
        await Assert.ThrowsAnyAsync<Exception>(async () => await factory.CreateConnectionAsync());

        stopwatch.Restart();
        await servers.StartRabbitMqAsync();
        output.WriteLine($"start: {stopwatch.Elapsed.TotalSeconds:0.00} s");
        Assert.Equal(before, servers.RabbitMqUri);

        await using var reconnected = await factory.CreateConnectionAsync();
        await using var again = await reconnected.CreateChannelAsync();
        var result = await GetWithRetryAsync(again, queue);
        Assert.Equal("survives", Encoding.UTF8.GetString(result.Body.Span));
        await again.QueueDeleteAsync(queue);
    }

    [Fact]
    public async Task Owned_RabbitMq_is_killed_and_started_again()
    {
        if (!servers.OwnsServers)
        {
            output.WriteLine($"servers from {servers.Source} are not owned: nothing to check");
            return;
        }

        var factory = new ConnectionFactory { Uri = servers.RabbitMqUri };
        var stopwatch = Stopwatch.StartNew();
        await servers.KillRabbitMqAsync();
        output.WriteLine($"kill: {stopwatch.Elapsed.TotalSeconds:0.00} s");
        await Assert.ThrowsAnyAsync<Exception>(async () => await factory.CreateConnectionAsync());

        stopwatch.Restart();
        await servers.StartRabbitMqAsync();
        output.WriteLine($"start after kill: {stopwatch.Elapsed.TotalSeconds:0.00} s");
        await using var connection = await factory.CreateConnectionAsync();
        Assert.True(connection.IsOpen);
    }

    [Fact]
    public async Task Owned_Postgres_is_killed_and_restarted_keeping_committed_rows()
    {
        if (!servers.OwnsServers)
        {
            output.WriteLine($"servers from {servers.Source} are not owned: nothing to check");
            return;
        }

        var unpooled = new NpgsqlConnectionStringBuilder(servers.PostgresConnectionString) { Pooling = false }.ConnectionString;
        var table = "fixture_check_" + Guid.NewGuid().ToString("N")[..8];
        await ExecuteAsync(unpooled, $"create table {table} (id int primary key); insert into {table} values (1);");

        var stopwatch = Stopwatch.StartNew();
        await servers.KillPostgresAsync();
        output.WriteLine($"kill: {stopwatch.Elapsed.TotalSeconds:0.00} s");
        await Assert.ThrowsAnyAsync<Exception>(() => ExecuteAsync(unpooled, "select 1"));

        stopwatch.Restart();
        await servers.StartPostgresAsync();
        output.WriteLine($"start after kill: {stopwatch.Elapsed.TotalSeconds:0.00} s");
        stopwatch.Restart();
        await servers.RestartPostgresAsync();
        output.WriteLine($"restart: {stopwatch.Elapsed.TotalSeconds:0.00} s");

        await using var connection = new NpgsqlConnection(unpooled);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"select count(*) from {table}", connection);
        Assert.Equal(1L, await command.ExecuteScalarAsync());
        await ExecuteAsync(unpooled, $"drop table {table}");
    }

    private static async Task<BasicGetResult> GetWithRetryAsync(IChannel channel, string queue)
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            if (await channel.BasicGetAsync(queue, autoAck: true) is { } result)
            {
                return result;
            }

            await Task.Delay(20);
        }

        throw new Xunit.Sdk.XunitException($"no message in {queue} after 2 s");
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
