using System.Net;
using System.Text;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Npgsql;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// Each component's login may do what its component does and is refused the rest, on the real servers: the broker
/// users <c>fleet_producer</c>, <c>fleet_api</c> and <c>fleet_worker</c> and the database roles <c>fleet_worker</c>,
/// <c>fleet_api</c> and <c>fleet_readonly</c> that <c>services.sh</c> creates (and the migrations grant). That their
/// rights are enough is shown by every other test: the harness runs workers and the API with these logins.
/// </summary>
public sealed class LeastPrivilegeTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    private const string NoopTask = """{"taskId": "{ID}", "type": "noop", "payload": {}}""";

    [Fact]
    public async Task Producer_publishes_to_the_lanes_and_is_refused_everything_else()
    {
        if (Logins() is not { } logins)
        {
            return;
        }

        var producer = logins.ProducerRabbitMqUri;
        var id = Guid.NewGuid();
        await using (var connection = await new ConnectionFactory { Uri = producer }.CreateConnectionAsync())
        await using (var channel = await ConfirmingChannelAsync(connection))
        {
            await channel.BasicPublishAsync(TaskQueues.Cpu, "", mandatory: true, new BasicProperties(), Body(id));
        }

        // The worker's user takes it from the lane: the producer's message arrived.
        await ReceiveAsync(logins.Worker.RabbitMqUri, TaskQueues.Cpu, id);

        await AmqpRefusedAsync(producer, c => c.BasicConsumeAsync(TaskQueues.Cpu, autoAck: false, new AsyncEventingBasicConsumer(c)));
        await AmqpRefusedAsync(producer, c => c.BasicGetAsync(TaskQueues.Io, autoAck: true));
        await AmqpRefusedAsync(producer, c => c.QueuePurgeAsync(TaskQueues.Cpu));
        await AmqpRefusedAsync(producer, c => c.QueueDeleteAsync(TaskQueues.Cpu));
        await AmqpRefusedAsync(producer, c => c.ExchangeDeleteAsync(TaskQueues.Io));
        await AmqpRefusedAsync(producer, c => c.QueueDeclareAsync("producer-own-queue", durable: false, exclusive: false, autoDelete: true));
        await AmqpRefusedAsync(producer, c => c.BasicPublishAsync(TaskQueues.Control, "", mandatory: false, new BasicProperties(), Body(id)).AsTask());
        await AmqpRefusedAsync(producer, c => c.BasicPublishAsync("", TaskQueues.Cpu, mandatory: false, new BasicProperties(), Body(id)).AsTask());
        await ManagementRefusedAsync(producer, HttpMethod.Get, "api/queues/fleet");
        await ManagementRefusedAsync(producer, HttpMethod.Delete, $"api/queues/fleet/{TaskQueues.Cpu}/contents");
    }

    [Fact]
    public async Task Api_user_publishes_tasks_and_cancels_and_reads_queue_depths_but_cannot_consume_or_manage()
    {
        if (Logins() is not { } logins)
        {
            return;
        }

        var api = logins.Api.RabbitMqUri;
        await using (var connection = await new ConnectionFactory { Uri = api }.CreateConnectionAsync())
        await using (var channel = await ConfirmingChannelAsync(connection))
        {
            await channel.BasicPublishAsync(TaskQueues.Io, "", mandatory: true, new BasicProperties(), Body(Guid.NewGuid()));
            await channel.BasicPublishAsync(TaskQueues.Control, "", mandatory: false, new BasicProperties(), Body(Guid.NewGuid()));
        }

        using (var management = LocalServers.CreateManagementClient(logins.Api.ManagementUri!))
        {
            var queues = await management.GetStringAsync(new Uri("api/queues/fleet?columns=name,messages_ready", UriKind.Relative));
            Assert.Contains($"\"{TaskQueues.Io}\"", queues, StringComparison.Ordinal);
        }

        await AmqpRefusedAsync(api, c => c.BasicConsumeAsync(TaskQueues.Io, autoAck: false, new AsyncEventingBasicConsumer(c)));
        await AmqpRefusedAsync(api, c => c.QueuePurgeAsync(TaskQueues.Io));
        await AmqpRefusedAsync(api, c => c.QueueDeleteAsync(TaskQueues.Io));
        await AmqpRefusedAsync(api, c => c.QueueDeclareAsync("api-own-queue", durable: false, exclusive: false, autoDelete: true));
        await ManagementRefusedAsync(api, HttpMethod.Delete, $"api/queues/fleet/{TaskQueues.Io}/contents");
        await ManagementRefusedAsync(api, HttpMethod.Get, "api/users");
        await ManagementRefusedAsync(api, HttpMethod.Put, "api/vhosts/api-made-vhost");
    }

    [Fact]
    public async Task Worker_user_consumes_and_publishes_to_its_lanes_but_cannot_cancel_declare_elsewhere_or_manage()
    {
        if (Logins() is not { } logins)
        {
            return;
        }

        var worker = logins.Worker.RabbitMqUri;
        var id = Guid.NewGuid();
        await using (var connection = await new ConnectionFactory { Uri = worker }.CreateConnectionAsync())
        await using (var channel = await ConfirmingChannelAsync(connection))
        {
            // A task published to its lane's exchange, as the due relay (delayed tasks, retries) and the reconciler do.
            await channel.BasicPublishAsync(TaskQueues.Io, "", mandatory: true, new BasicProperties(), Body(id));
        }

        await ReceiveAsync(worker, TaskQueues.Io, id);

        // Retries wait in PostgreSQL: a worker needs neither the delay queues of older versions nor the default exchange.
        var rung = QueueTopology.RetryRungName(TaskQueues.Io, 1);
        await AmqpRefusedAsync(worker, c => c.QueueDeclareAsync(rung, durable: true, exclusive: false, autoDelete: false,
            QueueTopology.RetryRungArguments(QueueTopology.DefaultQueueType, TaskQueues.Io)));
        await AmqpRefusedAsync(worker, c => c.BasicPublishAsync("", TaskQueues.Io, mandatory: false, new BasicProperties(), Body(Guid.NewGuid())).AsTask());
        await AmqpRefusedAsync(worker, c => c.BasicPublishAsync(TaskQueues.Control, "", mandatory: false, new BasicProperties(), Body(Guid.NewGuid())).AsTask());
        await AmqpRefusedAsync(worker, c => c.QueueDeclareAsync("worker-own-queue", durable: false, exclusive: false, autoDelete: true));
        await AmqpRefusedAsync(worker, c => c.ExchangeDeclareAsync("worker-own-exchange", ExchangeType.Fanout));
        await ManagementRefusedAsync(worker, HttpMethod.Get, "api/queues/fleet");
        await ManagementRefusedAsync(worker, HttpMethod.Get, "api/users");
        await ManagementRefusedAsync(worker, HttpMethod.Put, "api/vhosts/worker-made-vhost");
    }

    [Fact]
    public async Task Database_roles_may_do_what_their_component_does_and_nothing_more()
    {
        if (Logins() is not { } logins)
        {
            return;
        }

        var worker = logins.Worker.Postgres(Fleet.PostgresConnectionString);
        var api = logins.Api.Postgres(Fleet.PostgresConnectionString);
        var analyst = new NpgsqlConnectionStringBuilder(Fleet.PostgresConnectionString) { Username = "fleet_readonly", Password = logins.ReadOnlyPassword }.ConnectionString;
        var id = Guid.NewGuid();
        var insertTask = $"INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, priority) VALUES ('{id}', 'noop', 'fleet-io', 'queued', '{{}}', 0, 3, 0)";

        // Allowed: what each component's code does.
        await AllowedAsync(api, insertTask);
        await AllowedAsync(api, $"UPDATE fleet.tasks SET published_at = now() WHERE id = '{id}'");
        await AllowedAsync(api, "DELETE FROM fleet.idempotency_keys WHERE created_at < now() - interval '1 day'");
        await AllowedAsync(api, "SELECT count(*) FROM fleet.task_attempts JOIN fleet.workers ON true");
        await AllowedAsync(worker, $"UPDATE fleet.tasks SET status = 'running', attempts = 1, result = NULL WHERE id = '{id}'");
        await AllowedAsync(worker, $"INSERT INTO fleet.task_attempts (task_id, attempt, worker_id, started_at, outcome) VALUES ('{id}', 1, 'w', now(), 'running')");
        await AllowedAsync(worker, "INSERT INTO fleet.workers (id, host, pid, queues, cpu_concurrency, io_concurrency, started_at, last_seen_at, state, tasks_succeeded, tasks_failed, tasks_skipped) " +
            "VALUES ('w', 'h', 1, '{}', 1, 1, now(), now(), 'running', 0, 0, 0) ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), state = excluded.state");
        await AllowedAsync(worker, "SELECT pg_try_advisory_xact_lock(42)");
        await AllowedAsync(analyst, "SELECT count(*) FROM fleet.tasks, fleet.task_attempts, fleet.workers, fleet.idempotency_keys");

        foreach (var role in new[] { worker, api })
        {
            await RefusedAsync(role, $"DELETE FROM fleet.tasks WHERE id = '{id}'");
            await RefusedAsync(role, $"DELETE FROM fleet.task_attempts WHERE task_id = '{id}'");
            await RefusedAsync(role, "DELETE FROM fleet.workers");
            await RefusedAsync(role, "TRUNCATE fleet.tasks");
            await RefusedAsync(role, "CREATE TABLE fleet.intruder (id int)");
            await RefusedAsync(role, "CREATE TABLE public.intruder (id int)");
            await RefusedAsync(role, "ALTER TABLE fleet.tasks ADD COLUMN intruder int");
            await RefusedAsync(role, "DROP VIEW fleet.v_type_stats");
            await RefusedAsync(role, "SELECT count(*) FROM fleet.\"__ef_migrations_history\"");
        }

        await RefusedAsync(worker, "SELECT count(*) FROM fleet.idempotency_keys");

        // Schedules are the API's (create, fire, pause, remove) and the analysts' to read; workers never see them.
        await AllowedAsync(api, "INSERT INTO fleet.schedules (name, cron, task, paused, created_at, updated_at) VALUES ('grant-check', '* * * * *', '{}', true, now(), now())");
        await AllowedAsync(api, "UPDATE fleet.schedules SET next_fire_at = NULL WHERE name = 'grant-check'");
        await AllowedAsync(api, "DELETE FROM fleet.schedules WHERE name = 'grant-check'");
        await AllowedAsync(analyst, "SELECT count(*) FROM fleet.schedules");
        await RefusedAsync(worker, "SELECT count(*) FROM fleet.schedules");
        await RefusedAsync(worker, "INSERT INTO fleet.idempotency_keys (key, request_hash, task_ids, created_at) VALUES ('k', 'h', '{}', now())");
        await RefusedAsync(api, $"UPDATE fleet.tasks SET result = '{{}}' WHERE id = '{id}'");
        await RefusedAsync(api, $"UPDATE fleet.tasks SET worker_id = 'api' WHERE id = '{id}'");
        await RefusedAsync(api, $"INSERT INTO fleet.task_attempts (task_id, attempt, worker_id, started_at, outcome) VALUES ('{id}', 2, 'api', now(), 'running')");
        await RefusedAsync(api, "UPDATE fleet.workers SET state = 'stopped'");

        // The analysts' sessions are read-only, and the role has no write privilege under them either.
        var readOnly = await Assert.ThrowsAsync<PostgresException>(() => ExecuteAsync(analyst, $"UPDATE fleet.tasks SET status = 'failed' WHERE id = '{id}'"));
        Assert.Equal(PostgresErrorCodes.ReadOnlySqlTransaction, readOnly.SqlState);
        await RefusedAsync(analyst, $"BEGIN READ WRITE; DELETE FROM fleet.tasks WHERE id = '{id}'; COMMIT");
    }

    private ComponentLogins? Logins()
    {
        if (Fleet.Servers.Logins is null)
        {
            output.WriteLine($"servers from {Fleet.Servers.Source} have no per-component logins: nothing to check");
        }

        return Fleet.Servers.Logins;
    }

    private static byte[] Body(Guid id) => Encoding.UTF8.GetBytes(NoopTask.Replace("{ID}", id.ToString(), StringComparison.Ordinal));

    /// <summary>A channel whose publishes complete once the broker confirmed them (and throw when it refused them).</summary>
    private static Task<IChannel> ConfirmingChannelAsync(IConnection connection) =>
        connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));

    /// <summary>Takes the message of task <paramref name="id"/> from <paramref name="queue"/> as <paramref name="login"/>, waiting up to 10 s for it.</summary>
    private static async Task ReceiveAsync(Uri login, string queue, Guid id)
    {
        await using var connection = await new ConnectionFactory { Uri = login }.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        BasicGetResult? delivered;
        while ((delivered = await channel.BasicGetAsync(queue, autoAck: true)) is null && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.NotNull(delivered);
        Assert.Contains(id.ToString(), Encoding.UTF8.GetString(delivered.Body.Span), StringComparison.Ordinal);
    }

    /// <summary>The broker closes the channel with 403 ACCESS_REFUSED, naming the user.</summary>
    private async Task AmqpRefusedAsync(Uri login, Func<IChannel, Task> action)
    {
        await using var connection = await new ConnectionFactory { Uri = login }.CreateConnectionAsync();
        await using var channel = await ConfirmingChannelAsync(connection);
        var refused = await Assert.ThrowsAnyAsync<OperationInterruptedException>(() => action(channel));
        Assert.Equal<int?>(Constants.AccessRefused, refused.ShutdownReason?.ReplyCode);
        output.WriteLine(refused.ShutdownReason?.ReplyText);
    }

    /// <summary>The management API refuses the user (401: no tag, or a right the tag does not give).</summary>
    private async Task ManagementRefusedAsync(Uri login, HttpMethod method, string path)
    {
        var user = login.UserInfo.Split(':', 2);
        var address = new UriBuilder(Fleet.Servers.RabbitMqManagementUri!) { UserName = user[0], Password = user[1] }.Uri;
        using var management = LocalServers.CreateManagementClient(address);
        using var request = new HttpRequestMessage(method, new Uri(path, UriKind.Relative));
        if (method == HttpMethod.Put)
        {
            request.Content = new StringContent("{}", Encoding.UTF8, "application/json");
        }

        using var response = await management.SendAsync(request);
        Assert.True(response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden, $"{method} {path} as {user[0]}: {(int)response.StatusCode}");
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static Task AllowedAsync(string connectionString, string sql) => ExecuteAsync(connectionString, sql);

    private async Task RefusedAsync(string connectionString, string sql)
    {
        var refused = await Assert.ThrowsAsync<PostgresException>(() => ExecuteAsync(connectionString, sql));
        Assert.True(refused.SqlState == PostgresErrorCodes.InsufficientPrivilege, $"{sql}: {refused.SqlState} {refused.MessageText}");
        output.WriteLine($"{new NpgsqlConnectionStringBuilder(connectionString).Username}: {refused.MessageText}");
    }
}
