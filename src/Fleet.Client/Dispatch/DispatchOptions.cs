using System.ComponentModel.DataAnnotations;

namespace Fleet.Client;

/// <summary>
/// The <c>Dispatch</c> section, the same for the API and the workers (each runs the dispatcher; one at a time leads):
/// <code>
/// "Dispatch": {
///   "IntervalMs": 100,          // a round per lane this often; 0: this process never leads
///   "AgingSeconds": 60,         // a waiting task gains one priority level per this much waiting
///   "MinOutstanding": 32,       // published but not yet started, per lane: never fewer allowed than this
///   "MaxOutstanding": 2000,     // ... and never more
///   "OutstandingSeconds": 1,    // ... aiming at this many seconds of the lane's measured start rate
///   "LimitRefreshMs": 1000      // fleet.limits read again this often by the leader
/// }
/// </code>
/// </summary>
public sealed class DispatchOptions : IValidatableObject
{
    public const string SectionName = "Dispatch";

    [Range(0, 60_000)]
    public int IntervalMs { get; set; } = 100;

    [Range(1, 86_400)]
    public double AgingSeconds { get; set; } = 60;

    [Range(1, 100_000)]
    public int MinOutstanding { get; set; } = 32;

    [Range(1, 100_000)]
    public int MaxOutstanding { get; set; } = 2_000;

    [Range(0.1, 60)]
    public double OutstandingSeconds { get; set; } = 1;

    [Range(100, 60_000)]
    public int LimitRefreshMs { get; set; } = 1_000;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (IntervalMs is > 0 and < 20)
        {
            yield return new ValidationResult("Dispatch:IntervalMs must be 0 (this process never dispatches) or from 20 to 60000.", [nameof(IntervalMs)]);
        }

        if (MinOutstanding > MaxOutstanding)
        {
            yield return new ValidationResult("Dispatch:MinOutstanding must not exceed Dispatch:MaxOutstanding.", [nameof(MinOutstanding), nameof(MaxOutstanding)]);
        }
    }
}

