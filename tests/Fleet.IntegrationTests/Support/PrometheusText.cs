using System.Globalization;

namespace Fleet.IntegrationTests.Support;

/// <summary>Reads samples out of a Prometheus text exposition (<c>/metrics</c>).</summary>
public static class PrometheusText
{
    /// <summary>The samples of <paramref name="metric"/> (exactly that name), as their label text and value.</summary>
    public static IReadOnlyList<(string Labels, double Value)> Samples(string exposition, string metric)
    {
        ArgumentNullException.ThrowIfNull(exposition);
        var samples = new List<(string, double)>();
        foreach (var line in exposition.Split('\n'))
        {
            if (line.StartsWith('#') || !line.StartsWith(metric, StringComparison.Ordinal) || line.Length == metric.Length
                || line[metric.Length] is not ('{' or ' '))
            {
                continue;
            }

            var labels = line[metric.Length] == '{' ? line[(metric.Length + 1)..line.IndexOf('}', StringComparison.Ordinal)] : "";
            var value = line.TrimEnd().Split(' ')[^1];
            samples.Add((labels, double.Parse(value, CultureInfo.InvariantCulture)));
        }

        return samples;
    }

    /// <summary>The sum of the samples of <paramref name="metric"/> whose labels contain <paramref name="label"/> (all when null); null when there are none.</summary>
    public static double? Sum(string exposition, string metric, string? label = null)
    {
        var matching = Samples(exposition, metric).Where(s => label is null || s.Labels.Contains(label, StringComparison.Ordinal)).ToList();
        return matching.Count == 0 ? null : matching.Sum(s => s.Value);
    }

    /// <summary>The lines of <paramref name="exposition"/> that start with <paramref name="prefix"/>, for failure messages.</summary>
    public static string Lines(string exposition, string prefix = "fleet_") =>
        string.Join('\n', exposition.Split('\n').Where(l => l.StartsWith(prefix, StringComparison.Ordinal)));
}
