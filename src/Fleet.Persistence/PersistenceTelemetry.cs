using System.Diagnostics;

namespace Fleet.Persistence;

/// <summary>
/// The ActivitySource <c>Fleet.Persistence</c>: one span per batched write (<see cref="GroupCommitter{TItem,TResult}"/>),
/// linked to the spans of the tasks whose rows it wrote; the Npgsql span of the statement is its child.
/// </summary>
public static class PersistenceTelemetry
{
    public const string Name = "Fleet.Persistence";

    public static readonly ActivitySource Source = new(Name);
}
