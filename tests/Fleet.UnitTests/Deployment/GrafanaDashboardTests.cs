using System.Diagnostics.Metrics;
using System.Text.Json;
using Fleet.Tasks;
using Fleet.Worker;
using Fleet.Worker.ProcessLane;
using Fleet.Worker.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests.Deployment;

/// <summary>infra/grafana/fleet-dashboard.json queries only metrics Fleet exports, through a templated data source.</summary>
public sealed class GrafanaDashboardTests
{
    private const string Dashboard = "infra/grafana/fleet-dashboard.json";

    [Fact]
    public void EveryQuery_ReadsOnlyMetricsFleetExports()
    {
        var expressions = Expressions().ToList();
        Assert.NotEmpty(expressions);

        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (panel, expression) in expressions)
        {
            var names = ExportedMetrics.NamesIn(expression);
            Assert.True(names.Count > 0, $"panel '{panel}': no metric in `{expression}`");
            foreach (var name in names)
            {
                Assert.True(ExportedMetrics.All.Contains(name), $"panel '{panel}': `{name}` is not a metric Fleet exports (ExportedMetrics)");
                used.Add(name);
            }
        }

        // What the dashboard is for: throughput, failures, duration, queue wait, lanes, retries, backlog, autoscaling.
        string[] covered =
        [
            "fleet_tasks_finished_total", "fleet_task_duration_seconds_bucket", "fleet_task_queue_wait_seconds_bucket",
            "fleet_lane_busy", "fleet_lane_capacity", "fleet_task_retries_total", "fleet_queue_ready", "fleet_queue_unacked",
            "fleet_desired_workers",
        ];
        Assert.All(covered, name => Assert.Contains(name, used));
    }

    [Fact]
    public void ThePrometheusDataSource_IsAVariable_EveryPanelAndQueryUses()
    {
        using var dashboard = JsonDocument.Parse(DeploymentFiles.Read(Dashboard));
        var variables = dashboard.RootElement.GetProperty("templating").GetProperty("list").EnumerateArray().ToList();
        var source = Assert.Single(variables, v => v.GetProperty("type").GetString() == "datasource");
        Assert.Equal("prometheus", source.GetProperty("query").GetString());
        var reference = "${" + source.GetProperty("name").GetString() + "}";

        foreach (var panel in Panels(dashboard.RootElement).Where(p => p.GetProperty("type").GetString() != "row"))
        {
            Assert.Equal(reference, panel.GetProperty("datasource").GetProperty("uid").GetString());
            Assert.All(panel.GetProperty("targets").EnumerateArray(), t => Assert.Equal(reference, t.GetProperty("datasource").GetProperty("uid").GetString()));
        }
    }

    [Fact]
    public async Task TheNamesTheTestsExpect_AreTheWorkersRealInstruments_AsThePrometheusExporterNamesThem()
    {
        // Every instrument of the worker's meter, as WorkerMetrics and ProcessLaneMetrics create them.
        // Only this factory's meter: other tests running in parallel create WorkerMetrics of the same name.
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = services.GetRequiredService<IMeterFactory>();
        var instruments = new System.Collections.Concurrent.ConcurrentQueue<Instrument>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, factory))
                {
                    instruments.Enqueue(instrument);
                }
            },
        };
        listener.Start();
        var options = Options.Create(new WorkerOptions { CpuConcurrency = 1 });
        using var metrics = new WorkerMetrics(factory, options);
        await using var pool = new ProcessPool(options, new TaskHandlerRegistry([]), NullLogger<ProcessPool>.Instance);
        using var processLane = new ProcessLaneMetrics(factory, pool);

        var exported = instruments.Where(i => i.Meter.Name == WorkerMetrics.Name).SelectMany(PrometheusNames).Order(StringComparer.Ordinal);

        Assert.Equal(ExportedMetrics.Worker.Order(StringComparer.Ordinal), exported);
    }

    [Fact]
    public void TheMetricNameReader_FindsMetrics_NotFunctionsLabelsOrVariables()
    {
        Assert.Equal(
            ["fleet_task_duration_seconds_bucket"],
            ExportedMetrics.NamesIn("histogram_quantile(0.95, sum by (le, type) (rate(fleet_task_duration_seconds_bucket{type=~\"$type\", lane!=\"io\"}[$__rate_interval])))"));
        Assert.Equal(
            ["fleet_tasks_finished_total", "fleet_lane_busy"],
            ExportedMetrics.NamesIn("sum(rate(fleet_tasks_finished_total[5m])) / on (job) group_left max without (lane) (fleet_lane_busy) > 0.5"));
    }

    /// <summary>OpenTelemetry's Prometheus exporter: dots to underscores, unit "s" as _seconds, _total for counters (observable ones too), _bucket/_sum/_count for histograms.</summary>
    private static IEnumerable<string> PrometheusNames(Instrument instrument)
    {
        var name = instrument.Name.Replace('.', '_');
        name += instrument.Unit switch
        {
            null or "" => "",
            "s" => "_seconds",
            var unit => throw new Xunit.Sdk.XunitException($"{instrument.Name}: unit '{unit}' is not handled here; add its Prometheus suffix"),
        };
        var type = instrument.GetType().GetGenericTypeDefinition();
        return type == typeof(Counter<>) || type == typeof(ObservableCounter<>) ? [name + "_total"]
            : type == typeof(Histogram<>) ? [name + "_bucket", name + "_sum", name + "_count"]
            : [name];
    }

    private static IEnumerable<(string Panel, string Expression)> Expressions()
    {
        using var dashboard = JsonDocument.Parse(DeploymentFiles.Read(Dashboard));
        var list = new List<(string, string)>();
        foreach (var panel in Panels(dashboard.RootElement).Where(p => p.TryGetProperty("targets", out _)))
        {
            list.AddRange(panel.GetProperty("targets").EnumerateArray().Select(t => (panel.GetProperty("title").GetString()!, t.GetProperty("expr").GetString()!)));
        }

        // Template variables query Prometheus too: label_values(metric, label).
        foreach (var variable in dashboard.RootElement.GetProperty("templating").GetProperty("list").EnumerateArray().Where(v => v.GetProperty("type").GetString() == "query"))
        {
            var definition = variable.GetProperty("definition").GetString()!;
            list.Add(("variable " + variable.GetProperty("name").GetString(), definition.Replace("label_values(", "", StringComparison.Ordinal).Split(',')[0]));
        }

        return list;
    }

    /// <summary>Every panel, those nested in collapsed rows included.</summary>
    private static IEnumerable<JsonElement> Panels(JsonElement dashboard)
    {
        foreach (var panel in dashboard.GetProperty("panels").EnumerateArray())
        {
            yield return panel;
            if (panel.TryGetProperty("panels", out var nested))
            {
                foreach (var inner in nested.EnumerateArray())
                {
                    yield return inner;
                }
            }
        }
    }
}
