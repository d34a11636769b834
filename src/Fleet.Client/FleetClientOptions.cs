using System.ComponentModel.DataAnnotations;
using Fleet.Client.Tls;

namespace Fleet.Client;

/// <summary>
/// Settings of <see cref="FleetClient"/>. Bound from the pinned connection strings:
/// <code>
/// "ConnectionStrings": { "fleetdb": "Host=...;Database=fleet;Username=...;Password=...", "rabbitmq": "amqp://user:pass@host:5672/fleet" }
/// </code>
/// </summary>
public sealed class FleetClientOptions : IValidatableObject
{
    /// <summary>Npgsql connection string of the fleet database (<c>ConnectionStrings:fleetdb</c>).</summary>
    [Required(ErrorMessage = "ConnectionStrings:fleetdb (env ConnectionStrings__fleetdb) is required.")]
    public string PostgresConnectionString { get; set; } = "";

    /// <summary>amqp URI of the fleet's vhost (<c>ConnectionStrings:rabbitmq</c>).</summary>
    [Required(ErrorMessage = "ConnectionStrings:rabbitmq (env ConnectionStrings__rabbitmq) is required.")]
    public string RabbitMqUri { get; set; } = "";

    /// <summary>
    /// The type of the lane queues on the broker (<c>RabbitMq:QueueType</c>), used when the client declares a lane that
    /// does not exist yet; it must match what the workers declare (<see cref="QueueTopology"/>).
    /// </summary>
    public BrokerQueueType QueueType { get; set; } = QueueTopology.DefaultQueueType;

    /// <summary>Task types sent to <c>fleet-cpu</c> when a request names no queue; all others go to <c>fleet-io</c>.</summary>
    public ISet<string> CpuTypes { get; } = new HashSet<string>(StringComparer.Ordinal) { "sha256", "sieve", "heat" };

    /// <summary>Rows written per INSERT and messages sent per round when submitting in bulk.</summary>
    [Range(1, 50_000)]
    public int BulkChunkSize { get; set; } = 2_000;

    /// <summary>
    /// Chunks of one <c>SubmitManyAsync</c> call that are being stored, sent or stamped at the same time. One chunk at
    /// a time leaves the database idle while the broker confirms and the broker idle while the database writes.
    /// </summary>
    [Range(1, 64)]
    public int ChunksInFlight { get; set; } = 4;

    /// <summary>Default <c>maxAttempts</c> of tasks that set none.</summary>
    [Range(1, 100)]
    public int DefaultMaxAttempts { get; set; } = 3;

    /// <summary>How server certificates are checked (the <c>Tls</c> section); strict by default.</summary>
    public FleetTlsOptions Tls { get; } = new();

    /// <summary>The <c>Tls</c> settings, and a database connection that would not verify its server (refused unless allowed).</summary>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        foreach (var result in Tls.Validate(validationContext))
        {
            yield return result;
        }

        if (!string.IsNullOrWhiteSpace(PostgresConnectionString) && Tls.PostgresProblem(PostgresConnectionString) is { } problem)
        {
            yield return new ValidationResult(problem, [nameof(PostgresConnectionString)]);
        }
    }
}
