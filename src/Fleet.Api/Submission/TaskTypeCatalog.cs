using Fleet.Tasks;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Submission;

/// <summary>
/// The task types the API accepts and the lane each goes to. The API runs no handlers, so it cannot see the types
/// registered in a user's own worker host: it knows the built-in types (from the same registry the workers use)
/// plus the names configured in <c>Api:KnownTypes</c> and <c>Api:CpuTypes</c>.
/// </summary>
public sealed class TaskTypeCatalog
{
    private readonly HashSet<string> _known;
    private readonly HashSet<string> _cpu;

    public TaskTypeCatalog(TaskHandlerRegistry builtIn, IOptions<ApiOptions> options)
    {
        ArgumentNullException.ThrowIfNull(builtIn);
        ArgumentNullException.ThrowIfNull(options);
        var api = options.Value;
        _cpu = new HashSet<string>(StringComparer.Ordinal);
        foreach (var type in builtIn.Types)
        {
            if (builtIn.TryGet(type, out var handler) && handler.Lane == TaskLane.Cpu)
            {
                _cpu.Add(type);
            }
        }

        _cpu.UnionWith(api.CpuTypes.Select(t => t.Trim()));
        _known = new HashSet<string>(builtIn.Types, StringComparer.Ordinal);
        _known.UnionWith(api.KnownTypes.Select(t => t.Trim()));
        _known.UnionWith(_cpu);
        Types = [.. _known.Order(StringComparer.Ordinal)];
    }

    /// <summary>Every accepted type, sorted.</summary>
    public IReadOnlyList<string> Types { get; }

    /// <summary>Types sent to <c>fleet-cpu</c> when a task names no queue.</summary>
    public IReadOnlySet<string> CpuTypes => _cpu;

    public bool IsKnown(string type) => _known.Contains(type);
}
