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

    /// <summary>
    /// The earliest time the task may start (UTC). A worker that receives the message before then does not run it:
    /// it hands the task to the due relay, which publishes it again at its time.
    /// </summary>
    public DateTimeOffset? NotBefore { get; init; }

    /// <summary>
    /// For plain JSON producers that cannot compute a time: a delay in seconds counted from
    /// <see cref="SubmittedAt"/> (or, without it, from when a worker first receives the message), which the worker
    /// turns into <see cref="NotBefore"/>. Not together with <see cref="NotBefore"/>. Fleet's own producers send
    /// <see cref="NotBefore"/> only.
    /// </summary>
    public double? DelaySeconds { get; init; }

    /// <summary>The tenant the task belongs to, stored with the task for queries.</summary>
    public string? Tenant { get; init; }

    /// <summary>
    /// Set by Fleet on a later step of a chain: the step before it, which succeeded (its result is in
    /// <c>fleet.tasks</c>). Handlers read it through <c>TaskContext.Current</c>.
    /// </summary>
    public Guid? AfterTaskId { get; init; }

    /// <summary>
    /// Set by Fleet on a batch's <c>onComplete</c> task: the batch whose tasks are all final. Handlers read it through
    /// <c>TaskContext.Current</c> and its results with SQL.
    /// </summary>
    public Guid? AfterBatchId { get; init; }
}
