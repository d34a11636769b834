using System.Text.Json.Serialization;

namespace Fleet.Tasks.BuiltIn;

/// <summary><c>sleep</c>: waits <c>ms</c> milliseconds without using CPU, then returns <c>{}</c>.</summary>
public sealed class SleepHandler : TaskHandler<SleepInput, Empty>
{
    /// <summary>The type name.</summary>
    public const string TypeName = "sleep";

    /// <summary>Longest accepted wait: one hour.</summary>
    public const long MaxMs = 3_600_000;

    public override string Type => TypeName;

    public override TaskLane Lane => TaskLane.Io;

    protected override void Validate(SleepInput input) =>
        TaskValidationException.ThrowIfOutOfRange(input.Ms, 0, MaxMs, "ms");

    protected override async ValueTask<Empty> ExecuteAsync(SleepInput input, CancellationToken cancellationToken)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(input.Ms), cancellationToken).ConfigureAwait(false);
        return Empty.Instance;
    }
}

/// <summary>Input of <c>sleep</c>: <c>{"ms": 50}</c>.</summary>
public sealed record SleepInput
{
    [JsonPropertyName("ms")]
    public required long Ms { get; init; }
}
