using System.Text.Json;

namespace Fleet.Contracts;

/// <summary>
/// The command that asks the fleet to run one task. This is also the shape of the plain JSON body any AMQP
/// client may publish (see <c>task-message.schema.json</c>); property names are camelCase on the wire.
/// </summary>
public sealed record ProcessTask
{
    /// <summary>The task's identity. Redelivering or republishing the same id never produces a second result.
    /// When a plain JSON body omits it, the AMQP <c>message_id</c> is used instead.</summary>
    public Guid TaskId { get; init; }

    /// <summary>The task type, e.g. <c>sha256</c>; a handler of this type must be registered in the worker.</summary>
    public string Type { get; init; } = "";

    /// <summary>The handler's input, a JSON object.</summary>
    public JsonElement Payload { get; init; }

    /// <summary>Stored with the task for queries; the default queues do not reorder by it.</summary>
    public int Priority { get; init; }

    /// <summary>
    /// The task's time limit, 1 to <see cref="TaskLimits.MaxTimeoutSeconds"/>; when absent the worker's
    /// <c>Worker:DefaultTimeoutSeconds</c> applies.
    /// </summary>
    public int? TimeoutSeconds { get; init; }

    /// <summary>How many executions a transiently failing task may take; default 3.</summary>
    public int? MaxAttempts { get; init; }

    /// <summary>The batch this task was submitted in, if any.</summary>
    public Guid? BatchId { get; init; }

    /// <summary>When the producer submitted the task (UTC); latency and queue wait are measured from it.</summary>
    public DateTimeOffset? SubmittedAt { get; init; }
}
