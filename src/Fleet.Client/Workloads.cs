using System.Text.Json;

namespace Fleet.Client;

/// <summary>
/// The standard payloads of the benchmark workloads (WORKLOADS.md): task <c>i</c> of a run uses seed <c>i</c>.
/// Shared by <c>fleet submit --workload</c>, the demo and the benchmark so that all of them send the same work.
/// </summary>
public static class Workloads
{
    public static IReadOnlyList<string> Names { get; } = ["noop", "sha256", "sieve", "sleep", "heat"];

    /// <summary>The payload of task <paramref name="index"/> of workload <paramref name="name"/>.</summary>
    public static JsonElement Payload(string name, int index) => name switch
    {
        "noop" => JsonSerializer.SerializeToElement(new { }),
        "sha256" => JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["size_kb"] = 1024, ["rounds"] = 32, ["seed"] = index }),
        "sieve" => JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["limit"] = 2_000_000 }),
        "sleep" => JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["ms"] = 50 }),
        "heat" => JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["n"] = 256, ["steps"] = 1000, ["seed"] = index }),
        _ => throw new ArgumentException($"Unknown workload '{name}'. Known: {string.Join(", ", Names)}.", nameof(name)),
    };

    /// <summary><paramref name="count"/> requests of one workload, all in batch <paramref name="batchId"/>.</summary>
    public static IEnumerable<TaskRequest> Requests(string name, int count, Guid? batchId = null) =>
        Enumerable.Range(0, count).Select(i => new TaskRequest(name, Payload(name, i)) { BatchId = batchId });
}
