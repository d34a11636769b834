using System.ComponentModel.DataAnnotations;
using Fleet.Persistence;

namespace Fleet.Api.Retention;

/// <summary>
/// The <c>Retention</c> section: retention the API applies by itself, the same deletes as <c>fleet retention</c>.
/// <code>
/// "Retention": {
///   "KeepDays": 30,          // 0 (the default): off; else delete what is older than this many days
///   "IntervalMinutes": 60,   // between the end of one pass and the start of the next
///   "BatchSize": 5000        // tasks per delete transaction
/// },
/// "ConnectionStrings": { "fleetdb_retention": "Host=...;Username=fleet;..." }   // required when KeepDays > 0
/// </code>
/// </summary>
public sealed class RetentionOptions : IValidatableObject
{
    public const string SectionName = "Retention";

    /// <summary>
    /// The connection string (<c>ConnectionStrings:fleetdb_retention</c>) the passes run on. Not the API's own
    /// <c>fleetdb</c>: its role, <c>fleet_api</c>, may not delete tasks (docs/schema.md, "Roles"), and granting it that
    /// would let every request path of the API delete history. Only this pool, used by nothing else, can.
    /// </summary>
    public const string ConnectionStringName = "fleetdb_retention";

    /// <summary>Age in days of what a pass deletes; 0 turns automatic retention off (<c>fleet retention</c> still works).</summary>
    [Range(0, 36_500)]
    public int KeepDays { get; set; }

    /// <summary>Minutes from the end of one pass to the start of the next (fractions for tests: 0.05 is 3 s).</summary>
    [Range(0.01, 10_080)]
    public double IntervalMinutes { get; set; } = 60;

    /// <summary>Tasks per delete transaction, as <c>fleet retention --batch-size</c>.</summary>
    [Range(1, 100_000)]
    public int BatchSize { get; set; } = RetentionService.DefaultBatchSize;

    /// <summary>Filled from <c>ConnectionStrings:fleetdb_retention</c> (<see cref="ConnectionStringName"/>).</summary>
    public string? ConnectionString { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (KeepDays > 0 && string.IsNullOrWhiteSpace(ConnectionString))
        {
            yield return new ValidationResult(
                $"Retention:KeepDays is {KeepDays} but ConnectionStrings:{ConnectionStringName} (environment variable ConnectionStrings__{ConnectionStringName}) " +
                "is not set: automatic retention deletes rows, which the API's own role may not; give it a login that may (the owner fleet, " +
                "or a role with the grants of docs/sql.md#retention), or set Retention:KeepDays=0.",
                [nameof(KeepDays), nameof(ConnectionString)]);
        }
    }
}
