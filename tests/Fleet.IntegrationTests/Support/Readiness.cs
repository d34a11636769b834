using System.Diagnostics;
using Npgsql;
using RabbitMQ.Client;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// Waits until a server really serves (a login succeeds), not just until its port accepts TCP. Every attempt has its
/// own short time limit, so a port held by something that never answers cannot hang the wait.
/// </summary>
internal static class Readiness
{
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(10);

    /// <param name="check">Called before every attempt; throws to stop waiting (for example: the server process died).</param>
    public static Task WaitForPostgresAsync(string connectionString, TimeSpan timeout, CancellationToken cancellationToken, Action? check = null)
    {
        var unpooled = new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false, Timeout = 5 }.ConnectionString;
        return RetryAsync(
            "PostgreSQL login",
            async token =>
            {
                await using var connection = new NpgsqlConnection(unpooled);
                await connection.OpenAsync(token).ConfigureAwait(false);
                await using var command = new NpgsqlCommand("select 1", connection);
                await command.ExecuteScalarAsync(token).ConfigureAwait(false);
            },
            timeout,
            check,
            cancellationToken);
    }

    public static Task WaitForAmqpAsync(Uri amqpUri, TimeSpan timeout, CancellationToken cancellationToken, Action? check = null)
    {
        var factory = new ConnectionFactory
        {
            Uri = amqpUri,
            RequestedConnectionTimeout = TimeSpan.FromSeconds(5),
            HandshakeContinuationTimeout = TimeSpan.FromSeconds(5),
            AutomaticRecoveryEnabled = false,
        };
        return RetryAsync(
            "AMQP login",
            async token =>
            {
                await using var connection = await factory.CreateConnectionAsync("fleet-servers-readiness", token).ConfigureAwait(false);
            },
            timeout,
            check,
            cancellationToken);
    }

    public static async Task WaitForManagementAsync(Uri managementUri, TimeSpan timeout, CancellationToken cancellationToken, Action? check = null)
    {
        using var http = LocalServers.CreateManagementClient(managementUri);
        await RetryAsync(
                "RabbitMQ management API",
                async token =>
                {
                    using var response = await http.GetAsync(new Uri("api/overview", UriKind.Relative), token).ConfigureAwait(false);
                    response.EnsureSuccessStatusCode();
                },
                timeout,
                check,
                cancellationToken)
            .ConfigureAwait(false);
    }

    private static async Task RetryAsync(string what, Func<CancellationToken, Task> attempt, TimeSpan timeout, Action? check, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        while (true)
        {
            check?.Invoke();
            using var attemptCancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            attemptCancellation.CancelAfter(AttemptTimeout);
            try
            {
                // WaitAsync as well: a client that ignores its token still cannot hold us past the attempt's limit.
                await attempt(attemptCancellation.Token).WaitAsync(AttemptTimeout + TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (Exception exception) when (!cancellationToken.IsCancellationRequested && exception is not OutOfMemoryException)
            {
                if (stopwatch.Elapsed > timeout)
                {
                    throw new TimeoutException($"{what} did not succeed within {timeout.TotalSeconds:0} s; last error: {exception.Message}", exception);
                }

                await Task.Delay(200, cancellationToken).ConfigureAwait(false);
            }
        }
    }
}
