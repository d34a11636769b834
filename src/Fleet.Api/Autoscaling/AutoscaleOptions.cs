using System.ComponentModel.DataAnnotations;

namespace Fleet.Api.Autoscaling;

/// <summary>
/// The <c>Api:Autoscale</c> section: how the API computes <c>fleet_desired_workers</c> (docs/observability.md).
/// <code>
/// "Api": {
///   "Autoscale": {
///     "Enabled": true,
///     "SampleSeconds": 5,          // how often queue depths, workers and completions are read
///     "TargetDrainSeconds": 30,    // the backlog (ready + unacked) should be done within this
///     "RateWindowSeconds": 60,     // completions counted over this window for the per-worker rate
///     "MinWorkers": 1,
///     "MaxWorkers": 100
///   }
/// }
/// </code>
/// </summary>
public sealed class AutoscaleOptions : IValidatableObject
{
    public const string SectionName = "Api:Autoscale";

    /// <summary>Whether this API process samples at all; without it the autoscaling gauges are absent from <c>/metrics</c>.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// How often the inputs are read (one RabbitMQ management call and three small queries). A scrape only reads
    /// the last sample, so scrapes cost nothing however often they come.
    /// </summary>
    [Range(1, 300)]
    public int SampleSeconds { get; set; } = 5;

    /// <summary>The time within which the desired workers should finish the outstanding work (ready plus in flight).</summary>
    [Range(1, 86_400)]
    public int TargetDrainSeconds { get; set; } = 30;

    /// <summary>The window over which finished tasks are counted to measure the completion rate per worker.</summary>
    [Range(10, 3600)]
    public int RateWindowSeconds { get; set; } = 60;

    /// <summary>The least <c>fleet_desired_workers</c> ever says; 0 lets an autoscaler scale to zero when idle.</summary>
    [Range(0, 10_000)]
    public int MinWorkers { get; set; } = 1;

    /// <summary>The most <c>fleet_desired_workers</c> ever says, even when more workers are busy than that.</summary>
    [Range(1, 10_000)]
    public int MaxWorkers { get; set; } = 100;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (MinWorkers > MaxWorkers)
        {
            yield return new ValidationResult("Api:Autoscale:MinWorkers must not exceed Api:Autoscale:MaxWorkers.", [nameof(MinWorkers)]);
        }
    }
}
