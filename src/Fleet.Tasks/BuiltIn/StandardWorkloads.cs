using System.Text.Json;

namespace Fleet.Tasks.BuiltIn;

/// <summary>
/// The standard payloads of the built-in types, used wherever a fixed, comparable amount of work is wanted (the
/// demo, <c>fleet submit --workload</c>, the benchmark, tests): an empty <c>noop</c>, a 1 MiB <c>sha256</c> hashed 32
/// times, a <c>sieve</c> up to 2,000,000, a 50 ms <c>sleep</c> and a 256x256 <c>heat</c> grid over 1,000 steps.
/// Task <c>i</c> of a run uses seed <c>i</c>, so runs differ in their data but not in their cost.
/// </summary>
public static class StandardWorkloads
{
    public static IReadOnlyList<string> Names { get; } =
        [NoopHandler.TypeName, Sha256Handler.TypeName, SieveHandler.TypeName, SleepHandler.TypeName, HeatHandler.TypeName];

    /// <summary>The payload of task <paramref name="index"/> of workload <paramref name="name"/> (also its task type).</summary>
    public static JsonElement Payload(string name, int index) => name switch
    {
        NoopHandler.TypeName => JsonSerializer.SerializeToElement(new { }),
        Sha256Handler.TypeName => JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["size_kb"] = 1024, ["rounds"] = 32, ["seed"] = index }),
        SieveHandler.TypeName => JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["limit"] = 2_000_000 }),
        SleepHandler.TypeName => JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["ms"] = 50 }),
        HeatHandler.TypeName => JsonSerializer.SerializeToElement(new Dictionary<string, int> { ["n"] = 256, ["steps"] = 1000, ["seed"] = index }),
        _ => throw new ArgumentException($"Unknown workload '{name}'. Known: {string.Join(", ", Names)}.", nameof(name)),
    };
}
