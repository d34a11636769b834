using System.Text.Json;

namespace Fleet.Tasks.BuiltIn;

/// <summary>
/// <c>noop</c>: returns <c>{}</c> at once. It measures pure framework overhead, so it skips the typed
/// deserialize/serialize round trip of <see cref="TaskHandler{TInput, TOutput}"/> and hands back one shared,
/// immutable empty object. Any JSON object is accepted as input; its members are ignored.
/// </summary>
public sealed class NoopHandler : ITaskHandler
{
    /// <summary>The type name.</summary>
    public const string TypeName = "noop";

    private static readonly JsonElement EmptyObject = JsonSerializer.SerializeToElement(Empty.Instance, TaskHandler<Empty, Empty>.SerializerOptions);

    private static readonly PreparedTask Completed = static _ => ValueTask.FromResult(EmptyObject);

    public string Type => TypeName;

    public TaskLane Lane => TaskLane.Io;

    public PreparedTask Prepare(JsonElement payload)
    {
        if (payload.ValueKind != JsonValueKind.Object)
        {
            throw new TaskValidationException($"The payload of a '{TypeName}' task must be a JSON object; got {payload.ValueKind}.");
        }

        return Completed;
    }
}
