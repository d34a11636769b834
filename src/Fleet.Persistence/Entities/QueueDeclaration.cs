namespace Fleet.Persistence.Entities;

/// <summary>
/// A task queue and the lane its tasks run on (<c>fleet.queues</c>, schema version 11): the built-in lanes
/// <c>fleet-cpu</c> (<c>cpu</c>) and <c>fleet-io</c> (<c>io</c>), seeded by the migration, and the queues operators
/// declare in the API's <c>Api:Queues</c> for worker groups, written by the API at its start. Workers read the lane of
/// the queues they serve here. Fleet never deletes a row: tasks may still wait in a queue no longer declared.
/// </summary>
public sealed class QueueDeclaration
{
    /// <summary>The queue (and its fanout exchange), e.g. <c>reports</c>.</summary>
    public required string Name { get; set; }

    /// <summary><c>cpu</c> (the worker's CPU lane threads) or <c>io</c> (concurrent async work).</summary>
    public required string Lane { get; set; }

    public DateTimeOffset DeclaredAt { get; set; }

    /// <summary>When the lane last changed (or the declaration was first written).</summary>
    public DateTimeOffset UpdatedAt { get; set; }
}
