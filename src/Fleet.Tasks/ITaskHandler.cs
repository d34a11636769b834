using System.Text.Json;

namespace Fleet.Tasks;

/// <summary>
/// One task type. Implementations are stateless singletons; most derive from
/// <see cref="TaskHandler{TInput, TOutput}"/> or <see cref="CpuTaskHandler{TInput, TOutput}"/> rather than
/// implementing this directly.
/// </summary>
public interface ITaskHandler
{
    /// <summary>The task type name used in messages, e.g. <c>sha256</c>. Lowercase, stable, unique in a worker.</summary>
    string Type { get; }

    /// <summary>The lane the worker runs this handler in.</summary>
    TaskLane Lane { get; }

    /// <summary>
    /// Parses and validates <paramref name="payload"/> and returns the work to run. Runs before the task takes a
    /// lane slot, so it must be cheap and must not allocate in proportion to the requested size.
    /// </summary>
    /// <exception cref="TaskValidationException">The payload is not valid for this type; never retried.</exception>
    PreparedTask Prepare(JsonElement payload);
}

/// <summary>A validated task, ready to run. The result is the task's output as a JSON object.</summary>
public delegate ValueTask<JsonElement> PreparedTask(CancellationToken cancellationToken);
