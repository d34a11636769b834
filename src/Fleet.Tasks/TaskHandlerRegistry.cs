using System.Collections.Frozen;

namespace Fleet.Tasks;

/// <summary>The handlers a worker knows, by type name. Built once from DI at start.</summary>
public sealed class TaskHandlerRegistry
{
    private readonly FrozenDictionary<string, ITaskHandler> _handlers;

    public TaskHandlerRegistry(IEnumerable<ITaskHandler> handlers)
    {
        var byType = new Dictionary<string, ITaskHandler>(StringComparer.Ordinal);
        foreach (var handler in handlers)
        {
            if (!byType.TryAdd(handler.Type, handler))
            {
                throw new InvalidOperationException(
                    $"Two task handlers claim the type '{handler.Type}': {byType[handler.Type].GetType().FullName} and {handler.GetType().FullName}.");
            }
        }

        _handlers = byType.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>The known type names, sorted, for error messages and discovery.</summary>
    public IReadOnlyList<string> Types => [.. _handlers.Keys.Order(StringComparer.Ordinal)];

    public bool TryGet(string type, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ITaskHandler? handler) =>
        _handlers.TryGetValue(type, out handler);
}
