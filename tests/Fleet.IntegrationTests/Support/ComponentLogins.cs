using Npgsql;

namespace Fleet.IntegrationTests.Support;

/// <summary>One component's own login: its PostgreSQL role and its RabbitMQ user (and management API address).</summary>
public sealed record ComponentLogin(string PostgresUser, string PostgresPassword, Uri RabbitMqUri, Uri? ManagementUri = null)
{
    /// <summary><paramref name="connectionString"/> (a database of the run) with this login's role and password.</summary>
    public string Postgres(string connectionString) =>
        new NpgsqlConnectionStringBuilder(connectionString) { Username = PostgresUser, Password = PostgresPassword }.ConnectionString;
}

/// <summary>
/// The logins <c>infra/local/services.sh</c> creates, each with only the rights its component needs: the worker's
/// (<c>fleet_worker</c>), the API's (<c>fleet_api</c>), a producer's broker user (<c>fleet_producer</c>, no role of
/// its own) and the owner/administrator (<c>fleet</c>).
/// </summary>
/// <param name="ReadOnlyPassword">The password of <c>fleet_readonly</c>, the analysts' role.</param>
public sealed record ComponentLogins(ComponentLogin Worker, ComponentLogin Api, Uri ProducerRabbitMqUri, ComponentLogin Owner, string ReadOnlyPassword);
