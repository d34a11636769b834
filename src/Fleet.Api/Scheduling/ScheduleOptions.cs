using System.ComponentModel.DataAnnotations;

namespace Fleet.Api.Scheduling;

/// <summary>
/// The <c>Schedules</c> section: the firing loop of recurring schedules.
/// <code>
/// "Schedules": {
///   "FiringEnabled": true,        // whether this API process fires schedules (one replica fires at a time either way)
///   "PollIntervalSeconds": 1,     // longest sleep between looks at fleet.schedules
///   "BatchSize": 100              // due schedules one round fires
/// }
/// </code>
/// </summary>
public sealed class ScheduleOptions
{
    public const string SectionName = "Schedules";

    /// <summary>Whether this process runs the firing loop. It fires only while it holds the firing lock, so replicas may all keep it on.</summary>
    public bool FiringEnabled { get; set; } = true;

    /// <summary>
    /// The longest the loop sleeps. It wakes at the earliest next fire time it knows of; this bounds how late it sees a
    /// schedule created or resumed elsewhere (another replica, <c>fleet schedule</c>), and how soon a replica takes
    /// over from one that stopped.
    /// </summary>
    [Range(0.1, 60)]
    public double PollIntervalSeconds { get; set; } = 1;

    /// <summary>Due schedules fired per round; more are fired by the next round at once.</summary>
    [Range(1, 10_000)]
    public int BatchSize { get; set; } = 100;
}
