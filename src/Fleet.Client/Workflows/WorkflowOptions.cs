using System.ComponentModel.DataAnnotations;

namespace Fleet.Client;

/// <summary>
/// The <c>Workflows</c> section, the same for the API and the workers (each runs the batch watcher; one at a time looks):
/// <code>
/// "Workflows": {
///   "BatchWatchIntervalMs": 500   // a batch's onComplete task is created within about this long of its last task's end; 0: this process never looks
/// }
/// </code>
/// </summary>
public sealed class WorkflowOptions
{
    public const string SectionName = "Workflows";

    [Range(0, 60_000)]
    public int BatchWatchIntervalMs { get; set; } = 500;
}
