using System.Text.Json;

namespace Fleet.Client;

/// <summary>One task to submit. Only <see cref="Type"/> and <see cref="Payload"/> are required.</summary>
public sealed record TaskRequest(string Type, JsonElement Payload)
{
    /// <summary>The id to use; a new time-ordered UUID when null. Resubmitting an id never yields a second result.</summary>
    public Guid? TaskId { get; init; }

    /// <summary>The queue to send to; when null, <see cref="FleetClientOptions.CpuTypes"/> decides between the lanes.</summary>
    public string? Queue { get; init; }

    public int Priority { get; init; }

    /// <summary>
    /// The time limit of one execution in seconds, 1 to <see cref="Fleet.Contracts.TaskLimits.MaxTimeoutSeconds"/>
    /// (the API refuses more); null for the worker's default. A worker whose <c>Worker:MaxTimeoutSeconds</c> is
    /// lower runs the task for that long, and its timeout error says so.
    /// </summary>
    public int? TimeoutSeconds { get; init; }

    public int? MaxAttempts { get; init; }

    public Guid? BatchId { get; init; }

    /// <summary>Builds a request whose payload is <paramref name="payload"/> serialized with System.Text.Json.</summary>
    public static TaskRequest Create<T>(string type, T payload) => new(type, JsonSerializer.SerializeToElement(payload));
}
