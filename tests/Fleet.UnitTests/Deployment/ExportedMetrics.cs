using System.Text.RegularExpressions;

namespace Fleet.UnitTests.Deployment;

/// <summary>
/// The Prometheus metric names Fleet exports, in one place: what the Grafana dashboard, the KEDA ScaledObject and
/// the HPA's adapter rule may query. Keep it in step with the code; <see cref="GrafanaDashboardTests"/> checks the
/// worker's part against the instruments WorkerMetrics and ProcessLaneMetrics really create.
/// </summary>
public static partial class ExportedMetrics
{
    /// <summary>
    /// The worker's /metrics (src/Fleet.Worker/Telemetry/WorkerMetrics.cs and ProcessLaneMetrics.cs through OpenTelemetry's Prometheus exporter: dots
    /// become underscores, unit "s" adds <c>_seconds</c>, counters add <c>_total</c>, histograms are
    /// <c>_bucket</c>/<c>_sum</c>/<c>_count</c>; seen on a running worker's /metrics).
    /// </summary>
    public static readonly string[] Worker =
    [
        "fleet_tasks_finished_total",
        "fleet_task_retries_total",
        "fleet_tasks_skipped_total",
        "fleet_task_duration_seconds_bucket",
        "fleet_task_duration_seconds_sum",
        "fleet_task_duration_seconds_count",
        "fleet_task_queue_wait_seconds_bucket",
        "fleet_task_queue_wait_seconds_sum",
        "fleet_task_queue_wait_seconds_count",
        "fleet_lane_busy",
        "fleet_lane_capacity",
        "fleet_process_lane_slots",
        "fleet_process_lane_busy",
        "fleet_process_lane_children",
        "fleet_process_lane_children_started_total",
        "fleet_process_lane_kills_total",
        "fleet_process_lane_deaths_total",
        "fleet_process_lane_recycled_total",
    ];

    /// <summary>
    /// The API's /metrics: the backlog gauges per queue and the autoscaling signal; these are the names the
    /// dashboards and the autoscalers depend on.
    /// </summary>
    public static readonly string[] Api =
    [
        "fleet_queue_ready",
        "fleet_queue_unacked",
        "fleet_desired_workers",
        "fleet_tasks_waiting",
    ];

    public static IEnumerable<string> All => Worker.Concat(Api);

    private static readonly HashSet<string> Keywords = new(StringComparer.Ordinal)
    {
        // Aggregations, their modifiers and the binary-operator keywords.
        "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
        "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    };

    /// <summary>
    /// The metric names a PromQL expression reads: identifiers that are not functions, keywords, label names
    /// (inside <c>{}</c> or a <c>by (...)</c> list), strings, durations or Grafana variables.
    /// </summary>
    public static IReadOnlyList<string> NamesIn(string promQl)
    {
        var text = StringLiteral().Replace(promQl, " ");
        text = Braces().Replace(text, " ");
        text = Brackets().Replace(text, " ");
        text = Grouping().Replace(text, " ");
        text = Variable().Replace(text, " ");
        return [.. Identifier().Matches(text)
            .Where(m => !Keywords.Contains(m.Value) && !IsFunctionCall(text, m))
            .Select(m => m.Value)
            .Distinct(StringComparer.Ordinal)];
    }

    private static bool IsFunctionCall(string text, Match identifier)
    {
        var next = identifier.Index + identifier.Length;
        while (next < text.Length && char.IsWhiteSpace(text[next]))
        {
            next++;
        }

        return next < text.Length && text[next] == '(';
    }

    [GeneratedRegex("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'")]
    private static partial Regex StringLiteral();

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex Braces();

    [GeneratedRegex(@"\[[^\]]*\]")]
    private static partial Regex Brackets();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")]
    private static partial Regex Grouping();

    [GeneratedRegex(@"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")]
    private static partial Regex Variable();

    [GeneratedRegex(@"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")]
    private static partial Regex Identifier();
}
