using System.Text.Json;
using System.Text.Json.Serialization;

namespace Fleet.Tasks;

/// <summary>
/// Base class for a handler with typed input and output. The input is read from the payload with
/// System.Text.Json (snake_case or exact names via <see cref="JsonPropertyNameAttribute"/>; <c>required</c>
/// members must be present; wrong JSON types are rejected), then <see cref="Validate"/> checks ranges before any
/// work starts.
/// </summary>
public abstract class TaskHandler<TInput, TOutput> : ITaskHandler
    where TInput : notnull
{
    /// <summary>Options shared by every handler: strict numbers, no comments, unknown members ignored.</summary>
    internal static readonly JsonSerializerOptions SerializerOptions = new(JsonSerializerDefaults.General)
    {
        NumberHandling = JsonNumberHandling.Strict,
        RespectRequiredConstructorParameters = true,
        RespectNullableAnnotations = true,
    };

    public abstract string Type { get; }

    public abstract TaskLane Lane { get; }

    /// <summary>Checks the parsed input; throw <see cref="TaskValidationException"/> to reject it.</summary>
    protected virtual void Validate(TInput input)
    {
    }

    /// <summary>Runs the task. Honour <paramref name="cancellationToken"/>: it fires on time limits and cancels.</summary>
    protected abstract ValueTask<TOutput> ExecuteAsync(TInput input, CancellationToken cancellationToken);

    public PreparedTask Prepare(JsonElement payload)
    {
        var input = Parse(payload);
        Validate(input);
        return async cancellationToken =>
            JsonSerializer.SerializeToElement(await ExecuteAsync(input, cancellationToken).ConfigureAwait(false), SerializerOptions);
    }

    private TInput Parse(JsonElement payload)
    {
        if (payload.ValueKind != JsonValueKind.Object)
        {
            throw new TaskValidationException($"The payload of a '{Type}' task must be a JSON object; got {payload.ValueKind}.");
        }

        try
        {
            return payload.Deserialize<TInput>(SerializerOptions)
                ?? throw new TaskValidationException($"The payload of a '{Type}' task is null.");
        }
        catch (JsonException ex)
        {
            // The serializer's message names the member and the JSON path, which is what the user needs to fix it.
            throw new TaskValidationException($"Invalid '{Type}' payload: {ex.Message}", ex);
        }
    }
}

/// <summary>
/// Base class for CPU-bound handlers: <see cref="Execute"/> is synchronous because the worker already runs it on
/// a dedicated CPU-lane thread; it should check the token now and then (e.g. once per outer loop iteration).
/// </summary>
public abstract class CpuTaskHandler<TInput, TOutput> : TaskHandler<TInput, TOutput>
    where TInput : notnull
{
    public sealed override TaskLane Lane => TaskLane.Cpu;

    protected abstract TOutput Execute(TInput input, CancellationToken cancellationToken);

    protected sealed override ValueTask<TOutput> ExecuteAsync(TInput input, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Execute(input, cancellationToken));
}

/// <summary>The empty JSON object, for handlers with no input or no output.</summary>
public sealed record Empty
{
    public static readonly Empty Instance = new();
}
